"""R2's record counts are written as deltas and folded into the daily figures (``analytics.deltas``): every reader
sees them folded, the periodic job folds them, a fold in small chunks or two folds at once lose and double nothing,
a rebuild folds them first, and deltas of an account deleted meanwhile are dropped. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, insert, select

from callerid import clock
from callerid.analytics import deltas, queries
from callerid.analytics import recount as recounting
from callerid.analytics.models import FIGURE_DELTAS, RECORD_COUNTERS, DailyFigures
from callerid.analytics.tally import day_in
from callerid.config import FEATURES, Settings
from callerid.db import Database
from callerid.jobs.models import Job
from callerid.jobs.runner import JobRunner
from callerid.personalisation import service as personalisation
from callerid.runtime import Runtime
from tests.analytics.world import WORLD_SETTINGS, World, assert_figures_equal_recount, r2_traffic, totals
from tests.conftest import create_tenant, mint
from tests.personalisation.conftest import add_label, record_v2


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(WORLD_SETTINGS)


async def waiting(db: Database) -> int:
    """Delta rows not folded yet."""
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(FIGURE_DELTAS)) or 0)


async def records_in_figures(db: Database) -> int:
    async with db.session() as session:
        sums = (await session.execute(select(*(func.sum(DailyFigures.__table__.c[n]) for n in RECORD_COUNTERS)))).one()
    return sum(int(value or 0) for value in sums)


async def test_r2_counts_wait_as_deltas_until_a_reader_folds_them(db: Database, runtime: Runtime, world: World) -> None:
    await r2_traffic(runtime, world, 300, seed=21)
    # Stored with the records, not yet in the figures: R2 appended rows, it upserted nothing.
    assert await waiting(db) > 0
    assert await records_in_figures(db) == 0
    # The analytics API and the console read through ``queries``: they fold first, and see every record.
    today = day_in(world.timezone, clock.now())
    total = await queries.totals(db, queries.Scope(world.tenant.account_id, today, today))
    assert await waiting(db) == 0
    figures = await assert_figures_equal_recount(db, world)
    recorded = sum(total.counts[name] for name in RECORD_COUNTERS)
    summed = totals(figures)
    assert recorded == sum(summed.get(name, 0) for name in RECORD_COUNTERS)
    assert recorded > 250  # 300 requests, about 5 % of them invalid (not counted)
    assert await deltas.fold(db) == 0  # nothing left: no write transaction either


async def test_a_fold_in_small_chunks_counts_each_delta_once(
    db: Database, runtime: Runtime, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await r2_traffic(runtime, world, 200, seed=22)
    waiting_rows = await waiting(db)
    monkeypatch.setattr(deltas, "FOLD_CHUNK_ROWS", 3)
    assert await deltas.fold(db) == waiting_rows  # several chunks, each its own transaction
    assert await waiting(db) == 0
    await r2_traffic(runtime, world, 100, seed=23)
    await assert_figures_equal_recount(db, world)


async def test_the_fold_job_runs_every_figures_fold_seconds(
    db: Database, settings: Settings, runtime: Runtime, runner: JobRunner, world: World
) -> None:
    await r2_traffic(runtime, world, 100, seed=24)
    assert await waiting(db) > 0
    await runner.schedule_periodic()
    await runner.run_until_idle()
    assert await waiting(db) == 0
    assert await records_in_figures(db) > 0
    async with db.session() as session:
        due = await session.scalar(select(Job.due_at).where(Job.kind == "analytics.fold_figures"))
    assert due == clock.now() + timedelta(seconds=settings.figures_fold_seconds)  # the clock is pinned
    await assert_figures_equal_recount(db, world)


async def test_a_rebuild_folds_pending_deltas_without_counting_them_twice(
    db: Database, settings: Settings, runtime: Runtime, world: World
) -> None:
    await r2_traffic(runtime, world, 200, seed=25)
    assert await waiting(db) > 0
    today = day_in(world.timezone, clock.now())
    await recounting.rebuild(db, settings, world.tenant.account_id, today, today, clock.now())
    assert await waiting(db) == 0
    await assert_figures_equal_recount(db, world)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_rebuilds_and_folds_at_once_neither_deadlock_nor_count_twice(
    db: Database, settings: Settings, runtime: Runtime, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild takes the deltas' table before the figures', as a fold does: run side by side under R2 traffic, no
    transaction waits for the other in a cycle (PostgreSQL would abort one as a deadlock)."""
    monkeypatch.setattr(deltas, "FOLD_CHUNK_ROWS", 5)
    today = day_in(world.timezone, clock.now())
    for seed in range(26, 29):
        await asyncio.gather(
            r2_traffic(runtime, world, 200, seed=seed),
            recounting.rebuild(db, settings, world.tenant.account_id, today, today, clock.now()),
            deltas.fold(db),
            recounting.rebuild(db, settings, world.tenant.account_id, today, today, clock.now()),
            deltas.fold(db),
        )
    await assert_figures_equal_recount(db, world)


async def test_deltas_of_a_deleted_account_are_dropped_by_the_fold(db: Database, world: World) -> None:
    today = day_in(world.timezone, clock.now())
    row = {"day": today, "label_id": world.labels[0], "business_number": 910987654399, "outcome": 0, "amount": 4}
    async with db.transaction() as session:
        await session.execute(
            insert(FIGURE_DELTAS), [{**row, "account_id": world.tenant.account_id}, {**row, "account_id": uuid.uuid4()}]
        )
    assert await deltas.fold(db) == 2
    assert await waiting(db) == 0
    async with db.session() as session:
        kept = (await session.execute(select(DailyFigures.account_id, DailyFigures.records_delivered))).all()
    assert [tuple(found) for found in kept] == [(world.tenant.account_id, 4)]


async def test_the_analytics_api_counts_r2_records_sent_just_before(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    """Over HTTP: R2 records (accepted, so committed), then at once the analytics API: every one is counted."""
    tenant = await create_tenant(
        db, settings, name="Deltas", access={**dict.fromkeys(FEATURES, "write"), "analytics": "read"}
    )
    headers = {"Authorization": f"Bearer {await mint(client, tenant)}"}
    label = await add_label(db, settings, tenant.account_id, "Flowers")
    now_ms = personalisation.epoch_ms(clock.now())
    for index in range(7):
        record = record_v2(label, now_ms, receiver_number=f"91700000{index:04d}")
        sent = await client.post(f"/v2/clients/{tenant.account_id}/dynamic_call_record", json=record, headers=headers)
        assert sent.status_code == 200, sent.text
    assert await waiting(db) > 0
    today = day_in("UTC", clock.now()).isoformat()  # a new account's timezone
    answer = await client.get(
        f"/clients/{tenant.account_id}/analytics",
        params={"from": today, "to": today, "group_by": "label"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(row["name"], row["recordsTotal"]) for row in body["rows"]] == [("Flowers", 7)]
    assert body["totals"]["recordsNotAppUser"] == 7  # no phone has the app: each record's outcome
    assert await waiting(db) == 0


@pytest.mark.parametrize("seconds", [0, -1, 3601])
def test_the_fold_period_is_bounded(seconds: float) -> None:
    with pytest.raises(ValidationError, match="figures_fold_seconds"):
        Settings(figures_fold_seconds=seconds)
    assert Settings().figures_fold_seconds == 5.0
