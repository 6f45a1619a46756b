"""Issue 13 point 3: the daily figures are exact. After thousands of mixed facts (R2 records and B1/B2 batches of
several labels, numbers and outcomes; Call Me Back requests; survey responses with ratings; webhook deliveries that
succeed, fail and are sent again; call signals and blocked attempts) the figures equal a recount of the raw data, on
SQLite and PostgreSQL, after a restart, with two runtimes writing at once, and after the raw data is purged.
Time is moved with ``callerid.clock``, never slept."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from callerid import clock
from callerid.analytics import deltas
from callerid.analytics import recount as recounting
from callerid.analytics.blocked import BLOCKED_PURGES
from callerid.analytics.models import COUNTERS, DailyFigures, DailyWebhookDelays
from callerid.analytics.signals import SIGNAL_PURGES
from callerid.analytics.tally import day_in
from callerid.config import Settings
from callerid.db import Database
from callerid.engagement.jobs import ENGAGEMENT_PURGES
from callerid.engagement.models import CmbRequest, SurveyResponse
from callerid.jobs.purge import purge
from callerid.jobs.runner import JobRunner
from callerid.personalisation import service as personalisation
from callerid.personalisation.jobs import RECORD_PURGES
from callerid.personalisation.models import CallBatch, CallRecord
from callerid.runtime import Runtime
from callerid.webhooks.events import LOG_PURGES, resend_event
from callerid.webhooks.models import FAILED, SUCCESS, WebhookEvent
from tests.analytics.world import (
    CALLERS,
    HOUR_MS,
    LISTED_CMB,
    LISTED_OTHER,
    UNLISTED,
    WORLD_SETTINGS,
    World,
    assert_figures_equal_recount,
    batch_traffic,
    metric,
    mixed_traffic,
    r2_traffic,
    signal_traffic,
    totals,
)
from tests.cli.conftest import Cli
from tests.cli.test_mail_outbox import cli_on
from tests.conftest import Tenant


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(WORLD_SETTINGS)


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
async def test_two_runtimes_writing_and_folding_at_once_on_postgresql(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runtime: Runtime,
    runner: JobRunner,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = await Runtime.open(settings, run_jobs=False)
    two = await Runtime.open(settings, run_jobs=False)
    monkeypatch.setattr(deltas, "FOLD_CHUNK_ROWS", 5)  # folds in many small chunks, taken while R2 appends more

    async def r2_then_stop(runtime_: Runtime, seed: int) -> None:
        try:
            await r2_traffic(runtime_, world, 600, seed=seed)
        finally:
            writing.discard(seed)

    async def fold_while_writing(runtime_: Runtime) -> None:
        while writing:
            await deltas.fold(runtime_.db)
            await asyncio.sleep(0)

    writing = {5, 6}
    try:
        batches = await batch_traffic(one, world, 6, 100, seed=4)
        await asyncio.gather(
            r2_then_stop(one, 5),
            r2_then_stop(two, 6),
            # Both processes fold at once, as their periodic jobs and readers do: each delta is added once.
            fold_while_writing(one),
            fold_while_writing(two),
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
async def test_an_r2_group_and_its_counts_are_one_statement_on_postgresql(db: Database, world: World) -> None:
    """The R2 group commit stays one statement with its counts (a plain insert of deltas, the statement's last part;
    no upsert)."""
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
    steps = _realtime_group(records)
    combined = one_statement(db.reader.raw, steps)  # type: ignore[union-attr]
    assert combined is not None and combined[0].startswith("WITH s0 AS (INSERT INTO call_batches")
    assert "INSERT INTO figure_deltas" in combined[0] and "ON CONFLICT" not in combined[0]
    await db.write(steps, together=True)
    await db.write(_realtime_group(records[:1]), together=True)  # one record
    invalid = refused(now_ms, "caller_number", "caller_number is invalid", {})  # not counted
    # Step by step in one transaction (an R2 with an Idempotency-Key: its answer is stored in the same write).
    await db.write(_realtime_group([*records[:5], invalid]))
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
