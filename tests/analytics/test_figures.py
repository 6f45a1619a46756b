"""Issue 13 point 3: the daily figures are exact. After thousands of mixed facts (R2 records and B1/B2 batches of
several labels, numbers and outcomes; Call Me Back requests; survey responses with ratings; webhook deliveries that
succeed, fail and are sent again; call signals and blocked attempts) the figures equal a recount of the raw data, on
SQLite and PostgreSQL, after a restart, with two runtimes writing at once, and after the raw data is purged.
Time is moved with ``callerid.clock``, never slept."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, insert, select, update

from callerid import clock
from callerid.analytics import recount as recounting
from callerid.analytics.blocked import BLOCKED_PURGES
from callerid.analytics.models import COUNTERS, BlockedAttempt, CallSignal, DailyFigures, DailyWebhookDelays
from callerid.analytics.signals import SIGNAL_PURGES
from callerid.analytics.tally import FiguresKey, Tally, day_in
from callerid.config import Settings
from callerid.db import Database
from callerid.db.write import Step
from callerid.delivery.models import Device
from callerid.engagement import service as engagement
from callerid.engagement.jobs import ENGAGEMENT_PURGES
from callerid.engagement.models import CmbRequest, SurveyResponse
from callerid.engagement.questions import Question
from callerid.jobs.purge import purge
from callerid.jobs.runner import JobRunner
from callerid.personalisation import service as personalisation
from callerid.personalisation.jobs import RECORD_PURGES
from callerid.personalisation.models import CallBatch, CallRecord
from callerid.runtime import Runtime
from callerid.webhooks.events import LOG_PURGES, resend_event
from callerid.webhooks.models import FAILED, SUCCESS, WebhookEvent
from tests.cli.conftest import Cli
from tests.cli.test_mail_outbox import cli_on
from tests.conftest import Tenant
from tests.engagement.conftest import Org, make_feature_set, make_org, publish, register_phone, subscribe
from tests.personalisation.conftest import add_label
from tests.webhooks.receiver import Receiver

LISTED_CMB = "910987654321"  # listed in the feature set with Call Me Back and a survey
LISTED_OTHER = "910987654322"  # listed in a second feature set
UNLISTED = "910987654399"  # a caller with no listing: NO_ID feature set
CALLERS = (LISTED_CMB, LISTED_OTHER, UNLISTED)
APP_USERS = {  # receivers with the app: one of each delivery outcome but not_app_user / failed_to_push
    "919800000001": ("android", "2.0.0"),  # delivered
    "919800000002": ("ios", "2.0.0"),  # os_not_supported
    "919800000003": ("android", "0.0.1"),  # app_version_not_supported
}
HOUR_MS = 3_600_000
KIND_COUNTER = {"displayed": "shown", "answered": "answered", "missed": "missed", "rejected": "rejected"}
KIND_COUNTER["ended"] = "ended"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # List jobs due at once, webhooks to loopback, one retry a second after a failure, old app versions refused.
    return {
        "number_job_delay_seconds": 0,
        "webhook_allow_private": True,
        "webhook_retry_schedule": "1s",
        "min_app_version": "1.0.0",
    }


@dataclass
class World:
    """One account set up for traffic: labels, listed numbers in two feature sets, a survey, phones, webhooks."""

    tenant: Tenant
    org: Org
    timezone: str
    labels: list[uuid.UUID]
    feature_sets: list[uuid.UUID]
    survey_id: str
    phones: list[dict[str, str]]
    device_ids: list[uuid.UUID]
    connected: str  # the device whose push stream is open during the traffic (its records are delivered)
    good: Receiver
    bad: Receiver
    batches: list[uuid.UUID] = field(default_factory=list)


async def make_world(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    good: Receiver,
    bad: Receiver,
    timezone: str = "America/New_York",
) -> World:
    org = await make_org(db, tenant.account_id, timezone=timezone)
    labels = [(await add_label(db, settings, tenant.account_id, name)).id for name in ("Flowers", "Bouquets", "Vases")]
    cmb_set = await make_feature_set(db, org, "Deliveries", call_me_back=True, survey=True)
    other_set = await make_feature_set(db, org, "Returns")
    await publish(client, runner, tenant.account_id, auth, cmb_set, LISTED_CMB)
    await publish(client, runner, tenant.account_id, auth, other_set, LISTED_OTHER)
    async with db.transaction() as session:
        survey = await engagement.create_survey(
            session,
            account_id=tenant.account_id,
            feature_set_id=cmb_set,
            name="After the call",
            questions=[Question("How was it?", "rating"), Question("Anything else?")],
        )
    phones = []
    for number, (platform, version) in APP_USERS.items():
        response = await client.post(
            "/app/v1/devices", json={"phone_number": number, "platform": platform, "app_version": version}
        )
        assert response.status_code == 201, response.text
        phones.append({"Authorization": f"Bearer {response.json()['device_token']}"})
    for index in range(6):  # more phones for engagement (per-device limits)
        phones.append(await register_phone(client, f"91980000010{index}"))
    async with db.session() as session:
        device_ids = list((await session.scalars(select(Device.id))).all())
        connected = await session.scalar(select(Device.id).where(Device.phone_number == next(iter(APP_USERS))))
    await subscribe(db, settings, tenant.account_id, good.url, name="Good", events="cmb,user_feedback")
    await subscribe(db, settings, tenant.account_id, bad.url, name="Bad", events="cmb,user_feedback")
    feature_sets = [cmb_set, other_set]
    return World(
        tenant, org, timezone, labels, feature_sets, str(survey.id), phones, device_ids, str(connected), good, bad
    )


def r2_record(rng: random.Random, world: World, now_ms: int, *, invalid: bool = False) -> dict[str, Any]:
    receivers = [*APP_USERS, *(f"9170000{n:05d}" for n in range(20))]
    record = {
        "label_id": str(rng.choice(world.labels)),
        "caller_number": rng.choice(CALLERS),
        "receiver_number": rng.choice(receivers),
        "starts_at": now_ms,
        "ends_at": now_ms + HOUR_MS,
    }
    if invalid:
        record["ends_at"] = now_ms - HOUR_MS  # refused: not a delivery outcome, not counted
    return record


async def r2_traffic(runtime: Runtime, world: World, count: int, seed: int) -> None:
    """``count`` R2 requests, 200 at a time (so that they share group commits), a few invalid."""
    rng = random.Random(seed)
    now_ms = personalisation.epoch_ms(clock.now())
    records = [r2_record(rng, world, now_ms, invalid=rng.random() < 0.05) for _ in range(count)]
    for start in range(0, count, 200):
        await asyncio.gather(
            *(
                personalisation.submit_realtime_v2(runtime, world.tenant.account_id, record)
                for record in records[start : start + 200]
            )
        )


async def batch_traffic(runtime: Runtime, world: World, batches: int, size: int, seed: int) -> list[uuid.UUID]:
    """B2 batches (a few invalid records each) and v1 batches (one rejected), not yet delivered."""
    rng = random.Random(seed)
    now_ms = personalisation.epoch_ms(clock.now())
    ids = []
    for _ in range(batches):
        records = [r2_record(rng, world, now_ms, invalid=rng.random() < 0.05) for _ in range(size)]
        ids.append(await personalisation.submit_v2_batch(runtime.db, world.tenant.account_id, records))
    v1 = {
        "label_id": str(world.labels[0]),
        "caller": LISTED_OTHER,
        "receiver": "919800000001",
        "starts_at": now_ms,
        "ends_at": now_ms + HOUR_MS,
    }
    ids.append((await personalisation.submit_v1(runtime.db, world.tenant.account_id, [v1, v1])).batch_id)
    rejected = await personalisation.submit_v1(runtime.db, world.tenant.account_id, [v1, {**v1, "caller": "12"}])
    assert rejected.error is not None
    return ids


async def engagement_traffic(client: httpx.AsyncClient, world: World, requests: int, seed: int) -> None:
    rng = random.Random(seed)
    for index in range(requests):
        phone = world.phones[index % len(world.phones)]
        cmb = await client.post(
            "/app/v1/call-me-back",
            json={"business_number": LISTED_CMB, "is_interested": False, "alternate_number": None},
            headers=phone,
        )
        assert cmb.status_code == 201, cmb.text
        answers = [{"question": "Anything else?", "response": "No"}]
        if rng.random() < 0.7:
            answers.append({"question": "How was it?", "response": str(rng.randint(1, 5))})
        answered = await client.post(
            f"/app/v1/surveys/{world.survey_id}/responses",
            json={"business_number": LISTED_CMB, "answers": answers},
            headers=phone,
        )
        assert answered.status_code == 201, answered.text


async def deliver_webhooks(runner: JobRunner) -> None:
    """First attempts, then (a second later) the one retry: the bad receiver's events end failed."""
    await runner.run_until_idle()
    clock.advance(timedelta(seconds=2))
    await runner.run_until_idle()


