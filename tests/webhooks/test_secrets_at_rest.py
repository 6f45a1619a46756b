"""Webhook signing secrets are encrypted at rest (issue point 6), checked in the raw database rows, while
deliveries stay signed with the clear secrets; key rotation, legacy clear rows, the migration and the CLI."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from callerid import clock, secretbox
from callerid.config import Settings
from callerid.db import Database
from callerid.db.migrate import alembic_config, upgrade_async
from callerid.jobs.runner import JobRunner
from callerid.runtime import Runtime
from callerid.webhooks import secrets_at_rest, service
from callerid.webhooks.models import WebhookConfig, WebhookEvent
from tests.conftest import Tenant, create_tenant, fresh_postgresql_database, make_settings
from tests.webhooks.conftest import emit, make_webhook
from tests.webhooks.receiver import Received, Receiver

OLD_KEY = base64.b64encode(b"o" * 32).decode()
NEW_KEY = base64.b64encode(b"n" * 32).decode()
OLD_ID, NEW_ID = secretbox.key_id(b"o" * 32), secretbox.key_id(b"n" * 32)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"webhook_allow_private": True, "secret_key": OLD_KEY}


def with_keys(settings: Settings, keys: str) -> Settings:
    """The same settings with other keys in CALLERID_SECRET_KEY (another process's configuration)."""
    return settings.model_copy(update={"secret_key": SecretStr(keys)})


# --- reading the database as an attacker with a dump would ---------------------------------------------------


async def raw_webhook_rows(database_url: str) -> list[dict[str, Any]]:
    """Every column of every webhook row, by plain SQL on a connection of its own (not the app's engine)."""
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database
        assert path is not None
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute("SELECT * FROM webhooks")]
    import asyncpg

    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return [dict(row) for row in await connection.fetch("SELECT * FROM webhooks")]
    finally:
        await connection.close()


def assert_nowhere_in_clear(rows: list[dict[str, Any]], secrets: list[str], key_id: str) -> None:
    assert rows
    for row in rows:
        text = " ".join(str(value) for value in row.values())
        assert "whsec_" not in text
        for secret in secrets:
            assert secret not in text and secret.removeprefix("whsec_") not in text
        for column in ("secret", "previous_secret"):
            if row[column] is not None:
                assert row[column].startswith(f"enc:v1:{key_id}:"), (column, row[column][:20])


def verify(request: Received, secret: str) -> Any:
    from standardwebhooks.webhooks import Webhook

    return Webhook(secret).verify(request.body, request.headers)


async def deliver_one(runtime: Runtime, tenant: Tenant, receiver: Receiver) -> Received:
    """Emit one event and deliver it with the runtime's settings (its keys); the request the receiver got."""
    seen = len(receiver.requests)
    await emit(runtime.db, tenant.account_id)
    assert await JobRunner(runtime).run_until_idle() == 1
    assert len(receiver.requests) == seen + 1
    return receiver.requests[-1]


async def stored_of(db: Database, webhook_id: uuid.UUID) -> tuple[str, str | None]:
    async with db.session() as session:
        row = (
            await session.execute(
                select(WebhookConfig.secret, WebhookConfig.previous_secret).where(WebhookConfig.id == webhook_id)
            )
        ).one()
    return row[0], row[1]


# --- the row holds no secret; deliveries are signed -----------------------------------------------------------------


async def test_created_and_rotated_secrets_are_encrypted_in_the_row_and_deliveries_still_verify(
    db: Database,
    settings: Settings,
    tenant: Tenant,
    runtime: Runtime,
    runtime_with: Callable[[Settings], Runtime],
    receiver: Receiver,
    database_url: str,
) -> None:
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    async with db.transaction() as session:
        rotated = await service.rotate_secret(
            session, settings, account_id=tenant.account_id, webhook_id=created.webhook.id
        )
    old, new = created.secret, rotated.secret
    assert old.startswith("whsec_") and new.startswith("whsec_") and old != new  # shown in clear, once
    assert_nowhere_in_clear(await raw_webhook_rows(database_url), [old, new], OLD_ID)

    request = await deliver_one(runtime, tenant, receiver)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):  # signed with the clear secrets: a receiver holding either accepts it
        assert verify(request, secret) == json.loads(request.body)

    # Key rotation: the new key first, the old one kept; rotate; the row still holds no secret, now under the new key.
    both = with_keys(settings, f"{NEW_KEY},{OLD_KEY}")
    counts = await secrets_at_rest.reencrypt_all(db, both)
    assert counts.as_json(NEW_ID) == {
        "key_id": NEW_ID,
        "webhooks": 1,
        "secrets_reencrypted": 2,
        "secrets_were_clear_text": 0,
        "secrets_already_current": 0,
    }
    assert_nowhere_in_clear(await raw_webhook_rows(database_url), [old, new], NEW_ID)
    again = await secrets_at_rest.reencrypt_all(db, both)  # idempotent
    assert (again.webhooks, again.reencrypted, again.already_current) == (1, 0, 2)

    # The old key dropped: deliveries are still signed with both clear secrets.
    new_only = with_keys(settings, NEW_KEY)
    request = await deliver_one(runtime_with(new_only), tenant, receiver)
    for secret in (new, old):
        assert verify(request, secret) == json.loads(request.body)
    # ... and the old key alone no longer opens anything.
    with pytest.raises(secretbox.DecryptionError, match="not among the keys"):
        secrets_at_rest.unseal(
            with_keys(settings, OLD_KEY), created.webhook.id, (await stored_of(db, created.webhook.id))[0]
        )


