"""Secure branding (issue 13 point 2): per feature set, off by default. When on, a listed number's identity shows
only for calls its business announced with a call record for that receiver; any other lookup answers exactly as
for an unknown number and is recorded as a blocked attempt (a row without the receiver, and the ``blocked`` count
of the account's day). Set through the service, the console's form and the CLI; retention; the list form of the
listing read; and no extra database work on the lookup while it is off. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update
from typer.testing import CliRunner

from callerid import clock
from callerid.accounts.models import ClientAccount
from callerid.analytics.blocked import BLOCKED_PURGES
from callerid.analytics.models import BlockedAttempt, DailyFigures
from callerid.analytics.tally import day_in
from callerid.app import load_job_handlers
from callerid.cli.main import app as cli_app
from callerid.config import Settings
from callerid.db import Database
from callerid.failures import NotFound
from callerid.jobs.purge import purge
from callerid.jobs.registry import registry
from callerid.jobs.runner import JobRunner
from callerid.labels import service as labels
from callerid.numbers import service as numbers
from callerid.numbers.models import FeatureSet
from callerid.numbers.queries import _LISTED_IDENTITY
from callerid.secretbox import generate_key
from tests.conftest import Tenant
from tests.console.conftest import browser, create_console_account, csrf_of, sign_in
from tests.labels.images import image_bytes
from tests.numbers.conftest import Api, Tree, make_tree, settle

CALLER = "911234567898"  # listed in the set that gets secure branding (``tree.fs``)
OTHER_CALLER = "911234567899"  # listed in the other set (``tree.fs_sub``), never secured here
RECEIVER = "919234567898"
ELSEWHERE = "919000000001"  # another phone
HOUR_MS = 3_600_000
UNVERIFIED = {"verified": False}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"number_job_delay_seconds": 0}


def zone_of_another_day(at: datetime) -> str:
    """A timezone whose date at ``at`` is not the UTC date, so the figures' day shows whose day it is."""
    return "Pacific/Kiritimati" if at.hour >= 10 else "Pacific/Pago_Pago"  # UTC+14 / UTC-11


@dataclass
class Branded:
    tenant: Tenant
    tree: Tree
    api: Api
    record_label: uuid.UUID
    phone: dict[str, str]
    timezone: str


async def register(client: httpx.AsyncClient, number: str) -> dict[str, str]:
    response = await client.post(
        "/app/v1/devices", json={"phone_number": number, "platform": "android", "app_version": "2.0.0"}
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['device_token']}"}


async def list_numbers(db: Database, runner: JobRunner, api: Api, tree: Tree) -> None:
    assert (await api.publish(tree.fs, [CALLER])).status_code == 200
    assert (await api.publish(tree.fs_sub, [OTHER_CALLER])).status_code == 200
    await settle(runner)


@pytest.fixture
async def branded(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    tenant: Tenant,
    auth: dict[str, str],
    runner: JobRunner,
    now: datetime,
) -> Branded:
    """Two listed numbers in two feature sets (both off), a dynamic label for records, the receiver's phone."""
    tree = await make_tree(db, tenant.account_id)
    timezone = zone_of_another_day(now)
    async with db.transaction() as session:
        await session.execute(
            update(ClientAccount).where(ClientAccount.id == tenant.account_id).values(timezone=timezone)
        )
        label = await labels.create_label(
            session, settings, account_id=tenant.account_id, name="Acme Live", logo=image_bytes()
        )
    api = Api(client, tenant.account_id, auth)
    await list_numbers(db, runner, api, tree)
    return Branded(tenant, tree, api, label.id, await register(client, RECEIVER), timezone)


async def lookup(client: httpx.AsyncClient, phone: dict[str, str], caller: str = CALLER) -> dict[str, Any]:
    response = await client.get("/app/v1/caller-id", params={"caller": caller}, headers=phone)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def set_secure(db: Database, branded: Branded, enabled: bool, feature_set: uuid.UUID | None = None) -> None:
    async with db.transaction() as session:
        await numbers.set_secure_branding(
            session,
            account_id=branded.tenant.account_id,
            feature_set_id=feature_set or branded.tree.fs,
            enabled=enabled,
        )


async def announce(
    client: httpx.AsyncClient, branded: Branded, auth: dict[str, str], receiver: str, **window: int
) -> None:
    """A call record (R2) from CALLER to ``receiver``, its window holding now unless given."""
    now_ms = clock.now_ms()
    body = {
        "label_id": str(branded.record_label),
        "dynamic_label_name": "Acme Live Desk",
        "dynamic_call_reason": "Calling about your refund",
        "caller_number": CALLER,
        "receiver_number": receiver,
        "starts_at": now_ms - 1000,
        "ends_at": now_ms + HOUR_MS,
        **window,
    }
    response = await client.post(
        f"/v2/clients/{branded.tenant.account_id}/dynamic_call_record", json=body, headers=auth
    )
    assert response.status_code == 200, response.text  # stored (pushed or not: the phone holds no stream here)


