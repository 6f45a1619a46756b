"""The first failing check answers (SPEC §3.3, §3.4): every request here breaks two rules at once, and the answer
must be the one of the rule that comes first in the spec's order."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from callerid import clock
from callerid.accounts.models import ApiKey
from callerid.db import Database
from tests.conftest import Tenant, create_tenant, mint

MISSING_HEADER = {"slug": "authorization-error", "message": "Missing authorization header"}
PARSE = {"slug": "internal-server-error", "message": "500/50011 - Failed to parse token"}
LOGIN_AGAIN = {"slug": "authorization-error", "message": "please login again"}
FORBIDDEN = {"slug": "forbidden-error", "message": "not authorized. please contact your admin."}
TOO_MANY = {"slug": "rate-limit-exceeded", "message": "too many requests"}
BAD_CREDENTIALS = {"slug": "authorization-error", "message": "invalid credentials"}
PUBLIC = {"X-Public-Access": "allow"}


async def test_token_endpoint_answers_the_first_failing_rule(client: httpx.AsyncClient, tenant: Tenant) -> None:
    good = tenant.credentials
    cases: list[tuple[str, dict[str, str], Any, int, dict[str, str]]] = [
        # no X-Public-Access and a path id that is not a UUID: the header comes first
        ("not-a-uuid", {}, good, 401, MISSING_HEADER),
        # a path id that is not a UUID and no api_key: the path comes first
        (
            "not-a-uuid",
            PUBLIC,
            {"key_id": good["key_id"]},
            400,
            {"slug": "invalid-input", "message": "clientAccountId is invalid"},
        ),
        # neither api_key nor key_id: api_key is named first
        (str(tenant.account_id), PUBLIC, {}, 400, {"slug": "invalid-input", "message": "api_key is required"}),
        # an unparsable body and no header: the header comes first
        (str(tenant.account_id), {}, "{not json", 401, MISSING_HEADER),
        # a wrong secret for another account's path: invalid credentials (never "forbidden")
        (str(uuid.uuid4()), PUBLIC, {**good, "api_key": str(uuid.uuid4())}, 401, BAD_CREDENTIALS),
    ]
    for account, headers, body, status, expected in cases:
        kwargs: dict[str, Any] = {"content": body} if isinstance(body, str) else {"json": body}
        response = await client.post(f"/clients/{account}/token", headers=headers, **kwargs)
        assert (response.status_code, response.json()) == (status, expected), (account, headers, body)


@pytest.mark.parametrize("settings_overrides", [{"token_mint_limit": 1}])
async def test_bad_credentials_come_before_the_mint_limit(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await mint(client, tenant)  # the account's one token of the window
    wrong = {**tenant.credentials, "api_key": str(uuid.uuid4())}
    response = await client.post(f"/clients/{tenant.account_id}/token", headers=PUBLIC, json=wrong)
    assert (response.status_code, response.json()) == (401, BAD_CREDENTIALS)
    over = await client.post(f"/clients/{tenant.account_id}/token", headers=PUBLIC, json=tenant.credentials)
    assert over.status_code == 429


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_general": "1/minute"}])
async def test_token_checks_answer_in_the_spec_order(
    client: httpx.AsyncClient, db: Database, settings: Any, tenant: Tenant
) -> None:
    other = await create_tenant(db, settings, name="Other Co")
    token = await mint(client, tenant)
    labels = f"/clients/{tenant.account_id}/labels"
    others_labels = f"/clients/{other.account_id}/labels"
    bearer = {"Authorization": f"Bearer {token}"}

    # 2 before 4: an unparsable token on another account's path
    response = await client.get(others_labels, headers={"Authorization": "Bearer short"})
    assert (response.status_code, response.json()) == (500, PARSE)
    # 3 before 4: an unknown token on another account's path
    response = await client.get(others_labels, headers={"Authorization": f"Bearer {'x' * 64}"})
    assert (response.status_code, response.json()) == (401, LOGIN_AGAIN)
    # 4 before 6 and before 7: another account's path, a bad page parameter, and (after one) the limit spent
    assert (await client.get(labels, headers=bearer)).status_code == 200  # spends the 1/minute
    response = await client.get(f"{others_labels}?page=0", headers=bearer)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)
    # 6 before 7: over the limit with a bad parameter
    response = await client.get(f"{labels}?page=0", headers=bearer)
    assert (response.status_code, response.json()) == (429, TOO_MANY)
    # 5 before 6: a key without the access level, over the limit, is forbidden rather than throttled
    async with db.transaction() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.account_id == tenant.account_id)
            .values(access={"call_personalisation": "none", "number_management": "write"})
        )
    clock.advance(settings.token_cache_seconds)  # a token check may be reused that long (TokenCache)
    response = await client.get(labels, headers=bearer)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)
    # 1 before everything: no header on another account's path with a bad parameter
    response = await client.get(f"{others_labels}?page=0")
    assert (response.status_code, response.json()) == (401, MISSING_HEADER)