async def test_values_left_under_a_dropped_key_stop_decrypting(
    db: Database, settings: Settings, tenant: Tenant, runtime_with: Callable[[Settings], Runtime], receiver: Receiver
) -> None:
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)  # under the old key
    new_only = with_keys(settings, NEW_KEY)  # dropped before `secret-key rotate` ran
    runtime = runtime_with(new_only)
    [event_id] = await emit(db, tenant.account_id)
    with pytest.raises(secretbox.DecryptionError, match=f"encrypted with key {OLD_ID}, which is not among"):
        await service.attempt_delivery(runtime, event_id)
    assert receiver.requests == []  # nothing signed with a wrong secret
    with pytest.raises(secrets_at_rest.ReencryptError, match=f"webhook {created.webhook.id}: .* cannot be decrypted"):
        await secrets_at_rest.reencrypt_all(db, new_only)
    with pytest.raises(service.WebhooksError, match=r"cannot be decrypted.*rotate it"):
        await service.send_test_event(runtime, account_id=tenant.account_id, webhook_id=created.webhook.id)
    # Rotating the webhook's secret is the way out: a new secret, and the unreadable one is not kept.
    async with db.transaction() as session:
        rotated = await service.rotate_secret(
            session, new_only, account_id=tenant.account_id, webhook_id=created.webhook.id
        )
    assert rotated.webhook.previous_secret is None and rotated.webhook.previous_secret_expires_at is None
    sample = await service.send_test_event(runtime, account_id=tenant.account_id, webhook_id=created.webhook.id)
    assert sample.state == "success" and verify(receiver.requests[-1], rotated.secret)


async def test_a_secret_moved_to_another_row_does_not_sign(
    db: Database, settings: Settings, tenant: Tenant, runtime: Runtime, receiver: Receiver
) -> None:
    a = await make_webhook(db, settings, tenant.account_id, receiver.url, name="A")
    b = await make_webhook(db, settings, tenant.account_id, receiver.url, name="B")
    stored_a, _ = await stored_of(db, a.webhook.id)
    async with db.transaction() as session:
        await session.execute(update(WebhookConfig).where(WebhookConfig.id == b.webhook.id).values(secret=stored_a))
    assert secrets_at_rest.unseal(settings, a.webhook.id, stored_a) == a.secret
    with pytest.raises(secretbox.DecryptionError, match="belongs to another row"):
        secrets_at_rest.unseal(settings, b.webhook.id, stored_a)
    with pytest.raises(service.WebhooksError, match="cannot be decrypted"):
        await service.send_test_event(runtime, account_id=tenant.account_id, webhook_id=b.webhook.id)
    async with db.session() as session:  # refused before anything was logged
        assert (
            await session.scalars(select(WebhookEvent.id).where(WebhookEvent.webhook_id == b.webhook.id))
        ).all() == []
    assert receiver.requests == []


async def test_legacy_clear_secrets_sign_until_rotation_encrypts_them(
    db: Database, settings: Settings, tenant: Tenant, runtime: Runtime, receiver: Receiver, database_url: str
) -> None:
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    legacy = "whsec_" + base64.b64encode(b"l" * 32).decode()  # as written before encryption at rest
    async with db.transaction() as session:
        await session.execute(update(WebhookConfig).where(WebhookConfig.id == created.webhook.id).values(secret=legacy))
    assert verify(await deliver_one(runtime, tenant, receiver), legacy)
    counts = await secrets_at_rest.reencrypt_all(db, settings)
    assert (counts.webhooks, counts.reencrypted, counts.were_clear_text) == (1, 1, 1)
    assert_nowhere_in_clear(await raw_webhook_rows(database_url), [legacy, created.secret], OLD_ID)
    assert verify(await deliver_one(runtime, tenant, receiver), legacy)