async def blocked_rows(db: Database) -> list[Any]:
    async with db.session() as session:
        return list((await session.execute(select(BlockedAttempt.__table__))).all())


async def blocked_figures(db: Database) -> dict[tuple[Any, ...], int]:
    """The ``blocked`` counts of daily_figures by key (account, day, label, feature set, business number); other
    counters (records, ...) are not this test's."""
    table = DailyFigures.__table__
    async with db.session() as session:
        rows = (await session.execute(select(table).where(table.c.blocked > 0))).mappings().all()
    return {
        (row["account_id"], row["day"], row["label_id"], row["feature_set_id"], row["business_number"]): row["blocked"]
        for row in rows
    }


def blocked_total() -> float:
    return REGISTRY.get_sample_value("callerid_blocked_attempts_total") or 0.0


async def test_off_by_default_the_listed_identity_shows_as_before(
    client: httpx.AsyncClient, db: Database, branded: Branded
) -> None:
    async with db.session() as session:
        stored = await session.get(FeatureSet, branded.tree.fs)
    assert stored is not None and stored.secure_branding is False
    body = await lookup(client, branded.phone)
    body.pop("assertion")
    assert body == {
        "verified": True,
        "caller": CALLER,
        "name": "Acme Deliveries",
        "logo_url": "",
        "call_reason": "Your parcel is on its way",
        "label_id": str(branded.tree.label_id),
        "starts_at": None,
        "ends_at": None,
    }
    assert await blocked_rows(db) == []
    assert await blocked_figures(db) == {}


async def test_on_a_record_for_this_receiver_shows_the_identity(
    client: httpx.AsyncClient, db: Database, branded: Branded, auth: dict[str, str]
) -> None:
    await set_secure(db, branded, True)
    await announce(client, branded, auth, RECEIVER)
    body = await lookup(client, branded.phone)
    assert (body["verified"], body["name"], body["label_id"]) == (True, "Acme Live Desk", str(branded.record_label))
    assert await blocked_rows(db) == []


async def test_on_without_a_record_the_lookup_is_unverified_and_a_blocked_attempt(
    client: httpx.AsyncClient, db: Database, branded: Branded, now: datetime
) -> None:
    await set_secure(db, branded, True)
    before = blocked_total()
    assert await lookup(client, branded.phone) == UNVERIFIED  # exactly as for an unknown number
    assert await lookup(client, branded.phone, "911111111111") == UNVERIFIED
    at = clock.now()
    (row,) = await blocked_rows(db)
    assert row._asdict() == {
        "id": row.id,
        "account_id": branded.tenant.account_id,
        "feature_set_id": branded.tree.fs,
        "label_id": branded.tree.label_id,
        "business_number": int(CALLER),
        "at": at,
    }  # nothing of the receiver
    day = day_in(branded.timezone, at)
    assert day != at.date()  # the account's day, not UTC's
    key = (branded.tenant.account_id, day, branded.tree.label_id, branded.tree.fs, int(CALLER))
    assert await blocked_figures(db) == {key: 1}
    assert blocked_total() == before + 1
    # The flag is per feature set: the other set's number still shows; a second attempt counts again.
    assert (await lookup(client, branded.phone, OTHER_CALLER))["verified"] is True
    assert await lookup(client, branded.phone) == UNVERIFIED
    assert len(await blocked_rows(db)) == 2
    assert await blocked_figures(db) == {key: 2}
    assert blocked_total() == before + 2


async def test_on_a_record_for_another_receiver_or_an_ended_window_does_not_unlock(
    client: httpx.AsyncClient, db: Database, branded: Branded, auth: dict[str, str]
) -> None:
    await set_secure(db, branded, True)
    await announce(client, branded, auth, ELSEWHERE)
    assert await lookup(client, branded.phone) == UNVERIFIED
    other_phone = await register(client, ELSEWHERE)
    assert (await lookup(client, other_phone))["name"] == "Acme Live Desk"  # that phone was announced
    await announce(client, branded, auth, RECEIVER, ends_at=clock.now_ms() + 60_000)
    assert (await lookup(client, branded.phone))["verified"] is True
    clock.advance(61)
    assert await lookup(client, branded.phone) == UNVERIFIED  # its window is over
    assert len(await blocked_rows(db)) == 2
    assert list((await blocked_figures(db)).values()) == [2]