async def signal_traffic(db: Database, world: World, count: int, seed: int) -> None:
    """Call signals and blocked attempts as their writers store them: the raw rows and their tally in one write."""
    rng = random.Random(seed)
    now = clock.now()
    tally = Tally()
    signals, blocked = [], []
    for index in range(count):
        caller = int(rng.choice(CALLERS))
        feature_set = {int(LISTED_CMB): world.feature_sets[0], int(LISTED_OTHER): world.feature_sets[1]}.get(caller)
        label = rng.choice(world.labels)
        occurred = now - timedelta(minutes=rng.randint(0, 600))
        kind = rng.choice(list(KIND_COUNTER))
        duration = rng.randint(0, 900) if kind == "ended" else None
        signals.append(
            {
                "device_id": rng.choice(world.device_ids),
                "event_id": f"e-{seed}-{index}",
                "account_id": world.tenant.account_id,
                "kind": kind,
                "business_number": caller,
                "label_id": label,
                "feature_set_id": feature_set or uuid.UUID(int=0),
                "record_id": None,
                "duration_seconds": duration,
                "occurred_at": occurred,
                "received_at": now,
            }
        )
        key = FiguresKey(
            world.tenant.account_id,
            day_in(world.timezone, occurred),
            label,
            feature_set or uuid.UUID(int=0),
            caller,
        )
        tally.add(key, KIND_COUNTER[kind])
        if duration is not None:
            tally.add(key, "talk_seconds", duration)
        if index % 6 == 0:
            blocked.append(
                {
                    "id": uuid.uuid4(),
                    "account_id": world.tenant.account_id,
                    "feature_set_id": world.feature_sets[0],
                    "label_id": label,
                    "business_number": int(LISTED_CMB),
                    "at": occurred,
                }
            )
            tally.add(
                FiguresKey(
                    world.tenant.account_id,
                    day_in(world.timezone, occurred),
                    label,
                    world.feature_sets[0],
                    int(LISTED_CMB),
                ),
                "blocked",
            )
    await db.write(
        [
            Step(insert(CallSignal.__table__), rows=signals),
            Step(insert(BlockedAttempt.__table__), rows=blocked),
            *tally.steps(db),
        ]
    )


