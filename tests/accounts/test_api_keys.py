"""API keys (SPEC §3.1): at most 5, secret shown once and stored hashed, regenerate and delete."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callerid.accounts import service
from callerid.accounts.models import ApiKey
from callerid.accounts.secrets import sha256_hex
from callerid.config import FEATURES
from tests.conftest import Tenant

PUBLIC = {"X-Public-Access": "allow"}


async def _token_status(client: httpx.AsyncClient, account_id: Any, key_id: Any, secret: str) -> int:
    response = await client.post(
        f"/clients/{account_id}/token", json={"key_id": str(key_id), "api_key": secret}, headers=PUBLIC
    )
    return response.status_code


async def test_at_most_five_keys_per_account(db: Any, settings: Any, tenant: Tenant) -> None:
    async with db.transaction() as session:
        for n in range(4):  # the tenant fixture already made one
            await service.create_api_key(session, settings, account_id=tenant.account_id, name=f"k{n}")
    with pytest.raises(service.LimitReached, match="at most 5 API keys"):
        async with db.transaction() as session:
            await service.create_api_key(session, settings, account_id=tenant.account_id, name="sixth")
    async with db.session() as session:
        assert len(await service.list_api_keys(session, tenant.account_id)) == 5
    # Deleting one frees a place.
    async with db.transaction() as session:
        await service.delete_api_key(session, account_id=tenant.account_id, key_id=tenant.key_id)
        await service.create_api_key(session, settings, account_id=tenant.account_id, name="sixth")


@pytest.mark.parametrize("settings_overrides", [{"max_api_keys_per_account": 1}])
async def test_key_cap_is_a_setting(db: Any, settings: Any, tenant: Tenant) -> None:
    with pytest.raises(service.LimitReached):
        async with db.transaction() as session:
            await service.create_api_key(session, settings, account_id=tenant.account_id, name="second")


async def test_secret_is_stored_only_as_hash(db: Any, tenant: Tenant) -> None:
    async with db.session() as session:
        key = await session.scalar(select(ApiKey).where(ApiKey.key_id == tenant.key_id))
    assert key is not None
    assert key.secret_hash == sha256_hex(tenant.api_key)
    assert tenant.api_key not in repr(key.__dict__)


async def test_regenerate_stops_old_pair_and_tokens_at_once(
    client: httpx.AsyncClient, db: Any, tenant: Tenant, auth: dict[str, str]
) -> None:
    async with db.transaction() as session:
        issued = await service.regenerate_api_key(session, account_id=tenant.account_id, key_id=tenant.key_id)
    assert issued.key.key_id != tenant.key_id and issued.secret != tenant.api_key
    assert await _token_status(client, tenant.account_id, tenant.key_id, tenant.api_key) == 401
    assert await _token_status(client, tenant.account_id, issued.key.key_id, tenant.api_key) == 401
    assert await _token_status(client, tenant.account_id, issued.key.key_id, issued.secret) == 200
    async with db.session() as session:
        token = auth["Authorization"].split()[1]
        assert await service.resolve_token(session, token) is None  # the old token is revoked


async def test_delete_stops_pair_and_tokens(client: httpx.AsyncClient, db: Any, tenant: Tenant, token: str) -> None:
    async with db.transaction() as session:
        await service.delete_api_key(session, account_id=tenant.account_id, key_id=tenant.key_id)
    assert await _token_status(client, tenant.account_id, tenant.key_id, tenant.api_key) == 401
    async with db.session() as session:
        assert await service.resolve_token(session, token) is None
        with pytest.raises(service.NotFound):
            await service.list_api_keys(session, tenant.account_id.__class__(int=0))


async def test_unknown_key_or_account(db: Any, settings: Any, tenant: Tenant) -> None:
    import uuid

    async with db.transaction() as session:
        with pytest.raises(service.NotFound):
            await service.regenerate_api_key(session, account_id=tenant.account_id, key_id=uuid.uuid4())
        with pytest.raises(service.NotFound):
            await service.create_api_key(session, settings, account_id=uuid.uuid4(), name="x")


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": "back\x00end"}, "name", "API key name contains characters that cannot be stored"),
        ({"description": "orders\x00"}, "description", "API key description contains characters that cannot be stored"),
    ],
)
async def test_key_text_with_a_nul_is_refused_on_both_databases(
    db: Any, settings: Any, tenant: Tenant, fields: dict[str, str], field: str, message: str
) -> None:
    # PostgreSQL cannot hold a NUL in text (SQLite can): refused before either sees it.
    with pytest.raises(service.AccountsError) as raised:
        async with db.transaction() as session:
            await service.create_api_key(session, settings, account_id=tenant.account_id, **{"name": "k", **fields})
    assert (raised.value.message, raised.value.field) == (message, field)
    async with db.session() as session:
        assert len(await service.list_api_keys(session, tenant.account_id)) == 1


async def test_account_text_with_a_nul_is_refused_on_both_databases(db: Any) -> None:
    refusals = [
        (
            {"name": "Acme\x00", "admin_email": "a@example.com"},
            "account name contains characters that cannot be stored",
        ),
        (
            {"name": "Acme", "admin_email": "a\x00@example.com"},
            "admin email 'a\\x00@example.com' is not a valid e-mail address",
        ),
    ]
    for kwargs, message in refusals:
        with pytest.raises(service.AccountsError) as raised:
            async with db.transaction() as session:
                await service.create_account(session, **kwargs)
        assert raised.value.message == message
    async with db.session() as session:
        assert await service.list_accounts(session) == []


def test_parse_access() -> None:
    assert service.parse_access(None) == dict.fromkeys(FEATURES, "write")
    assert service.parse_access("call_personalisation=write,number_management=read") == {
        "call_personalisation": "write",
        "number_management": "read",
        "call_me_back": "none",
        "user_feedback": "none",
    }
    with pytest.raises(service.AccountsError, match="unknown feature"):
        service.parse_access("calls=write")
    with pytest.raises(service.AccountsError, match="unknown access level"):
        service.parse_access("call_me_back=admin")
    with pytest.raises(service.AccountsError, match="unknown feature"):
        service.parse_access("call_me_back")


def test_write_implies_read() -> None:
    access = {"call_personalisation": "write", "number_management": "read", "call_me_back": "none"}
    assert service.allows(access, "call_personalisation", "read")
    assert service.allows(access, "call_personalisation", "write")
    assert service.allows(access, "number_management", "read")
    assert not service.allows(access, "number_management", "write")
    assert not service.allows(access, "call_me_back", "read")
    assert not service.allows(access, "user_feedback", "read")  # absent = none
