"""``ensure_demo`` in-process: reuse, repair, and a saved file that does not match the database."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import delete, func, select, update

from callerid.accounts import members
from callerid.accounts import service as accounts
from callerid.accounts.models import MEMBER_ACTIVE, MEMBER_REVOKED, ApiKey, Member
from callerid.accounts.secrets import hash_password, verify_password
from callerid.cli.demo import (
    DEMO_ACCOUNT_NAME,
    DEMO_ADMIN_EMAIL,
    DEMO_KEY_ACCESS,
    DEMO_LABEL_NAME,
    demo_file,
    demo_logo_png,
    demo_summary,
    demo_title,
    ensure_demo,
)
from callerid.config import FEATURES, Settings
from callerid.db import Database
from callerid.http import Page
from callerid.labels import catalogue
from callerid.labels import service as labels
from callerid.labels.models import Label, LabelLogo
from tests.labels.images import image_bytes


async def key_works(db: Database, saved: dict[str, Any]) -> bool:
    async with db.session() as session:
        key = await accounts.verify_api_key(session, uuid.UUID(saved["key_id"]), saved["api_key"])
    return key is not None and str(key.account_id) == saved["client_account_id"]


async def demo_admin(db: Database, saved: dict[str, Any]) -> Member:
    async with db.session() as session:
        admin = await session.scalar(
            select(Member).where(
                Member.account_id == uuid.UUID(saved["client_account_id"]), Member.email == DEMO_ADMIN_EMAIL
            )
        )
    assert admin is not None
    return admin


async def password_works(db: Database, saved: dict[str, Any]) -> bool:
    """The printed e-mail and password sign in: an active member whose stored hash the password verifies."""
    admin = await demo_admin(db, saved)
    assert saved["admin_email"] == DEMO_ADMIN_EMAIL
    return admin.status == MEMBER_ACTIVE and verify_password(admin.password_hash, saved["admin_password"])


async def account_labels(db: Database, saved: dict[str, Any]) -> list[Label]:
    async with db.session() as session:
        return await labels.list_dynamic_labels(session, uuid.UUID(saved["client_account_id"]), Page(1, 100))


def saved_file(settings: Settings) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(demo_file(settings).read_text())
    return value


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
    # Every API can be tried with it: write on the four features, read on the analytics API (issue 13).
    assert keys[0].access == DEMO_KEY_ACCESS
    assert DEMO_KEY_ACCESS == {
        "call_personalisation": "write",
        "number_management": "write",
        "call_me_back": "write",
        "user_feedback": "write",
        "analytics": "read",
    }
    summary = demo_summary(settings, first)
    assert summary["urls"]["token"] == f"http://testserver/clients/{first['client_account_id']}/token"
    assert summary["urls"]["phone"] == "http://testserver/phone"
    assert first["api_key"] in summary["try"]
    assert summary["urls"]["console"] == "http://testserver/console"
    assert summary["label_id"] == first["label_id"]
    assert (summary["admin_email"], summary["admin_password"]) == (DEMO_ADMIN_EMAIL, first["admin_password"])
    assert demo_title(summary) == (
        "Demo account ready: sign in to the console at http://testserver/console "
        f"as admin@demo.example.com with password {first['admin_password']}"
    )
    assert await password_works(db, first)
    assert saved_file(settings) == first


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
        # The password is not known any more: a new one is set, never a wrong one printed.
        assert again["admin_password"] not in (None, first["admin_password"])
        assert await password_works(db, again)
        assert await key_works(db, again)
        assert saved_file(settings) == again
        assert again["label_id"] == first["label_id"]
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
    assert await password_works(db, created)
    assert await key_works(db, created)
    async with db.session() as session:
        member_ok = await accounts.admin_emails(session, uuid.UUID(created["client_account_id"]))
    assert member_ok == ["admin@demo.example.com"]


async def test_demo_password_always_signs_in(db: Database, settings: Settings) -> None:
    """Whatever happened to demo.json or to the admin, the printed e-mail and password sign in."""
    first = await ensure_demo(settings, db)
    assert await password_works(db, first)

    demo_file(settings).unlink()  # lost file: a new password, the same account
    lost = await ensure_demo(settings, db)
    assert lost["client_account_id"] == first["client_account_id"]
    assert lost["admin_password"] not in (None, first["admin_password"])
    assert await password_works(db, lost)
    assert not verify_password((await demo_admin(db, lost)).password_hash, first["admin_password"])
    assert saved_file(settings) == lost

    demo_file(settings).write_text(json.dumps({**lost, "admin_password": "not-the-password"}))  # altered file
    altered = await ensure_demo(settings, db)
    assert altered["admin_password"] not in ("not-the-password", lost["admin_password"])
    assert (altered["key_id"], altered["api_key"]) == (lost["key_id"], lost["api_key"])  # the key still worked
    assert await password_works(db, altered)
    assert saved_file(settings) == altered

    # Changed in the console: the saved one is stale, so a new one is set (and the admin's sessions end).
    admin = await demo_admin(db, altered)
    async with db.transaction() as session:
        member = await session.get(Member, admin.id)
        assert member is not None
        await members.set_password(session, member, hash_password("changed-in-the-console"))
    changed = await ensure_demo(settings, db)
    assert changed["admin_password"] not in ("changed-in-the-console", altered["admin_password"])
    assert await password_works(db, changed)

    # Revoked: active again, and the saved password, which still verifies, is kept.
    async with db.transaction() as session:
        member = await session.get(Member, admin.id)
        assert member is not None
        member.status = MEMBER_REVOKED
    revived = await ensure_demo(settings, db)
    assert revived == changed
    assert await password_works(db, revived)

    # Deleted: made again as an admin of the demo account.
    async with db.transaction() as session:
        await session.execute(delete(Member).where(Member.id == admin.id))
    remade = await ensure_demo(settings, db)
    assert remade["client_account_id"] == first["client_account_id"]
    assert remade["admin_password"] != changed["admin_password"]
    assert await password_works(db, remade)
    assert (await demo_admin(db, remade)).role == "admin"
    async with db.session() as session:
        count = await session.scalar(select(func.count()).select_from(Member).where(Member.email == DEMO_ADMIN_EMAIL))
    assert count == 1
    assert saved_file(settings) == remade


async def test_demo_label_is_created_once_with_a_served_logo(
    db: Database, settings: Settings, client: httpx.AsyncClient
) -> None:
    first = await ensure_demo(settings, db)
    [label] = await account_labels(db, first)
    assert str(label.id) == first["label_id"]
    assert (label.name, label.label_type, label.category, label.sub_category, label.created_by_email) == (
        DEMO_LABEL_NAME,
        "dynamic",
        10,
        142,
        DEMO_ADMIN_EMAIL,
    )
    logo = demo_logo_png()
    with Image.open(io.BytesIO(logo)) as image:
        assert (image.format, image.size) == ("PNG", (200, 200))
    listed = labels.label_json(settings, label)
    assert listed["logo_url"] == f"http://testserver/logos/{label.logo_key}.png"
    served = await client.get(f"/logos/{label.logo_key}.png")
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    assert served.content == logo

    second = await ensure_demo(settings, db)
    assert second == first
    assert [lb.id for lb in await account_labels(db, second)] == [label.id]

    # A label whose logo file was lost when logos moved into the database: the label is reused, its logo drawn
    # again.
    async with db.transaction() as session:
        await session.execute(update(Label).where(Label.id == label.id).values(logo_key=None))
        await session.execute(delete(LabelLogo))
    assert (await client.get(f"/logos/{label.logo_key}.png")).status_code == 404
    third = await ensure_demo(settings, db)
    assert third["label_id"] == first["label_id"]
    assert [lb.logo_key for lb in await account_labels(db, third)] == [label.logo_key]
    again = await client.get(f"/logos/{label.logo_key}.png")
    assert (again.status_code, again.content) == (200, logo)


async def test_demo_reuses_a_label_of_that_name(db: Database, settings: Settings) -> None:
    async with db.transaction() as session:
        created = await accounts.create_account(session, name=DEMO_ACCOUNT_NAME, admin_email=DEMO_ADMIN_EMAIL)
        mine = await labels.create_label(
            session, settings, account_id=created.account.id, name=DEMO_LABEL_NAME, logo=image_bytes()
        )
    saved = await ensure_demo(settings, db)
    assert saved["client_account_id"] == str(created.account.id)
    assert saved["label_id"] == str(mine.id)
    [label] = await account_labels(db, saved)
    assert (label.id, label.logo_key, label.category) == (mine.id, mine.logo_key, None)  # left as it was
    async with db.session() as session:
        assert (await session.get(LabelLogo, mine.logo_key)).data == image_bytes()  # type: ignore[union-attr]


@pytest.fixture
async def catalogue_restored(db: Database) -> AsyncIterator[Database]:
    """The database, with the default catalogue put back after the test (it is kept between tests)."""
    yield db
    async with db.transaction() as session:
        await catalogue.reset_catalogue(session)


async def test_demo_label_without_category_when_the_catalogue_lacks_it(
    catalogue_restored: Database, settings: Settings
) -> None:
    db = catalogue_restored
    async with db.transaction() as session:
        await catalogue.remove_category(session, 10)
    saved = await ensure_demo(settings, db)
    [label] = await account_labels(db, saved)
    assert (str(label.id), label.name, label.category, label.sub_category) == (
        saved["label_id"],
        DEMO_LABEL_NAME,
        None,
        None,
    )


def test_the_demo_says_where_a_phones_code_shows(tmp_path: Any) -> None:
    from callerid.cli.demo import phone_codes
    from callerid.webhooks.signing import new_secret
    from tests.conftest import make_settings

    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    development = phone_codes(make_settings(url, tmp_path, device_verifier="otp"))
    assert "'Demo SMS'" in development and "callerid sms outbox" in development
    gateway = make_settings(
        url, tmp_path, device_verifier="otp", sms_webhook_url="https://sms.example.com", sms_webhook_secret=new_secret()
    )
    assert phone_codes(gateway) == "a phone registering gets a code by SMS, through CALLERID_SMS_WEBHOOK_URL"
    assert "without a code" in phone_codes(make_settings(url, tmp_path, device_verifier="none"))


async def test_a_demo_key_made_before_analytics_gets_analytics_read(db: Database, settings: Settings) -> None:
    first = await ensure_demo(settings, db)
    async with db.transaction() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.key_id == uuid.UUID(first["key_id"]))
            .values(access={feature: "write" for feature in FEATURES})
        )
    again = await ensure_demo(settings, db)
    assert again == first  # the same key and secret: only its access grew
    async with db.session() as session:
        [key] = await accounts.list_api_keys(session, uuid.UUID(first["client_account_id"]))
    assert key.access == DEMO_KEY_ACCESS