async def mixed_traffic(
    client: httpx.AsyncClient, runtime: Runtime, runner: JobRunner, world: World, *, seed: int, scale: int = 1
) -> None:
    """Thousands of facts of every kind, the batches delivered, one failed to push, webhooks to their end."""
    async with runtime.hub.attach(world.connected):
        batches = await batch_traffic(runtime, world, 4 * scale, 150, seed)
        await personalisation.fail_pending(runtime.db, runtime.settings, batches[0])  # failed_to_push, not again
        await r2_traffic(runtime, world, 1000 * scale, seed)
        await engagement_traffic(client, world, 8, seed)
        await signal_traffic(runtime.db, world, 300 * scale, seed)
        await deliver_webhooks(runner)
    world.batches += batches


async def assert_figures_equal_recount(db: Database, world: World, *, around: date | None = None) -> dict[Any, Any]:
    today = around or day_in(world.timezone, clock.now())
    start, end = today - timedelta(days=3), today + timedelta(days=3)
    expected = await recounting.recount_all(db, world.tenant.account_id, start, end)
    found = await recounting.stored_all(db, world.tenant.account_id, start, end)
    assert recounting.differences(expected, found) == []
    assert found[0] == await recounting.recount(db, world.tenant.account_id, start, end)
    return found[0]


