"""POST /app/v1/call-signals: every kind stored once and counted in the daily figures, linked to the identity shown
(call record or listed number), validated field by field, rate-limited per phone; retention of the raw signals."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete, select, update

from callerid import clock
from callerid.accounts.models import ClientAccount
from callerid.analytics import schemas, signals
from callerid.analytics.models import NO_ID, CallSignal, DailyFigures
from callerid.config import Settings
from callerid.db import Database
from callerid.delivery.models import Device
from callerid.delivery.service import DeviceInfo
from callerid.failures import LimitExceeded
from callerid.jobs.purge import purge
from callerid.jobs.runner import JobRunner
from callerid.labels import service as labels
from callerid.numbers.models import FeatureSet
from callerid.personalisation.models import CallRecord
from callerid.runtime import Runtime
from tests.conftest import REDIS_URL, Tenant, mint, requires_redis
from tests.engagement.conftest import make_feature_set, make_org, publish, register_phone
from tests.labels.images import image_bytes

CALLER = "911234567898"
LISTED = "911234567899"
RECEIVER = "919234567898"
UNKNOWN = "915550000001"
HOUR_MS = 3_600_000
PATH = "/app/v1/call-signals"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"number_job_delay_seconds": 0}


def iso(at: datetime) -> str:
    return at.isoformat()


def signal(event_id: str, kind: str, at: datetime, caller: str = CALLER, **extra: Any) -> dict[str, Any]:
    return {"eventId": event_id, "kind": kind, "caller": caller, "occurredAt": iso(at), **extra}


@pytest.fixture
async def phone(client: httpx.AsyncClient) -> dict[str, str]:
    return await register_phone(client, RECEIVER)


@pytest.fixture
async def dynamic_label(db: Database, settings: Settings, tenant: Tenant) -> uuid.UUID:
    async with db.transaction() as session:
        label = await labels.create_label(
            session, settings, account_id=tenant.account_id, name="FlowerEra", logo=image_bytes()
        )
    return label.id


async def send_record(
    client: httpx.AsyncClient,
    tenant: Tenant,
    auth: dict[str, str],
    label_id: uuid.UUID,
    starts: datetime,
    ends: datetime,
) -> None:
    body = {
        "label_id": str(label_id),
        "dynamic_label_name": "Flower rasm",
        "dynamic_call_reason": "Flower Delivery",
        "caller_number": CALLER,
        "receiver_number": RECEIVER,
        "starts_at": int(starts.timestamp() * 1000),
        "ends_at": int(ends.timestamp() * 1000),
    }
    # Sent before its window starts (a record may not end in the past): the clock goes back for it.
    now = clock.now()
    clock.freeze(min(now, starts - timedelta(minutes=1)))
    try:
        response = await client.post(f"/v2/clients/{tenant.account_id}/dynamic_call_record", json=body, headers=auth)
    finally:
        clock.freeze(now)
    assert response.status_code == 200, response.text


@pytest.fixture
async def record(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], dynamic_label: uuid.UUID, now: datetime
) -> uuid.UUID:
    """A record for CALLER -> RECEIVER whose window holds the last two hours and the next one."""
    await send_record(client, tenant, auth, dynamic_label, now - timedelta(hours=2), now + timedelta(hours=1))
    return dynamic_label


async def post(client: httpx.AsyncClient, phone: dict[str, str], *items: dict[str, Any]) -> httpx.Response:
    return await client.post(PATH, json={"signals": list(items)}, headers=phone)


async def stored(db: Database) -> list[CallSignal]:
    async with db.session() as session:
        return list((await session.scalars(select(CallSignal).order_by(CallSignal.occurred_at))).all())


async def figures(db: Database) -> list[DailyFigures]:
    async with db.session() as session:
        return list((await session.scalars(select(DailyFigures).order_by(DailyFigures.day))).all())


def counts(row: DailyFigures) -> dict[str, int]:
    names = ("shown", "answered", "missed", "rejected", "ended", "talk_seconds")
    return {name: getattr(row, name) for name in names if getattr(row, name)}


def metric(kind: str) -> float:
    return REGISTRY.get_sample_value("callerid_call_signals_total", {"kind": kind}) or 0.0


def kolkata_day(at: datetime) -> date:
    return (at + timedelta(hours=5, minutes=30)).date()


# --- kinds, linking, figures --------------------------------------------------------------------------------


async def test_every_kind_is_stored_linked_to_the_record_and_counted(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, phone: dict[str, str], record: uuid.UUID, now: datetime
) -> None:
    before = {kind: metric(kind) for kind in schemas.KINDS}
    at = now - timedelta(minutes=30)
    response = await post(
        client,
        phone,
        signal("c1-shown", "displayed", at),
        signal("c1-answered", "answered", at + timedelta(seconds=5)),
        signal("c1-ended", "ended", at + timedelta(seconds=95), durationSeconds=90),
        signal("c2-shown", "displayed", at + timedelta(minutes=5)),
        signal("c2-missed", "missed", at + timedelta(minutes=6)),
        signal("c3-shown", "displayed", at + timedelta(minutes=10)),
        signal("c3-rejected", "rejected", at + timedelta(minutes=11)),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "accepted": ["c1-shown", "c1-answered", "c1-ended", "c2-shown", "c2-missed", "c3-shown", "c3-rejected"],
        "duplicates": [],
        "ignored": [],
    }
    rows = await stored(db)
    assert [(row.event_id, row.kind, row.duration_seconds) for row in rows] == [
        ("c1-shown", "displayed", None),
        ("c1-answered", "answered", None),
        ("c1-ended", "ended", 90),
        ("c2-shown", "displayed", None),
        ("c2-missed", "missed", None),
        ("c3-shown", "displayed", None),
        ("c3-rejected", "rejected", None),
    ]
    for row in rows:
        assert (row.account_id, row.label_id, row.feature_set_id, row.business_number) == (
            tenant.account_id,
            record,
            NO_ID,
            int(CALLER),
        )
        assert row.record_id is not None
        assert row.occurred_at.tzinfo is not None and row.received_at == now
    [row] = await figures(db)
    assert (row.account_id, row.label_id, row.feature_set_id, row.business_number) == (
        tenant.account_id,
        record,
        NO_ID,
        int(CALLER),
    )
    assert row.day == kolkata_day(at)
    assert counts(row) == {"shown": 3, "answered": 1, "missed": 1, "rejected": 1, "ended": 1, "talk_seconds": 90}
    after = {kind: metric(kind) - before[kind] for kind in schemas.KINDS}
    assert after == {"displayed": 3, "answered": 1, "missed": 1, "rejected": 1, "ended": 1}


async def test_a_listed_number_links_to_its_feature_set_and_label(
    client: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    auth: dict[str, str],
    runner: JobRunner,
    phone: dict[str, str],
    now: datetime,
) -> None:
    org = await make_org(db, tenant.account_id)
    feature_set_id = await make_feature_set(db, org, "Doorstep")
    await publish(client, runner, tenant.account_id, auth, feature_set_id, LISTED)
    response = await post(client, phone, signal("l1", "displayed", now), signal("l2", "answered", now, caller=LISTED))
    assert response.status_code == 200, response.text
    # CALLER has no record for this phone and is not listed: ignored; LISTED links to its feature set.
    assert response.json() == {"accepted": ["l2"], "duplicates": [], "ignored": ["l1"]}
    [row] = await stored(db)
    assert (row.event_id, row.account_id, row.label_id, row.feature_set_id, row.record_id, row.business_number) == (
        "l2",
        tenant.account_id,
        org.label_id,
        feature_set_id,
        None,
        int(LISTED),
    )
    [figure] = await figures(db)
    assert (figure.label_id, figure.feature_set_id, figure.business_number) == (
        org.label_id,
        feature_set_id,
        int(LISTED),
    )
    assert counts(figure) == {"answered": 1}


async def test_a_listed_number_under_secure_branding_counts_only_with_a_record(
    client: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    auth: dict[str, str],
    runner: JobRunner,
    phone: dict[str, str],
    dynamic_label: uuid.UUID,
    now: datetime,
) -> None:
    org = await make_org(db, tenant.account_id)
    feature_set_id = await make_feature_set(db, org, "Doorstep")
    async with db.transaction() as session:
        await session.execute(update(FeatureSet).where(FeatureSet.id == feature_set_id).values(secure_branding=True))
    await publish(client, runner, tenant.account_id, auth, feature_set_id, CALLER)
    # No record pre-announced the call: the lookup showed nothing verified, so there is nothing to count.
    response = await post(client, phone, signal("s1", "displayed", now))
    assert response.json() == {"accepted": [], "duplicates": [], "ignored": ["s1"]}
    await send_record(client, tenant, auth, dynamic_label, now - timedelta(minutes=5), now + timedelta(minutes=5))
    response = await post(client, phone, signal("s2", "displayed", now))
    assert response.json()["accepted"] == ["s2"]
    [row] = await stored(db)
    assert (row.label_id, row.feature_set_id) == (dynamic_label, feature_set_id)


async def test_a_listed_caller_with_a_record_links_to_the_record_and_keeps_the_feature_set(
    client: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    auth: dict[str, str],
    runner: JobRunner,
    phone: dict[str, str],
    record: uuid.UUID,
    now: datetime,
) -> None:
    org = await make_org(db, tenant.account_id)
    feature_set_id = await make_feature_set(db, org, "Doorstep")
    await publish(client, runner, tenant.account_id, auth, feature_set_id, CALLER)
    response = await post(client, phone, signal("r1", "displayed", now))
    assert response.json()["accepted"] == ["r1"]
    [row] = await stored(db)
    assert (row.label_id, row.feature_set_id) == (record, feature_set_id)  # the record's label, not the set's
    assert row.record_id is not None


async def test_an_ended_call_is_linked_at_its_start_even_after_the_window(
    client: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    auth: dict[str, str],
    dynamic_label: uuid.UUID,
    phone: dict[str, str],
    now: datetime,
) -> None:
    # The window closed 30 minutes ago; the call started inside it and ended 10 minutes ago after 30 minutes.
    await send_record(client, tenant, auth, dynamic_label, now - timedelta(hours=2), now - timedelta(minutes=30))
    response = await post(
        client,
        phone,
        signal("e1", "ended", now - timedelta(minutes=10), durationSeconds=1800),
        signal("e2", "answered", now - timedelta(minutes=10)),  # at that instant nothing was shown
    )
    assert response.json() == {"accepted": ["e1"], "duplicates": [], "ignored": ["e2"]}
    [row] = await figures(db)
    assert counts(row) == {"ended": 1, "talk_seconds": 1800}


async def test_the_figures_day_is_the_accounts_day(
    client: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    auth: dict[str, str],
    phone: dict[str, str],
    dynamic_label: uuid.UUID,
    now: datetime,
) -> None:
    # 20:00 UTC is already the next day in Kolkata (+05:30), and still the same day in New York (-05:00/-04:00).
    evening = now.replace(hour=20, minute=0, second=0)
    if evening > now:
        evening -= timedelta(days=1)
    await send_record(
        client, tenant, auth, dynamic_label, evening - timedelta(minutes=5), evening + timedelta(minutes=5)
    )
    response = await post(client, phone, signal("k1", "displayed", evening))
    assert response.json()["accepted"] == ["k1"]
    async with db.transaction() as session:
        await session.execute(
            update(ClientAccount).where(ClientAccount.id == tenant.account_id).values(timezone="America/New_York")
        )
    response = await post(client, phone, signal("n1", "displayed", evening))
    assert response.json()["accepted"] == ["n1"]
    assert [(row.day, row.shown) for row in await figures(db)] == [
        (evening.date(), 1),
        (evening.date() + timedelta(days=1), 1),
    ]


# --- duplicates -----------------------------------------------------------------------------------------------


async def test_a_repeated_event_id_is_counted_once(
    client: httpx.AsyncClient, db: Database, phone: dict[str, str], record: uuid.UUID, now: datetime
) -> None:
    first = signal("d1", "displayed", now)
    response = await post(client, phone, first, first, signal("d2", "answered", now), first)
    assert response.json() == {"accepted": ["d1", "d2"], "duplicates": ["d1", "d1"], "ignored": []}
    # Sent again (an answer was lost), with one new signal; the same id with other content is still a duplicate.
    ended = signal("d3", "ended", now, durationSeconds=12)
    response = await post(client, phone, first, signal("d2", "missed", now), ended)
    assert response.json() == {"accepted": ["d3"], "duplicates": ["d1", "d2"], "ignored": []}
    assert len(await stored(db)) == 3
    [row] = await figures(db)
    assert counts(row) == {"shown": 1, "answered": 1, "ended": 1, "talk_seconds": 12}


async def test_a_resent_id_stays_a_duplicate_after_its_record_is_gone(
    client: httpx.AsyncClient, db: Database, phone: dict[str, str], record: uuid.UUID, now: datetime
) -> None:
    assert (await post(client, phone, signal("kept", "displayed", now))).json()["accepted"] == ["kept"]
    async with db.transaction() as session:
        await session.execute(delete(CallRecord))  # retention took the record
    response = await post(client, phone, signal("kept", "displayed", now), signal("later", "displayed", now))
    assert response.json() == {"accepted": [], "duplicates": ["kept"], "ignored": ["later"]}


async def test_concurrent_duplicates_are_counted_once(
    client: httpx.AsyncClient, db: Database, phone: dict[str, str], record: uuid.UUID, now: datetime
) -> None:
    batch = [signal(f"x{i}", "displayed", now - timedelta(seconds=i)) for i in range(10)]
    answers = await asyncio.gather(*(post(client, phone, *batch) for _ in range(4)))
    assert all(answer.status_code == 200 for answer in answers)
    accepted = [event for answer in answers for event in answer.json()["accepted"]]
    assert sorted(accepted) == sorted(item["eventId"] for item in batch)
    assert sum(len(answer.json()["duplicates"]) for answer in answers) == 30
    [row] = await figures(db)
    assert row.shown == 10


async def test_the_same_event_id_from_another_phone_is_another_signal(
    client: httpx.AsyncClient, db: Database, phone: dict[str, str], record: uuid.UUID, now: datetime
) -> None:
    await post(client, phone, signal("same", "displayed", now))
    other = await register_phone(client, "919234567800")
    response = await post(client, other, signal("same", "displayed", now))
    # The other phone has no record of its own with CALLER: ignored, not a duplicate of the first phone's.
    assert response.json() == {"accepted": [], "duplicates": [], "ignored": ["same"]}


# --- validation -----------------------------------------------------------------------------------------------


async def test_each_invalid_field_is_named_and_nothing_is_written(
    client: httpx.AsyncClient, db: Database, phone: dict[str, str], record: uuid.UUID, now: datetime
) -> None:
    good = signal("ok", "displayed", now)
    cases: list[tuple[Any, str]] = [
        ({}, "signals is required"),
        ({"signals": []}, "signals must be a list of 1 to 50 signals"),
        ({"signals": {"eventId": "x"}}, "signals must be a list of 1 to 50 signals"),
        ({"signals": [good] * 51}, "signals must be a list of 1 to 50 signals"),
        ({"signals": [good, "x"]}, "signals[1] must be an object"),
    ]
    bad_fields: list[tuple[dict[str, Any], str]] = [
        ({"eventId": None}, "signals[1].eventId is required"),
        ({"eventId": ""}, "signals[1].eventId must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -"),
        ({"eventId": "x" * 65}, "signals[1].eventId must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -"),
        ({"eventId": "a b"}, "signals[1].eventId must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -"),
        ({"eventId": 12}, "signals[1].eventId must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -"),
        ({"kind": "hung_up"}, "signals[1].kind must be one of displayed, answered, missed, rejected, ended"),
        ({"kind": None}, "signals[1].kind is required"),
        ({"caller": "12ab"}, "signals[1].caller is invalid"),
        ({"caller": 911234567898}, "signals[1].caller is invalid"),
        ({"caller": None}, "signals[1].caller is required"),
        ({"occurredAt": None}, "signals[1].occurredAt is required"),
        ({"occurredAt": "yesterday"}, "signals[1].occurredAt must be an ISO-8601 date and time with its offset"),
        (
            {"occurredAt": now.replace(tzinfo=None).isoformat()},
            "signals[1].occurredAt must be an ISO-8601 date and time with its offset",
        ),
        ({"occurredAt": 1700000000}, "signals[1].occurredAt must be an ISO-8601 date and time with its offset"),
        (
            {"occurredAt": "9999-12-31T23:59:59-05:00"},
            "signals[1].occurredAt must be an ISO-8601 date and time with its offset",
        ),
        (
            {"occurredAt": "0001-01-01T00:00:00+05:00"},
            "signals[1].occurredAt must be an ISO-8601 date and time with its offset",
        ),
        ({"occurredAt": iso(now + timedelta(seconds=301))}, "signals[1].occurredAt is in the future"),
        ({"occurredAt": iso(now - timedelta(days=7, seconds=1))}, "signals[1].occurredAt is older than 7 days"),
        ({"kind": "ended"}, "signals[1].durationSeconds is required for an ended signal"),
        (
            {"kind": "ended", "durationSeconds": 86_401},
            "signals[1].durationSeconds must be a whole number of seconds from 0 to 86400",
        ),
        (
            {"kind": "ended", "durationSeconds": -1},
            "signals[1].durationSeconds must be a whole number of seconds from 0 to 86400",
        ),
        (
            {"kind": "ended", "durationSeconds": 1.5},
            "signals[1].durationSeconds must be a whole number of seconds from 0 to 86400",
        ),
        (
            {"kind": "ended", "durationSeconds": True},
            "signals[1].durationSeconds must be a whole number of seconds from 0 to 86400",
        ),
        (
            {"kind": "ended", "durationSeconds": "60"},
            "signals[1].durationSeconds must be a whole number of seconds from 0 to 86400",
        ),
        ({"durationSeconds": 5}, "signals[1].durationSeconds is only for an ended signal"),
    ]
    for change, message in bad_fields:
        cases.append(({"signals": [good, {**signal("bad", "answered", now), **change}]}, message))
    for body, message in cases:
        response = await client.post(PATH, json=body, headers=phone)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["slug"] == "invalid-input"
        assert response.json()["message"].startswith(message), (body, response.json())
    response = await client.post(PATH, content=b"[1]", headers={**phone, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert await stored(db) == []
    assert [counts(row) for row in await figures(db)] in ([], [{}])  # the record's own figures only


async def test_times_at_the_edges_are_accepted(
    client: httpx.AsyncClient, db: Database, phone: dict[str, str], dynamic_label: uuid.UUID, now: datetime
) -> None:
    # No record: linked or not, the times pass validation (ignored callers still prove the request was taken).
    response = await post(
        client,
        phone,
        signal("ahead", "displayed", now + timedelta(seconds=300)),
        {**signal("old", "displayed", now), "occurredAt": (now - timedelta(days=7)).astimezone(UTC).isoformat()},
        {**signal("offset", "displayed", now), "occurredAt": now.strftime("%Y-%m-%dT%H:%M:%SZ")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["ignored"] == ["ahead", "old", "offset"]


async def test_a_phone_needs_its_token(client: httpx.AsyncClient, now: datetime) -> None:
    response = await client.post(PATH, json={"signals": [signal("a", "displayed", now)]})
    assert response.status_code == 401
    assert response.json()["slug"] == "authorization-error"


# --- rate limit ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"number_job_delay_seconds": 0, "signal_rate_limit": "5/minute"}])
async def test_a_phone_over_its_signal_limit_gets_429_and_nothing_is_stored(
    client: httpx.AsyncClient, db: Database, phone: dict[str, str], record: uuid.UUID, now: datetime
) -> None:
    response = await post(client, phone, *(signal(f"a{i}", "displayed", now) for i in range(3)))
    assert response.status_code == 200
    # The window is not full yet: this request is taken whole (6 signals counted in a window of 5).
    response = await post(client, phone, *(signal(f"b{i}", "displayed", now) for i in range(3)))
    assert response.status_code == 200
    response = await post(client, phone, signal("c0", "displayed", now))
    assert response.status_code == 429
    assert response.json() == {
        "slug": "rate-limit-exceeded",
        "message": f"too many call signals from this phone: try again in {response.headers['Retry-After']} seconds",
    }
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert [row.event_id for row in await stored(db)] == ["a0", "a1", "a2", "b0", "b1", "b2"]
    # Another phone has its own window.
    other = await register_phone(client, "919234567800")
    assert (await post(client, other, signal("c0", "displayed", now))).status_code == 200
    # A minute later the phone may send again; the refused request counted nothing.
    clock.freeze(now + timedelta(seconds=61))
    response = await post(client, phone, signal("c0", "displayed", now))
    assert response.status_code == 200
    assert response.json()["accepted"] == ["c0"]
    [row] = await figures(db)
    assert row.shown == 7


@requires_redis
@pytest.mark.parametrize("settings_overrides", [{"number_job_delay_seconds": 0, "signal_rate_limit": "3/minute"}])
async def test_the_limit_holds_across_processes_with_redis(
    db: Database,
    settings: Settings,
    runtime_with: Any,
    client: httpx.AsyncClient,
    phone: dict[str, str],
    record: uuid.UUID,
    now: datetime,
) -> None:
    shared = settings.model_copy(update={"redis_url": REDIS_URL})
    first: Runtime = runtime_with(shared)
    second: Runtime = runtime_with(shared)
    # The device is new (its id is in the limiter's key): nothing of another test's counts.
    async with db.session() as session:
        device = (await session.scalars(select(Device))).one()
    info = DeviceInfo(str(device.id), RECEIVER, "android", "2.0.0")

    def parsed(*event_ids: str) -> list[schemas.SignalIn]:
        body = {"signals": [signal(event_id, "displayed", now) for event_id in event_ids]}
        return schemas.parse_call_signals(body, 50)

    assert (await signals.record_signals(first, info, parsed("p1", "p2", "p3"))).accepted == ["p1", "p2", "p3"]
    with pytest.raises(LimitExceeded) as refused:
        await signals.record_signals(second, info, parsed("p4"))
    assert 1 <= refused.value.retry_after <= 60
    assert [row.event_id for row in await stored(db)] == ["p1", "p2", "p3"]


# --- retention ----------------------------------------------------------------------------------------------


async def test_old_signals_are_purged_and_their_figures_stay(
    client: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    settings: Settings,
    phone: dict[str, str],
    record: uuid.UUID,
    now: datetime,
) -> None:
    await post(client, phone, signal("old", "displayed", now))
    later = now + timedelta(days=settings.signal_retention_days - 1)
    clock.freeze(later)
    auth = {"Authorization": f"Bearer {await mint(client, tenant)}"}
    await send_record(client, tenant, auth, record, later - timedelta(minutes=5), later + timedelta(minutes=5))
    assert (await post(client, phone, signal("new", "displayed", later))).json()["accepted"] == ["new"]
    run = await purge(db, settings, signals.SIGNAL_PURGES, now=now + timedelta(days=settings.signal_retention_days + 1))
    assert run.deleted == {"call_signals": 1}
    assert [row.event_id for row in await stored(db)] == ["new"]
    assert sum(row.shown for row in await figures(db)) == 2


async def test_signals_are_kept_while_they_could_be_resent(db: Database, settings: Settings, now: datetime) -> None:
    short = settings.model_copy(update={"signal_retention_days": 1})
    cutoff = signals.SIGNAL_PURGES[0].cutoffs(short, now)["received_before"]
    assert cutoff == now - timedelta(days=settings.signal_max_age_days + 1)
