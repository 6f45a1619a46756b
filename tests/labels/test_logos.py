"""Logos in the database (issue 15 #9): content-addressed storage, serving with a strong ETag and long-lived caching,
the purge of unreferenced logos, old URLs, and migration 0015 moving the files of older versions in.
Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import delete, func, select, update

from callerid import clock
from callerid.accounts import service as accounts
from callerid.app import create_app, load_job_handlers
from callerid.config import Settings
from callerid.db import Database
from callerid.db.base import UtcDateTime
from callerid.db.migrate import alembic_config, upgrade
from callerid.jobs.purge import purge
from callerid.jobs.registry import registry
from callerid.labels import legacy_logos, service
from callerid.labels.jobs import GRACE, LOGO_PURGES
from callerid.labels.models import Label, LabelLogo
from callerid.labels.routes import LOGO_CACHE_CONTROL
from tests.conftest import Tenant, fresh_postgresql_database, make_settings
from tests.console.conftest import browser, create_console_account, sign_in
from tests.labels.images import image_bytes
from tests.migrations import upgrade_all_but

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
TEAL, PINK = image_bytes(color="teal"), image_bytes(color="pink")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def add_label(
    db: Database, settings: Settings, account_id: uuid.UUID, logo: bytes, name: str = "Flower"
) -> Label:
    async with db.transaction() as session:
        return await service.create_label(session, settings, account_id=account_id, name=name, logo=logo)


async def stored_keys(db: Database) -> set[str]:
    async with db.session() as session:
        return set((await session.scalars(select(LabelLogo.key))).all())


# --- serving ---------------------------------------------------------------------------------------------------


async def test_a_logo_is_served_by_its_content_key_with_a_strong_etag_and_for_good(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant
) -> None:
    label = await add_label(db, settings, tenant.account_id, TEAL)
    assert label.logo_key == sha(TEAL)
    response = await client.get(f"/logos/{sha(TEAL)}.png")
    assert response.status_code == 200
    assert response.content == TEAL
    assert response.headers["etag"] == f'"{sha(TEAL)}"'
    assert response.headers["cache-control"] == LOGO_CACHE_CONTROL == "public, max-age=31536000, immutable"
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(TEAL))
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "if_none_match",
    ['"{key}"', 'W/"{key}"', '"{other}", "{key}"', '"{other}" ,W/"{key}"', "*"],
    ids=["exact", "weak", "in a list", "in a list, weak", "star"],
)
async def test_if_none_match_naming_the_logo_is_answered_304(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant, if_none_match: str
) -> None:
    await add_label(db, settings, tenant.account_id, TEAL)
    header = if_none_match.format(key=sha(TEAL), other=sha(PINK))
    response = await client.get(f"/logos/{sha(TEAL)}.png", headers={"If-None-Match": header})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == f'"{sha(TEAL)}"'
    assert response.headers["cache-control"] == LOGO_CACHE_CONTROL


async def test_another_etag_gets_the_logo_and_a_gone_logo_is_404_even_when_revalidated(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant
) -> None:
    await add_label(db, settings, tenant.account_id, TEAL)
    other = await client.get(f"/logos/{sha(TEAL)}.png", headers={"If-None-Match": f'"{sha(PINK)}"'})
    assert (other.status_code, other.content) == (200, TEAL)
    for headers in ({"If-None-Match": f'"{sha(PINK)}"'}, {"If-None-Match": "*"}, {}):
        missing = await client.get(f"/logos/{sha(PINK)}.png", headers=headers)
        assert missing.status_code == 404
        assert missing.json() == {"slug": "not-found", "message": "not found"}


async def test_the_same_image_is_stored_once_and_another_image_gets_another_url(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant, auth: dict[str, str]
) -> None:
    first = await add_label(db, settings, tenant.account_id, TEAL, "First")
    clock.advance(timedelta(seconds=1))
    again = await add_label(db, settings, tenant.account_id, TEAL, "Same Image")
    clock.advance(timedelta(seconds=1))
    changed = await add_label(db, settings, tenant.account_id, PINK, "New Logo")
    assert first.logo_key == again.logo_key == sha(TEAL)
    assert changed.logo_key == sha(PINK)
    assert await stored_keys(db) == {sha(TEAL), sha(PINK)}
    listed = (await client.get(f"/clients/{tenant.account_id}/labels", headers=auth)).json()
    assert [item["logo_url"] for item in listed] == [
        f"http://testserver/logos/{sha(PINK)}.png",
        f"http://testserver/logos/{sha(TEAL)}.png",
        f"http://testserver/logos/{sha(TEAL)}.png",
    ]
    for key, image in ((sha(TEAL), TEAL), (sha(PINK), PINK)):
        assert (await client.get(f"/logos/{key}.png")).content == image


async def test_an_old_logo_url_is_redirected_to_the_logo(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant
) -> None:
    label = await add_label(db, settings, tenant.account_id, TEAL)
    old = f"{uuid.uuid4()}-1751871235271177747.png"
    lost = f"{uuid.uuid4()}-1751871235271177748.png"
    async with db.transaction() as session:
        await session.execute(update(Label).where(Label.id == label.id).values(legacy_logo_key=old))
        orphan = await service.create_label(session, settings, account_id=tenant.account_id, name="Lost", logo=PINK)
        await session.execute(update(Label).where(Label.id == orphan.id).values(logo_key=None, legacy_logo_key=lost))
    response = await client.get(f"/logos/{old}")
    assert response.status_code == 308
    assert response.headers["location"] == f"http://testserver/logos/{sha(TEAL)}.png"
    assert (await client.get(response.headers["location"])).content == TEAL
    assert (await client.get(f"/logos/{lost}")).status_code == 404  # its file was never moved in


async def test_a_label_without_a_logo_has_an_empty_logo_url(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant, auth: dict[str, str]
) -> None:
    label = await add_label(db, settings, tenant.account_id, TEAL)
    async with db.transaction() as session:
        await session.execute(update(Label).where(Label.id == label.id).values(logo_key=None))
    [listed] = (await client.get(f"/clients/{tenant.account_id}/labels", headers=auth)).json()
    assert listed["logo_url"] == ""


# --- the purge of unreferenced logos ---------------------------------------------------------------------------


async def test_a_logo_no_label_references_is_purged_after_the_grace_period(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant
) -> None:
    clock.freeze(NOW)
    kept = await add_label(db, settings, tenant.account_id, TEAL, "Kept")
    shared_a = await add_label(db, settings, tenant.account_id, PINK, "Shared A")
    shared_b = await add_label(db, settings, tenant.account_id, PINK, "Shared B")
    dropped_image = image_bytes(color="navy")
    dropped = await add_label(db, settings, tenant.account_id, dropped_image, "Dropped")

    async def remove(label: Label) -> None:  # as an account's deletion (ON DELETE CASCADE) or an operator would
        async with db.transaction() as session:
            await session.execute(delete(Label).where(Label.id == label.id))

    await remove(dropped)
    await remove(shared_a)
    # Inside the grace period (a label being made might be about to use it): kept.
    run = await purge(db, settings, LOGO_PURGES, now=NOW + GRACE - timedelta(seconds=1))
    assert run.deleted == {"unreferenced_logos": 0}
    assert await stored_keys(db) == {sha(TEAL), sha(PINK), sha(dropped_image)}

    run = await purge(db, settings, LOGO_PURGES, now=NOW + GRACE + timedelta(seconds=1))
    assert run.deleted == {"unreferenced_logos": 1}
    assert await stored_keys(db) == {kept.logo_key, shared_b.logo_key}
    assert (await client.get(f"/logos/{sha(dropped_image)}.png")).status_code == 404
    assert (await client.get(f"/logos/{sha(PINK)}.png")).content == PINK

    # The same image uploaded again later is stored again, under the same key and URL.
    again = await add_label(db, settings, tenant.account_id, dropped_image, "Again")
    assert again.logo_key == dropped.logo_key
    assert (await client.get(f"/logos/{sha(dropped_image)}.png")).content == dropped_image


async def test_a_label_made_with_an_unreferenced_stored_image_keeps_it(
    db: Database, settings: Settings, tenant: Tenant
) -> None:
    clock.freeze(NOW)
    first = await add_label(db, settings, tenant.account_id, TEAL)
    async with db.transaction() as session:
        await session.execute(delete(Label).where(Label.id == first.id))
    clock.freeze(NOW + 2 * GRACE)
    await add_label(db, settings, tenant.account_id, TEAL, "Reuses It")
    run = await purge(db, settings, LOGO_PURGES, now=NOW + 2 * GRACE)
    assert run.deleted == {"unreferenced_logos": 0}
    assert await stored_keys(db) == {sha(TEAL)}


def test_the_logo_purge_runs_on_the_retention_interval() -> None:
    load_job_handlers()
    assert registry.periodic["labels.purge_logos"].every(Settings()) == timedelta(hours=1)


# --- migration 0015: the files of older versions moved into the database --------------------------------------

LOGO_REVISION, BEFORE = "0015_label_logos", "0010_label_catalogue"


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (the migration is what is tested)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'before.db'}"
        return
    with fresh_postgresql_database("callerid_logos") as url:
        yield url


def upgrade_all_but_logos(url: str) -> None:
    """Every branch to its newest revision, the labels branch to the one before logos moved into the database."""
    upgrade_all_but(url, LOGO_REVISION, BEFORE)


_OLD_LABELS = sa.table(
    "labels",
    sa.column("id", sa.Uuid()),
    sa.column("account_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("label_type", sa.String()),
    sa.column("logo_key", sa.String()),
    sa.column("created_by_email", sa.String()),
    sa.column("created_at", UtcDateTime()),
)


async def old_version_labels(url: str, names: list[str]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """An account with one label per old logo file name, as the version before 0015 stored them."""
    db = Database(url, null_pool=True)
    try:
        async with db.transaction() as session:
            created = await accounts.create_account(session, name="Acme Flowers", admin_email="admin@acme.test")
            ids = [uuid.uuid4() for _ in names]
            for index, (label_id, name) in enumerate(zip(ids, names, strict=True)):
                values = {
                    "id": label_id,
                    "account_id": created.account.id,
                    "name": f"Label {index}",
                    "label_type": "dynamic",
                    "logo_key": name,
                    "created_by_email": "admin@acme.test",
                    "created_at": datetime(2026, 1, 1, 0, 0, index, tzinfo=UTC),
                }
                await session.execute(sa.insert(_OLD_LABELS).values(**values))
    finally:
        await db.dispose()
    return created.account.id, ids


def old_name() -> str:
    return f"{uuid.uuid4()}-{1751871235271177747 + uuid.uuid4().int % 1000}.png"


async def test_the_migration_moves_logo_files_into_the_database(
    unmigrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.to_thread(upgrade_all_but_logos, unmigrated_url)
    teal, teal_copy, pink, missing, not_png = (old_name() for _ in range(5))
    _, (teal_id, copy_id, pink_id, missing_id, not_png_id) = await old_version_labels(
        unmigrated_url, [teal, teal_copy, pink, missing, not_png]
    )
    data_dir = tmp_path / "host-a"
    folder = data_dir / "logos"
    folder.mkdir(parents=True)
    (folder / teal).write_bytes(TEAL)
    (folder / teal_copy).write_bytes(TEAL)  # two labels, one image: stored once
    (folder / pink).write_bytes(PINK)
    (folder / not_png).write_bytes(b"GIF89a not a logo")
    monkeypatch.setenv("CALLERID_DATA_DIR", str(data_dir))  # where the migration finds the files, as the app does

    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        await asyncio.to_thread(upgrade, unmigrated_url)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(missing_id) in w and missing in w and "no such file" in w for w in warnings), warnings
    assert any(str(not_png_id) in w and "not a PNG" in w for w in warnings), warnings

    # Served by a process whose data directory has no logos at all.
    settings = make_settings(unmigrated_url, tmp_path / "host-b")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        db: Database = app.state.runtime.db
        async with db.session() as session:
            rows = {row.id: row for row in (await session.execute(select(Label))).scalars()}
            logos = {logo.key: logo for logo in (await session.scalars(select(LabelLogo))).all()}
        assert {k: (v.data, v.size, v.media_type) for k, v in logos.items()} == {
            sha(TEAL): (TEAL, len(TEAL), "image/png"),
            sha(PINK): (PINK, len(PINK), "image/png"),
        }
        assert {label_id: (rows[label_id].logo_key, rows[label_id].legacy_logo_key) for label_id in rows} == {
            teal_id: (sha(TEAL), teal),
            copy_id: (sha(TEAL), teal_copy),
            pink_id: (sha(PINK), pink),
            missing_id: (None, missing),
            not_png_id: (None, not_png),
        }
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            served = await client.get(f"/logos/{sha(PINK)}.png")
            assert (served.status_code, served.content) == (200, PINK)
            old_url = await client.get(f"/logos/{teal_copy}")  # the URL handed out before the upgrade
            assert old_url.status_code == 308
            assert old_url.headers["location"] == f"http://testserver/logos/{sha(TEAL)}.png"
            assert (await client.get(f"/logos/{missing}")).status_code == 404
        assert not (settings.data_dir / "logos").exists()

        # The host that has the missing file moves it in later (`callerid labels import-logos`).
        other_host = tmp_path / "host-c" / "logos"
        other_host.mkdir(parents=True)
        navy = image_bytes(color="navy")
        (other_host / missing).write_bytes(navy)
        async with db.transaction() as session:
            connection = await session.connection()
            result = await connection.run_sync(lambda sync: legacy_logos.move_logo_files(sync, other_host))
        assert (result.moved, result.stored, result.missing) == (1, 1, [not_png])
        async with db.session() as session:
            assert await session.scalar(select(Label.logo_key).where(Label.id == missing_id)) == sha(navy)


async def test_the_migration_without_any_logo_file(
    unmigrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await asyncio.to_thread(upgrade_all_but_logos, unmigrated_url)
    _, [label_id] = await old_version_labels(unmigrated_url, [old_name()])
    monkeypatch.setenv("CALLERID_DATA_DIR", str(tmp_path / "no-such-folder"))
    await asyncio.to_thread(upgrade, unmigrated_url)
    db = Database(unmigrated_url, null_pool=True)
    try:
        async with db.session() as session:
            assert await session.scalar(select(Label.logo_key).where(Label.id == label_id)) is None
            assert await session.scalar(select(func.count()).select_from(LabelLogo)) == 0
    finally:
        await db.dispose()


async def test_the_migration_goes_back_to_files(
    unmigrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Downgrading writes every logo back under the label's file name (a new one for labels made since)."""
    monkeypatch.setenv("CALLERID_DATA_DIR", str(tmp_path / "data"))
    await asyncio.to_thread(upgrade_all_but_logos, unmigrated_url)
    name = old_name()
    _, [old_id] = await old_version_labels(unmigrated_url, [name])
    (tmp_path / "data" / "logos").mkdir(parents=True)
    (tmp_path / "data" / "logos" / name).write_bytes(TEAL)
    await asyncio.to_thread(upgrade, unmigrated_url)
    (tmp_path / "data" / "logos" / name).unlink()
    settings = make_settings(unmigrated_url, tmp_path / "data")
    db = Database(unmigrated_url, null_pool=True)
    try:
        async with db.session() as session:
            account_id = await session.scalar(select(Label.account_id).where(Label.id == old_id))
        assert account_id is not None
        new = await add_label(db, settings, account_id, PINK, "Made Since")
    finally:
        await db.dispose()

    await asyncio.to_thread(command.downgrade, alembic_config(unmigrated_url), BEFORE)
    db = Database(unmigrated_url, null_pool=True)
    try:
        async with db.session() as session:
            keys: dict[Any, str] = dict((await session.execute(select(_OLD_LABELS.c.id, _OLD_LABELS.c.logo_key))).all())
    finally:
        await db.dispose()
    assert keys[old_id] == name
    assert legacy_logos.LEGACY_NAME.fullmatch(keys[new.id])
    assert (tmp_path / "data" / "logos" / name).read_bytes() == TEAL
    assert (tmp_path / "data" / "logos" / keys[new.id]).read_bytes() == PINK


async def test_the_console_shows_a_label_without_a_logo(app: Any, db: Database, settings: Settings) -> None:
    console = await create_console_account(db)
    label = await add_label(db, settings, console.account_id, TEAL)
    async with db.transaction() as session:
        await session.execute(update(Label).where(Label.id == label.id).values(logo_key=None))
    async with browser(app) as http:
        assert (await sign_in(http, console.email, console.password)).status_code == 303
        page = await http.get(f"/console/caller-id/{label.id}")
        listing = await http.get("/console/caller-id")
    assert page.status_code == listing.status_code == 200
    assert "/logos/" not in page.text and "/logos/" not in listing.text
    assert "no logo (its file was not found when logos moved into the database)" in page.text