def totals(figures: dict[Any, dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for counts in figures.values():
        for name, value in counts.items():
            out[name] = out.get(name, 0) + value
    return out


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def good() -> Any:
    server = await Receiver().start()
    yield server
    await server.stop()


@pytest.fixture
async def bad() -> Any:
    server = await Receiver(status=500).start()
    yield server
    await server.stop()


@pytest.fixture
async def world(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    good: Receiver,
    bad: Receiver,
) -> World:
    built = await make_world(client, db, settings, runner, tenant, auth, good, bad)
    clock.freeze(clock.now())
    return built


async def test_figures_equal_a_recount_after_thousands_of_mixed_facts(
    client: httpx.AsyncClient, db: Database, runtime: Runtime, runner: JobRunner, world: World
) -> None:
    before = {
        "records": metric("callerid_call_records_total", outcome="not_app_user"),
        "cmb": metric("callerid_call_me_back_requests_total"),
        "surveys": metric("callerid_survey_responses_total"),
        "failed": metric("callerid_webhook_deliveries_total", result="failed"),
    }
    await mixed_traffic(client, runtime, runner, world, seed=1)
    # A failed event sent again (now answered), and a delivered one sent again (failing now): each counts once,
    # in its new final state.
    async with runtime.db.session() as session:
        failed = (await session.scalars(select(WebhookEvent).where(WebhookEvent.state == FAILED))).first()
        succeeded = (await session.scalars(select(WebhookEvent).where(WebhookEvent.state == SUCCESS))).first()
    assert failed is not None and succeeded is not None
    world.bad.status = 200
    world.good.status = 500
    for event in (failed, succeeded):
        async with db.transaction() as session:
            await resend_event(session, account_id=world.tenant.account_id, event_id=event.id)
        clock.advance(timedelta(seconds=1))
        await runner.run_until_idle()

    figures = await assert_figures_equal_recount(db, world)
    summed = totals(figures)
    # Every kind of fact was counted, and every outcome.
    for name in COUNTERS:
        assert summed.get(name, 0) > 0, name
    assert summed["call_me_back_requests"] == 8 and summed["survey_responses"] == 8
    assert summed["webhooks_succeeded"] + summed["webhooks_failed"] == 32  # 16 events x 2 webhooks
    # Records: as many as the valid ones stored, each once (B2 pending ones: none left).
    async with db.session() as session:
        valid = await session.scalar(select(func.count()).select_from(CallRecord).where(CallRecord.caller.is_not(None)))
        delays = await session.scalar(select(func.sum(DailyWebhookDelays.count)))
    recorded = sum(summed.get(name, 0) for name in COUNTERS if name.startswith("records_"))
    assert recorded == valid  # every usable record once (a rejected v1 batch's are stored as refused: not counted)
    assert delays == summed["webhooks_succeeded"]
    # The feature set of the caller's listing is filled (owners' subtree filter), NO_ID for the unlisted caller.
    by_number = {(key.business_number, key.feature_set_id) for key in figures if key.label_id in world.labels}
    assert (int(LISTED_CMB), world.feature_sets[0]) in by_number
    assert (int(LISTED_OTHER), world.feature_sets[1]) in by_number
    assert (int(UNLISTED), uuid.UUID(int=0)) in by_number
    # Prometheus: counted after the writes, by outcome.
    assert metric("callerid_call_records_total", outcome="not_app_user") > before["records"]
    assert metric("callerid_call_me_back_requests_total") == before["cmb"] + 8
    assert metric("callerid_survey_responses_total") == before["surveys"] + 8
    assert metric("callerid_webhook_deliveries_total", result="failed") > before["failed"]


async def test_figures_hold_after_a_restart(
    client: httpx.AsyncClient, db: Database, settings: Settings, runtime: Runtime, runner: JobRunner, world: World
) -> None:
    await mixed_traffic(client, runtime, runner, world, seed=2)
    # Another process on the same database (a restart): it counts on top, from its own caches.
    reopened = await Runtime.open(settings, run_jobs=False)
    try:
        await r2_traffic(reopened, world, 300, seed=3)
        batches = await batch_traffic(reopened, world, 2, 100, seed=3)
        for batch_id in batches:
            await personalisation.deliver_batch(reopened, batch_id)
    finally:
        await reopened.close()
    await runner.run_until_idle()
    third = await Runtime.open(settings, run_jobs=False)
    try:
        await assert_figures_equal_recount(third.db, world)
    finally:
        await third.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_runtimes_writing_at_once_on_postgresql(
    client: httpx.AsyncClient, db: Database, settings: Settings, runtime: Runtime, runner: JobRunner, world: World
) -> None:
    one = await Runtime.open(settings, run_jobs=False)
    two = await Runtime.open(settings, run_jobs=False)
    try:
        batches = await batch_traffic(one, world, 6, 100, seed=4)
        await asyncio.gather(
            r2_traffic(one, world, 600, seed=5),
            r2_traffic(two, world, 600, seed=6),
            # Both deliver every batch at once: each batch's outcomes (and counts) are written once.
            *(personalisation.deliver_batch(runtime_, batch_id) for batch_id in batches for runtime_ in (one, two)),
            signal_traffic(two.db, world, 200, seed=7),
        )
    finally:
        await one.close()
        await two.close()
    await runner.run_until_idle()
    await assert_figures_equal_recount(db, world)


async def test_figures_stay_after_the_raw_data_is_purged(
    client: httpx.AsyncClient, db: Database, settings: Settings, runtime: Runtime, runner: JobRunner, world: World
) -> None:
    await mixed_traffic(client, runtime, runner, world, seed=8)
    kept = await assert_figures_equal_recount(db, world)
    today = day_in(world.timezone, clock.now())

    clock.advance(timedelta(days=400))
    for purges in (RECORD_PURGES, ENGAGEMENT_PURGES, LOG_PURGES, SIGNAL_PURGES, BLOCKED_PURGES):
        await purge(db, settings, purges)
    async with db.session() as session:
        for table in (CallRecord, CallBatch, CmbRequest, SurveyResponse, WebhookEvent):
            assert await session.scalar(select(func.count()).select_from(table)) == 0, table
        columns = set(DailyFigures.__table__.c.keys())
        numbers = set((await session.scalars(select(DailyFigures.business_number).distinct())).all())
    # The figures are all still there; they hold no receiver's number (no such column, only callers' numbers).
    start, end = today - timedelta(days=3), today + timedelta(days=3)
    assert await recounting.stored(db, world.tenant.account_id, start, end) == kept
    assert await recounting.recount(db, world.tenant.account_id, start, end) == {}
    assert not {name for name in columns if "receiver" in name or "client" in name}
    assert numbers <= {0, *(int(number) for number in CALLERS)}
    # Those days can no longer be rebuilt from raw data: refused, the figures untouched.
    with pytest.raises(ValueError, match="may have been purged"):
        await recounting.rebuild(db, settings, world.tenant.account_id, start, end, clock.now())
    assert await recounting.stored(db, world.tenant.account_id, start, end) == kept


async def test_days_follow_the_account_timezone(db: Database, runtime: Runtime, world: World) -> None:
    # 23:59:30 in New York is 04:59:30 the next day in UTC: the figures' day is New York's.
    evening = datetime(2031, 1, 14, 23, 59, 30, tzinfo=UTC) + timedelta(hours=5)
    clock.freeze(evening)
    await r2_traffic(runtime, world, 40, seed=9)
    clock.freeze(evening + timedelta(minutes=1))  # 00:00:30 on the 15th in New York
    await r2_traffic(runtime, world, 60, seed=10)
    figures = await assert_figures_equal_recount(db, world, around=date(2031, 1, 14))
    by_day: dict[date, int] = {}
    for key, counts in figures.items():
        by_day[key.day] = by_day.get(key.day, 0) + sum(v for k, v in counts.items() if k.startswith("records_"))
    assert set(by_day) == {date(2031, 1, 14), date(2031, 1, 15)}
    assert by_day[date(2031, 1, 14)] <= 40 and by_day[date(2031, 1, 15)] <= 60
    assert by_day[date(2031, 1, 14)] + by_day[date(2031, 1, 15)] > 80  # a few invalid ones are not counted


async def test_cli_verify_and_rebuild(
    db: Database, settings: Settings, runtime: Runtime, world: World, tmp_path: Path
) -> None:
    await r2_traffic(runtime, world, 100, seed=11)
    today = day_in(world.timezone, clock.now())
    cli = cli_on(Cli(tmp_path, {}), settings.database_url, settings)
    account = ["--account", str(world.tenant.account_id)]
    days = ["--from", (today - timedelta(days=1)).isoformat(), "--to", (today + timedelta(days=1)).isoformat()]
    checked = (await cli.arun("analytics", "verify", *account, *days, "--json")).json()
    assert checked["differences"] == [] and checked["keys_checked"] > 0
    # Figures that no longer match the raw data (as if stored before analytics existed): verify says where, exit 1.
    async with db.transaction() as session:
        await session.execute(update(DailyFigures).values(records_not_app_user=DailyFigures.records_not_app_user + 7))
    differing = await cli.arun("analytics", "verify", *account, *days, "--json")
    assert differing.returncode == 1
    rows = json.loads(differing.stdout)["differences"]
    assert rows and all(
        row["stored"]["records_not_app_user"] == row["recounted"].get("records_not_app_user", 0) + 7 for row in rows
    )
    rebuilt = (await cli.arun("analytics", "rebuild", *account, *days, "--json")).json()
    assert rebuilt["keys"] == len(rows)
    await assert_figures_equal_recount(db, world)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_r2_group_and_its_figures_are_one_statement_on_postgresql(db: Database, world: World) -> None:
    """The R2 group commit stays one statement with its figures (the upsert is the statement's last part)."""
    from callerid.db.writers import one_statement
    from callerid.personalisation.models import DELIVERED_STATE, OUTCOME_STATES
    from callerid.personalisation.storing import NewRecord, _realtime_group, refused

    now_ms = personalisation.epoch_ms(clock.now())
    records = [
        NewRecord(
            state=DELIVERED_STATE if index % 2 else OUTCOME_STATES["not_app_user"],
            ends_at=now_ms + HOUR_MS,
            caller=int(CALLERS[index % 3]),
            receiver=919700000000 + index,
            starts_at=now_ms,
            text=(world.labels[index % 2], "Flowers", None),
            account_id=world.tenant.account_id,
            timezone=world.timezone,
        )
        for index in range(12)
    ]
    steps = _realtime_group(db, records)
    combined = one_statement(db.reader.raw, steps)  # type: ignore[union-attr]
    assert combined is not None and combined[0].startswith("WITH s0 AS (INSERT INTO call_batches")
    assert "INSERT INTO daily_figures" in combined[0] and "ON CONFLICT" in combined[0]
    await db.write(steps, together=True)
    await db.write(_realtime_group(db, records[:1]), together=True)  # one row: the plain upsert
    invalid = refused(now_ms, "caller_number", "caller_number is invalid", {})  # not counted
    # Step by step in one transaction (an R2 with an Idempotency-Key: its answer is stored in the same write).
    await db.write(_realtime_group(db, [*records[:5], invalid]))
    figures = await assert_figures_equal_recount(db, world)
    assert sum(sum(counts.values()) for counts in figures.values()) == 18


async def test_a_changed_account_timezone_is_used_once_the_cached_one_expires(
    db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callerid.accounts.models import ClientAccount
    from callerid.analytics import counting

    async with db.transaction() as session:
        await session.execute(
            update(ClientAccount).where(ClientAccount.id == tenant.account_id).values(timezone="Asia/Kolkata")
        )
    monkeypatch.setattr(counting, "_zones_read_at", 0.0)  # start from an expired cache
    assert await counting.account_timezone(db, tenant.account_id) == "Asia/Kolkata"
    async with db.transaction() as session:  # an admin changes it in the console
        await session.execute(
            update(ClientAccount).where(ClientAccount.id == tenant.account_id).values(timezone="America/New_York")
        )
    assert counting.known_timezone(tenant.account_id) == "Asia/Kolkata"  # within the TTL: the one read
    monkeypatch.setattr(counting, "_zones_read_at", counting._zones_read_at - counting.ZONE_TTL_SECONDS - 1)
    assert counting.known_timezone(tenant.account_id) is None
    assert await counting.account_timezone(db, tenant.account_id) == "America/New_York"
