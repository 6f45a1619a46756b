"""``ensure_demo`` in-process: reuse, repair, and a saved file that does not match the database."""

from __future__ import annotations

import json
import uuid
from typing import Any

from callerid.accounts import service as accounts
from callerid.cli.demo import DEMO_ACCOUNT_NAME, demo_file, demo_summary, ensure_demo
from callerid.config import Settings
from callerid.db import Database


async def key_works(db: Database, saved: dict[str, Any]) -> bool:
    async with db.session() as session:
        key = await accounts.verify_api_key(session, uuid.UUID(saved["key_id"]), saved["api_key"])
    return key is not None and str(key.account_id) == saved["client_account_id"]


async def test_demo_is_created_once_then_reused(db: Database, settings: Settings) -> None:
    first = await ensure_demo(settings, db)
    second = await ensure_demo(settings, db)
    assert second == first
    assert await key_works(db, first)
    async with db.session() as session:
        listed = await accounts.list_accounts(session)
        keys = await accounts.list_api_keys(session, uuid.UUID(first["client_account_id"]))
    assert [a.name for a in listed] == [DEMO_ACCOUNT_NAME]
    assert len(keys) == 1
    summary = demo_summary(settings, first)
    assert summary["urls"]["token"] == f"http://testserver/clients/{first['client_account_id']}/token"
    assert summary["urls"]["phone"] == "http://testserver/phone"
    assert first["api_key"] in summary["try"]


async def test_demo_repairs_a_regenerated_key_and_a_lost_or_corrupt_file(db: Database, settings: Settings) -> None:
    first = await ensure_demo(settings, db)
    async with db.transaction() as session:
        await accounts.regenerate_api_key(
            session, account_id=uuid.UUID(first["client_account_id"]), key_id=uuid.UUID(first["key_id"])
        )
    repaired = await ensure_demo(settings, db)
    assert repaired["client_account_id"] == first["client_account_id"]
    assert repaired["key_id"] != first["key_id"]
    assert await key_works(db, repaired)

    for content in ("{not json", "[1, 2]", json.dumps({"client_account_id": "nope", "key_id": 7, "api_key": None})):
        demo_file(settings).write_text(content)
        again = await ensure_demo(settings, db)
        assert again["client_account_id"] == first["client_account_id"]  # found by name, not duplicated
        assert again["admin_password"] is None  # not known any more: never a wrong one
        assert await key_works(db, again)
    async with db.session() as session:
        assert len(await accounts.list_accounts(session)) == 1
        assert len(await accounts.list_api_keys(session, uuid.UUID(first["client_account_id"]))) == 1


async def test_demo_file_of_another_database_is_not_trusted(db: Database, settings: Settings) -> None:
    foreign = {
        "client_account_id": str(uuid.uuid4()),
        "admin_email": "admin@demo.example.com",
        "admin_password": "from-another-database",
        "key_id": str(uuid.uuid4()),
        "api_key": str(uuid.uuid4()),
    }
    demo_file(settings).parent.mkdir(parents=True, exist_ok=True)
    demo_file(settings).write_text(json.dumps(foreign))
    created = await ensure_demo(settings, db)
    assert created["client_account_id"] != foreign["client_account_id"]
    assert created["admin_password"] not in (None, foreign["admin_password"])
    assert await key_works(db, created)
    async with db.session() as session:
        member_ok = await accounts.admin_emails(session, uuid.UUID(created["client_account_id"]))
    assert member_ok == ["admin@demo.example.com"]
