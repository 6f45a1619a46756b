"""A world for the figures tests (issue 13): one account with labels, listed numbers in two feature sets, a survey,
phones and webhooks; traffic of every counted kind; and the check that the stored figures equal a recount."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import insert, select

from callerid import clock
from callerid.analytics import recount as recounting
from callerid.analytics.models import BlockedAttempt, CallSignal
from callerid.analytics.tally import FiguresKey, Tally, day_in
from callerid.config import Settings
from callerid.db import Database
from callerid.db.write import Step
from callerid.delivery.models import Device
from callerid.engagement import service as engagement
from callerid.engagement.questions import Question
from callerid.jobs.runner import JobRunner
from callerid.personalisation import service as personalisation
from callerid.runtime import Runtime
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


WORLD_SETTINGS = {
    # List jobs due at once, webhooks to loopback, one retry a second after a failure, old app versions refused.
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