async def test_rotation_walks_in_chunks_and_never_overwrites_a_concurrent_secret_rotation(
    db: Database, settings: Settings, tenant: Tenant, database_url: str
) -> None:
    other = await create_tenant(db, settings, name="Other")
    made = [await make_webhook(db, settings, tenant.account_id, "http://127.0.0.1:9/x", name=f"W{i}") for i in range(3)]
    made += [await make_webhook(db, settings, other.account_id, "http://127.0.0.1:9/y", name="W")]
    target = made[0].webhook.id
    stale_secret, stale_previous = await stored_of(db, target)  # as a rotation might have read it
    both = with_keys(settings, f"{NEW_KEY},{OLD_KEY}")
    counts = await secrets_at_rest.reencrypt_all(db, both, chunk_size=3)
    assert (counts.webhooks, counts.reencrypted, counts.already_current) == (4, 4, 0)
    assert_nowhere_in_clear(await raw_webhook_rows(database_url), [m.secret for m in made], NEW_ID)

    # A secret rotated (by a serving process whose keys are not reordered yet) after the rotation read the row:
    # the compare-and-set write misses, the row is read again, and the newly rotated secret survives.
    async with db.transaction() as session:
        rotated = await service.rotate_secret(
            session, with_keys(settings, f"{OLD_KEY},{NEW_KEY}"), account_id=tenant.account_id, webhook_id=target
        )
    async with db.transaction() as session:
        row_counts = await secrets_at_rest._reencrypt_row(
            session, secretbox.keyring_for(both), target, stale_secret, stale_previous
        )
    assert (row_counts.webhooks, row_counts.reencrypted) == (1, 2)
    secret, previous = await stored_of(db, target)
    assert secret.startswith(f"enc:v1:{NEW_ID}:") and previous is not None and previous.startswith(f"enc:v1:{NEW_ID}:")
    assert secrets_at_rest.unseal(both, target, secret) == rotated.secret
    assert secrets_at_rest.unseal(both, target, previous) == made[0].secret


# --- the migration encrypts what was stored in clear ----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/legacy.db"
        return
    with fresh_postgresql_database("callerid_secrets") as url:
        yield url


async def _migrate(url: str, target: str) -> None:
    config = alembic_config(url)
    if target == "heads":
        await upgrade_async(url)
    else:
        await asyncio.to_thread(command.downgrade, config, target)


