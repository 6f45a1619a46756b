"""POST /clients/{clientAccountId}/token (SPEC §3.3): response, every error in check order, limits."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callerid import clock
from callerid.accounts.models import AccessToken
from callerid.accounts.secrets import sha256_hex
from tests.conftest import Tenant, create_tenant, mint

PUBLIC = {"X-Public-Access": "allow"}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}Z$")


def error(slug: str, message: str) -> dict[str, str]:
    return {"slug": slug, "message": message}


async def test_mint_returns_token_and_created_at(client: httpx.AsyncClient, tenant: Tenant, db: Any) -> None:
    response = await client.post(f"/clients/{tenant.account_id}/token", json=tenant.credentials, headers=PUBLIC)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert set(body) == {"token", "created_at"}
    assert re.fullmatch(r"[A-Za-z0-9]{64}", body["token"])
    assert ISO_Z.match(body["created_at"])
    async with db.session() as session:
        stored = (await session.scalars(select(AccessToken))).all()
    assert [t.token_hash for t in stored] == [sha256_hex(body["token"])]  # only the hash is kept
    assert stored[0].expires_at - stored[0].created_at == timedelta(minutes=60)


async def test_account_id_in_any_case_and_vnd_api_json(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        f"/clients/{str(tenant.account_id).upper()}/token",
        content=httpx.Request("POST", "/", json=tenant.credentials).content,
        headers={
            **PUBLIC,
            "Content-Type": "application/vnd.api+json",
            "Accept": "application/vnd.api+json; version=1.0",
        },
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("headers", "path_id", "body", "status", "expected"),
    [
        ({}, None, None, 401, error("authorization-error", "Missing authorization header")),
        ({"X-Public-Access": "deny"}, None, None, 401, error("authorization-error", "Missing authorization header")),
        (PUBLIC, "not-a-uuid", None, 400, error("invalid-input", "clientAccountId is invalid")),
        (PUBLIC, None, "{not json", 400, error("invalid-input", "api_key is required")),
        (PUBLIC, None, "[1, 2]", 400, error("invalid-input", "api_key is required")),
        (PUBLIC, None, {"key_id": "x"}, 400, error("invalid-input", "api_key is required")),
        (PUBLIC, None, {"api_key": "", "key_id": "x"}, 400, error("invalid-input", "api_key is required")),
        (PUBLIC, None, {"api_key": "abc"}, 400, error("invalid-input", "key_id is required")),
        (PUBLIC, None, {"api_key": "abc", "key_id": " "}, 400, error("invalid-input", "key_id is required")),
    ],
)
async def test_errors_in_check_order(
    client: httpx.AsyncClient,
    tenant: Tenant,
    headers: dict[str, str],
    path_id: str | None,
    body: Any,
    status: int,
    expected: dict[str, str],
) -> None:
    path = f"/clients/{path_id or tenant.account_id}/token"
    if body is None:
        body = tenant.credentials
    if isinstance(body, str):
        response = await client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
    else:
        response = await client.post(path, json=body, headers=headers)
    assert response.status_code == status
    assert response.json() == expected


async def test_bad_credentials(client: httpx.AsyncClient, tenant: Tenant, db: Any, settings: Any) -> None:
    other = await create_tenant(db, settings, name="Other")
    cases = [
        {"key_id": str(tenant.key_id), "api_key": str(uuid.uuid4())},  # wrong secret
        {"key_id": str(uuid.uuid4()), "api_key": tenant.api_key},  # unknown key
        {"key_id": "not-a-uuid", "api_key": tenant.api_key},
        other.credentials,  # a key of another account
    ]
    for credentials in cases:
        response = await client.post(f"/clients/{tenant.account_id}/token", json=credentials, headers=PUBLIC)
        assert response.status_code == 401
        assert response.json() == error("authorization-error", "invalid credentials")


async def test_eleventh_token_in_thirty_minutes_is_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    clock.freeze(clock.now())
    for _ in range(10):
        await mint(client, tenant)
        clock.advance(timedelta(seconds=60))
    response = await client.post(f"/clients/{tenant.account_id}/token", json=tenant.credentials, headers=PUBLIC)
    assert response.status_code == 429
    assert response.json() == error("rate-limit-exceeded", "maximum of 10 tokens can be created every 30 minutes")
    # The oldest of the ten was minted 10 minutes ago: it leaves the window in 20 minutes.
    assert response.headers["Retry-After"] == str(20 * 60)
    clock.advance(timedelta(minutes=20, seconds=1))
    await mint(client, tenant)  # trailing window: the first token has left it


async def test_mint_limit_is_per_account(client: httpx.AsyncClient, tenant: Tenant, db: Any, settings: Any) -> None:
    for _ in range(10):
        await mint(client, tenant)
    other = await create_tenant(db, settings, name="Other")
    await mint(client, other)


@pytest.mark.parametrize("settings_overrides", [{"token_mint_limit": 2, "token_mint_window_seconds": 60}])
async def test_mint_limit_is_a_setting(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await mint(client, tenant)
    await mint(client, tenant)
    response = await client.post(f"/clients/{tenant.account_id}/token", json=tenant.credentials, headers=PUBLIC)
    assert response.status_code == 429
    assert response.json()["message"] == "maximum of 2 tokens can be created every 1 minutes"