async def test_the_list_form_of_the_listing_read_carries_the_flag(
    client: httpx.AsyncClient, db: Database, branded: Branded
) -> None:
    await set_secure(db, branded, True)
    # Several numbers in one statement (the form reads that arrive together share where a read costs a round trip).
    rows = await db.read_keyed(_LISTED_IDENTITY, [CALLER, OTHER_CALLER])
    flags = {row.phone_number: (row.account_id, bool(row.secure_branding)) for row in rows}
    assert flags == {CALLER: (branded.tenant.account_id, True), OTHER_CALLER: (branded.tenant.account_id, False)}
    # Lookups arriving together (grouped into one read on PostgreSQL) each get their own set's rule.
    callers = [CALLER, OTHER_CALLER, CALLER, CALLER, OTHER_CALLER, CALLER]
    answers = await asyncio.gather(*(lookup(client, branded.phone, caller) for caller in callers))
    for caller, answer in zip(callers, answers, strict=True):
        assert answer["verified"] is (caller == OTHER_CALLER), (caller, answer)
    assert len(await blocked_rows(db)) == 4
    assert list((await blocked_figures(db)).values()) == [4]


async def test_the_service_turns_it_on_and_off_at_once(
    client: httpx.AsyncClient, db: Database, branded: Branded, settings: Settings
) -> None:
    assert (await lookup(client, branded.phone))["verified"] is True  # read once: nothing keeps it
    clock.advance(5)
    await set_secure(db, branded, True)
    async with db.session() as session:
        stored = await session.get(FeatureSet, branded.tree.fs)
    assert stored is not None and stored.secure_branding is True and stored.updated_at == clock.now()
    assert await lookup(client, branded.phone) == UNVERIFIED
    await set_secure(db, branded, False)
    assert (await lookup(client, branded.phone))["verified"] is True
    assert len(await blocked_rows(db)) == 1
    # Another account's set, or none, is not found (the same answer for both).
    other = await create_console_account(db, "Other Co")
    for account_id, feature_set_id in ((other.account_id, branded.tree.fs), (branded.tenant.account_id, uuid.uuid4())):
        with pytest.raises(NotFound):
            async with db.transaction() as session:
                await numbers.set_secure_branding(
                    session, account_id=account_id, feature_set_id=feature_set_id, enabled=True
                )
    async with db.session() as session:
        stored = await session.get(FeatureSet, branded.tree.fs)
    assert stored is not None and stored.secure_branding is False