async def test_the_migration_encrypts_existing_clear_secrets_in_place(
    empty_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = empty_database
    data_dir = tmp_path / "app-data"
    monkeypatch.setenv("CALLERID_DATA_DIR", str(data_dir))
    monkeypatch.delenv("CALLERID_SECRET_KEY", raising=False)
    sqlite = url.startswith("sqlite")
    if not sqlite:
        monkeypatch.setenv("CALLERID_SECRET_KEY", OLD_KEY)
    await _migrate(url, "heads")
    await _migrate(url, "0011_webhook_console")  # the schema as it was, with secrets stored in clear
    assert not (data_dir / "secret.key").exists()  # nothing to encrypt yet: no key generated
    settings = make_settings(url, data_dir, secret_key=None if sqlite else OLD_KEY)
    db = Database(url, null_pool=True)
    try:
        tenant = await create_tenant(db, settings)
        clear = ["whsec_" + base64.b64encode(bytes([n]) * 32).decode() for n in range(3)]
        now = clock.now()
        async with db.transaction() as session:
            for n, secret in enumerate(clear[:2]):
                session.add(
                    WebhookConfig(
                        id=uuid.uuid4(), account_id=tenant.account_id, name=f"W{n}", name_key=f"w{n}", url="http://x/",
                        events=["cmb"], secret=secret, previous_secret=clear[2] if n == 0 else None,
                        created_at=now, updated_at=now,
                    )
                )  # fmt: skip
        await _migrate(url, "heads")
        key_file = data_dir / "secret.key"
        if sqlite:  # the embedded default's key file, generated by the migration as the app would
            assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
            key_id = secretbox.Keyring.from_text(key_file.read_text()).primary_id
        else:
            assert not key_file.exists()
            key_id = OLD_ID
        rows = await raw_webhook_rows(url)
        assert_nowhere_in_clear(rows, clear, key_id)
        opened = {
            secrets_at_rest.unseal(settings, row.id, value)
            for row in await all_webhooks(db)
            for value in (row.secret, row.previous_secret)
            if value is not None
        }
        assert opened == set(clear)

        # Down again: the narrower columns get the clear values back; up: encrypted again.
        await _migrate(url, "0011_webhook_console")
        assert sorted(r["secret"] for r in await raw_webhook_rows(url)) == sorted(clear[:2])
        await _migrate(url, "heads")
        assert_nowhere_in_clear(await raw_webhook_rows(url), clear, key_id)
    finally:
        await db.dispose()


@pytest.fixture
def empty_postgresql() -> Iterator[str]:
    with fresh_postgresql_database("callerid_secrets") as url:
        yield url


async def test_without_a_key_on_postgresql_the_migration_leaves_legacy_values_for_rotate(
    empty_postgresql: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = empty_postgresql
    monkeypatch.delenv("CALLERID_SECRET_KEY", raising=False)
    monkeypatch.setenv("CALLERID_DATA_DIR", str(tmp_path / "data"))
    await _migrate(url, "heads")
    await _migrate(url, "0011_webhook_console")
    settings = make_settings(url, tmp_path / "data", secret_key=OLD_KEY)
    db = Database(url, null_pool=True)
    try:
        tenant = await create_tenant(db, settings)
        clear = "whsec_" + base64.b64encode(b"c" * 32).decode()
        now = clock.now()
        async with db.transaction() as session:
            session.add(
                WebhookConfig(
                    id=uuid.uuid4(), account_id=tenant.account_id, name="W", name_key="w", url="http://x/",
                    events=["cmb"], secret=clear, created_at=now, updated_at=now,
                )
            )  # fmt: skip
        await _migrate(url, "heads")
        assert [r["secret"] for r in await raw_webhook_rows(url)] == [clear]  # no host invented a key
        assert not (tmp_path / "data" / "secret.key").exists()
        counts = await secrets_at_rest.reencrypt_all(db, settings)
        assert (counts.reencrypted, counts.were_clear_text) == (1, 1)
        assert_nowhere_in_clear(await raw_webhook_rows(url), [clear], OLD_ID)
    finally:
        await db.dispose()


async def all_webhooks(db: Database) -> list[WebhookConfig]:
    async with db.session() as session:
        return list((await session.scalars(select(WebhookConfig))).all())


# --- the commands --------------------------------------------------------------------------------------------------


async def test_cli_shows_the_secret_once_stores_it_encrypted_and_rotates_the_key(
    tmp_path: Path, receiver: Receiver
) -> None:
    from tests.webhooks.test_processes import Cli

    cli = Cli(tmp_path)  # SQLite, no CALLERID_SECRET_KEY: the key file in the data folder
    account = (await cli.json("accounts", "create", "--name", "Acme", "--admin-email", "boss@acme.test"))[
        "client_account_id"
    ]
    created = await cli.json(
        "webhooks", "create", "--account", account, "--name", "Orders", "--url", receiver.url, "--events", "cmb"
    )
    rotated = await cli.json("webhooks", "rotate-secret", "--account", account, "--id", created["id"])
    secrets = [created["secret"], rotated["secret"]]
    assert all(s.startswith("whsec_") for s in secrets)
    key_file = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    file_key = key_file.read_text().strip()
    file_id = secretbox.Keyring.from_text(file_key).primary_id
    assert_nowhere_in_clear(await raw_webhook_rows(cli.url), secrets, file_id)
    listed = await cli.run("webhooks", "list", "--account", account, "--json")
    assert not any(s in listed.stdout or "enc:" in listed.stdout for s in secrets)

    cli.env["CALLERID_SECRET_KEY"] = f"{NEW_KEY},{file_key}"
    first = await cli.json("secret-key", "rotate")
    assert first == {
        "key_id": NEW_ID,
        "webhooks": 1,
        "secrets_reencrypted": 2,
        "secrets_were_clear_text": 0,
        "secrets_already_current": 0,
    }
    assert (await cli.json("secret-key", "rotate", "--chunk-size", "1"))["secrets_already_current"] == 2
    assert_nowhere_in_clear(await raw_webhook_rows(cli.url), secrets, NEW_ID)

    cli.env["CALLERID_SECRET_KEY"] = NEW_KEY  # the old key dropped
    tested = await cli.json("webhooks", "test", "--account", account, "--id", created["id"])
    assert tested["state"] == "success"
    for secret in secrets:
        assert verify(receiver.requests[-1], secret)

    cli.env["CALLERID_SECRET_KEY"] = OLD_KEY  # a key that never encrypted them
    stderr = await cli.fails("secret-key", "rotate")
    assert f"webhook {created['id']}: its signing secret cannot be decrypted" in stderr
    assert "Traceback" not in stderr and not any(s in stderr for s in secrets)