class DatabaseSpy:
    """Counts the database calls a piece of work makes (reads by key, point reads, writes, sessions)."""

    NAMES = ("read_keyed", "point_session", "session", "transaction", "write", "transact")

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch):
        self.calls: Counter[str] = Counter()
        self.steps: list[int] = []
        for name in self.NAMES:
            monkeypatch.setattr(db, name, self._counting(name, getattr(db, name)))

    def _counting(self, name: str, original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name == "write":
                self.steps.append(len(args[0]))
            return original(*args, **kwargs)

        return call


async def test_off_the_lookup_does_no_more_database_work_and_on_a_blocked_one_writes_once(
    client: httpx.AsyncClient, db: Database, branded: Branded, monkeypatch: pytest.MonkeyPatch
) -> None:
    await lookup(client, branded.phone, OTHER_CALLER)  # warm: device check and signing key cached
    spy = DatabaseSpy(db, monkeypatch)
    assert (await lookup(client, branded.phone))["verified"] is True
    # The record read and the listing read (with the flag in it): nothing more.
    assert spy.calls == {"read_keyed": 2}
    await set_secure(db, branded, True)
    spy.calls.clear()
    assert await lookup(client, branded.phone) == UNVERIFIED
    # Blocked: the same two reads, the account's timezone (read once per process), one write of the row and its
    # count.
    assert spy.calls.pop("point_session", 0) <= 1
    assert spy.calls == {"read_keyed": 2, "write": 1}
    assert spy.steps == [2]
    spy.calls.clear()
    assert await lookup(client, branded.phone) == UNVERIFIED
    assert spy.calls == {"read_keyed": 2, "write": 1}


async def test_the_console_form_sets_it(app: Any, db: Database, settings: Settings) -> None:
    console = await create_console_account(db)
    tree = await make_tree(db, console.account_id)
    async with browser(app) as http:
        assert (await sign_in(http, console.email, console.password)).status_code == 303
        new_page = await http.get("/console/feature-sets/new")
        assert new_page.status_code == 200
        assert 'id="secure_branding" name="secure_branding" value="on" aria-describedby' in new_page.text
        assert '<label for="secure_branding">Secure branding</label>' in new_page.text
        form = {
            "csrf_token": csrf_of(new_page.text),
            "name": "Secured",
            "description": "",
            "call_reason": "",
            "status": "draft",
            "process": str(tree.process_id),
            "label": str(tree.label_id),
        }
        created = await http.post("/console/feature-sets", data={**form, "secure_branding": "on"})
        assert created.status_code == 303, created.text
        feature_set_id = uuid.UUID(created.headers["location"].rsplit("/", 1)[1])
        async with db.session() as session:
            stored = await session.get(FeatureSet, feature_set_id)
        assert stored is not None and stored.secure_branding is True
        shown = await http.get(f"/console/feature-sets/{feature_set_id}")
        assert "<dt>Secure branding</dt><dd><span" in shown.text and ">On<" in shown.text.split("Secure branding")[1]
        edit = await http.get(f"/console/feature-sets/{feature_set_id}/edit")
        assert 'id="secure_branding" name="secure_branding" value="on" checked' in edit.text
        # Unchecked (a browser sends nothing for it): off.
        saved = await http.post(
            f"/console/feature-sets/{feature_set_id}", data={**form, "csrf_token": csrf_of(edit.text)}
        )
        assert saved.status_code == 303, saved.text
        async with db.session() as session:
            stored = await session.get(FeatureSet, feature_set_id)
        assert stored is not None and stored.secure_branding is False
        edit = await http.get(f"/console/feature-sets/{feature_set_id}/edit")
        assert 'id="secure_branding" name="secure_branding" value="on" aria-describedby' in edit.text
        # An edit that does not touch it keeps the others' flags as they were.
        async with db.session() as session:
            untouched = await session.get(FeatureSet, tree.fs)
        assert untouched is not None and untouched.secure_branding is False


async def test_the_cli_turns_it_on_and_off(
    client: httpx.AsyncClient, db: Database, branded: Branded, settings: Settings
) -> None:
    env = {
        "CALLERID_DATABASE_URL": settings.database_url,
        "CALLERID_DATA_DIR": str(settings.data_dir),
        "CALLERID_SECRET_KEY": generate_key() if db.is_postgres else "",
    }
    env = {key: value for key, value in env.items() if value}
    account = str(branded.tenant.account_id)

    async def cli(*args: str) -> Any:
        return await asyncio.to_thread(CliRunner().invoke, cli_app, list(args), env=env)

    done = await cli("feature-sets", "secure-branding", str(branded.tree.fs), "--on", "--account", account, "--json")
    assert done.exit_code == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["id"], shown["secure_branding"]) == (str(branded.tree.fs), True)
    assert await lookup(client, branded.phone) == UNVERIFIED
    done = await cli("feature-sets", "secure-branding", str(branded.tree.fs), "--off", "--account", account, "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["secure_branding"] is False
    assert (await lookup(client, branded.phone))["verified"] is True
    other = str(uuid.uuid4())
    for feature_set, owner in ((str(branded.tree.fs), other), (other, account)):
        done = await cli("feature-sets", "secure-branding", feature_set, "--on", "--account", owner, "--json")
        assert (done.exit_code, done.stdout) == (1, "")
        assert done.stderr == "error: feature set not found\n"
    done = await cli("feature-sets", "secure-branding", "nope", "--on", "--account", account)
    assert done.exit_code == 1 and "is not a UUID" in done.stderr


async def test_blocked_attempts_are_purged_after_their_retention_and_their_counts_stay(
    client: httpx.AsyncClient, db: Database, branded: Branded, settings: Settings
) -> None:
    load_job_handlers()
    assert "analytics.purge_blocked_attempts" in registry.periodic
    assert settings.blocked_attempt_retention_days == 90
    await set_secure(db, branded, True)
    assert await lookup(client, branded.phone) == UNVERIFIED
    at = clock.now()
    clock.advance(timedelta(days=1))
    assert await lookup(client, branded.phone) == UNVERIFIED
    kept = timedelta(days=settings.blocked_attempt_retention_days)
    counted = await blocked_figures(db)
    assert list(counted.values()) == [1, 1]  # two days
    run = await purge(db, settings, BLOCKED_PURGES, now=at + kept)
    assert (run.deleted, len(await blocked_rows(db))) == ({"blocked_attempts": 0}, 2)  # not older than kept yet
    run = await purge(db, settings, BLOCKED_PURGES, now=at + kept + timedelta(seconds=1))
    assert run.deleted == {"blocked_attempts": 1}
    (left,) = await blocked_rows(db)
    assert left.at == at + timedelta(days=1)
    assert await blocked_figures(db) == counted
