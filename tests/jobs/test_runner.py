"""The durable job runner on one database: run, delay, retry, dead, RetryLater, leases, heartbeat, shutdown,
periodic work and enqueue_unique. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.db.write import wake_local_runners
from callerid.jobs import JobContext, RetryLater, enqueue, enqueue_many, enqueue_unique
from callerid.jobs.models import DEAD, QUEUED, RUNNING, Job
from callerid.jobs.registry import Registry
from callerid.jobs.runner import JobRunner
from callerid.runtime import Runtime

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
WAIT = 10.0  # upper bound for waiting on something another task does; never reached when things work


def tuned(settings: Settings, **values: Any) -> Settings:
    return settings.model_copy(update=values)


def runner_on(db: Database, settings: Settings, **options: Any) -> JobRunner:
    """A runner over ``db`` with these settings, in a runtime of its own (as another process would have)."""
    return JobRunner(Runtime.build(settings, db), **options)


async def jobs_in(db: Database) -> list[Job]:
    async with db.session() as session:
        return list((await session.scalars(select(Job).order_by(Job.id))).all())


async def add(db: Database, kind: str, payload: dict[str, Any], *, due_at: datetime | None = None) -> None:
    async with db.transaction() as session:
        await enqueue(session, kind, payload, due_at=due_at)


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until another task made ``condition`` true (polls the database; bounded by WAIT)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


class Recorder:
    """A handler that records its calls; optional ``behaviour`` decides what each call does."""

    def __init__(self, behaviour: Callable[[JobContext, dict[str, Any]], Awaitable[None]] | None = None):
        self.calls: list[tuple[int, int, dict[str, Any]]] = []  # (job_id, attempt, payload)
        self.behaviour = behaviour

    async def __call__(self, ctx: JobContext, payload: dict[str, Any]) -> None:
        self.calls.append((ctx.job_id, ctx.attempt, payload))
        if self.behaviour is not None:
            await self.behaviour(ctx, payload)


def registry_with(**handlers: Any) -> Registry:
    registry = Registry()
    for kind, fn in handlers.items():
        registry.handler(f"test.{kind}")(fn)
    return registry


# --- running, delay -----------------------------------------------------------------------------------


async def test_enqueue_runs_handler_with_payload_and_deletes_row(db: Database, settings: Settings) -> None:
    record = Recorder()
    runner = runner_on(db, settings, registry=registry_with(record=record))
    async with db.transaction() as session:
        await enqueue(session, "test.record", {"n": 1, "text": "ünïcode", "nested": {"list": [1, 2]}})
        await enqueue_many(session, "test.record", [{"n": 2}, {"n": 3}])
    [first, *_] = await jobs_in(db)
    assert first.status == QUEUED and first.attempts == 0 and first.lease_owner is None

    assert await runner.run_until_idle() == 3
    assert sorted((c[2]["n"], c[1]) for c in record.calls) == [(1, 1), (2, 1), (3, 1)]
    assert next(c for c in record.calls if c[2]["n"] == 1) == (
        first.id,
        1,
        {"n": 1, "text": "ünïcode", "nested": {"list": [1, 2]}},
    )
    assert await jobs_in(db) == []
    assert await runner.run_until_idle() == 0


async def test_runner_only_claims_its_own_kinds(db: Database, settings: Settings) -> None:
    record = Recorder()
    runner = runner_on(db, settings, registry=registry_with(record=record))
    await add(db, "test.someone_else", {"n": 1})
    assert await runner.run_until_idle() == 0
    [job] = await jobs_in(db)
    assert (job.kind, job.status, job.attempts) == ("test.someone_else", QUEUED, 0)


async def test_future_due_at_is_not_claimed_until_the_clock_gets_there(db: Database, settings: Settings) -> None:
    clock.freeze(T0)
    record = Recorder()
    runner = runner_on(db, settings, registry=registry_with(record=record))
    await add(db, "test.record", {"n": 1}, due_at=T0 + timedelta(minutes=10))
    assert await runner.run_until_idle() == 0
    clock.advance(timedelta(minutes=10) - timedelta(microseconds=1))
    assert await runner.run_until_idle() == 0
    assert record.calls == []
    clock.advance(timedelta(microseconds=1))
    assert await runner.run_until_idle() == 1
    assert [c[2] for c in record.calls] == [{"n": 1}]


# --- failure, retry, dead, RetryLater -------------------------------------------------------------------


async def test_failure_is_retried_with_backoff_then_dead(db: Database, settings: Settings) -> None:
    clock.freeze(T0)

    async def explode(ctx: JobContext, _payload: dict[str, Any]) -> None:
        raise ValueError(f"boom {ctx.attempt}")

    record = Recorder(explode)
    runner = runner_on(db, tuned(settings, job_max_attempts=3), registry=registry_with(flaky=record))
    await add(db, "test.flaky", {"n": 1})

    assert await runner.run_until_idle() == 1
    [job] = await jobs_in(db)
    assert (job.status, job.attempts, job.last_error, job.due_at) == (
        QUEUED,
        1,
        "ValueError: boom 1",
        T0 + timedelta(seconds=2),
    )
    assert job.lease_owner is None and job.lease_expires_at is None
    assert await runner.run_until_idle() == 0  # backing off

    clock.advance(2)
    assert await runner.run_until_idle() == 1
    [job] = await jobs_in(db)
    assert (job.status, job.attempts, job.last_error) == (QUEUED, 2, "ValueError: boom 2")
    assert job.due_at == clock.now() + timedelta(seconds=4)

    clock.advance(4)
    assert await runner.run_until_idle() == 1
    [job] = await jobs_in(db)
    assert (job.status, job.attempts, job.last_error) == (DEAD, 3, "ValueError: boom 3")

    clock.advance(timedelta(days=30))
    assert await runner.run_until_idle() == 0
    assert [c[1] for c in record.calls] == [1, 2, 3]
    [job] = await jobs_in(db)
    assert job.status == DEAD


async def test_failure_then_success_deletes_the_job(db: Database, settings: Settings) -> None:
    clock.freeze(T0)

    async def fail_once(ctx: JobContext, _payload: dict[str, Any]) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("transient")

    record = Recorder(fail_once)
    runner = runner_on(db, settings, registry=registry_with(flaky=record))
    await add(db, "test.flaky", {"n": 1})
    assert await runner.run_until_idle() == 1
    clock.advance(2)
    assert await runner.run_until_idle() == 1
    assert [c[1] for c in record.calls] == [1, 2]
    assert await jobs_in(db) == []


async def test_retry_later_at_reschedules_without_counting_a_failure(db: Database, settings: Settings) -> None:
    clock.freeze(T0)
    ready_at = T0 + timedelta(minutes=30)

    async def not_yet(ctx: JobContext, _payload: dict[str, Any]) -> None:
        if clock.now() < ready_at:
            raise RetryLater(at=clock.now() + timedelta(minutes=10))

    record = Recorder(not_yet)
    runner = runner_on(db, tuned(settings, job_max_attempts=1), registry=registry_with(wait=record))
    await add(db, "test.wait", {"n": 1})

    for _ in range(3):  # more RetryLaters than job_max_attempts: none of them is a failure
        assert await runner.run_until_idle() == 1
        [job] = await jobs_in(db)
        assert (job.status, job.attempts, job.last_error) == (QUEUED, 0, None)
        assert job.due_at == clock.now() + timedelta(minutes=10)
        assert job.lease_owner is None and job.lease_expires_at is None
        clock.advance(timedelta(minutes=10) - timedelta(microseconds=1))
        assert await runner.run_until_idle() == 0
        clock.advance(timedelta(microseconds=1))
    assert clock.now() == ready_at
    assert await runner.run_until_idle() == 1
    assert await jobs_in(db) == []
    assert [c[1] for c in record.calls] == [1, 1, 1, 1]


async def test_retry_later_delay(db: Database, settings: Settings) -> None:
    clock.freeze(T0)

    async def once_more(ctx: JobContext, _payload: dict[str, Any]) -> None:
        if len(record.calls) == 1:
            raise RetryLater(delay=timedelta(seconds=90))

    record = Recorder(once_more)
    runner = runner_on(db, settings, registry=registry_with(wait=record))
    await add(db, "test.wait", {"n": 1})
    assert await runner.run_until_idle() == 1
    [job] = await jobs_in(db)
    assert (job.due_at, job.attempts) == (T0 + timedelta(seconds=90), 0)
    clock.advance(89)
    assert await runner.run_until_idle() == 0
    clock.advance(1)
    assert await runner.run_until_idle() == 1
    assert await jobs_in(db) == []


# --- leases -------------------------------------------------------------------------------------------


async def test_expired_lease_is_claimed_by_another_runner_and_late_completion_is_ignored(
    db: Database, settings: Settings
) -> None:
    clock.freeze(T0)
    started = {1: asyncio.Event(), 2: asyncio.Event()}
    release = {1: asyncio.Event(), 2: asyncio.Event()}

    async def slow(ctx: JobContext, _payload: dict[str, Any]) -> None:
        started[ctx.attempt].set()
        await release[ctx.attempt].wait()

    record = Recorder(slow)
    registry = registry_with(slow=record)
    runner_a = runner_on(db, settings, registry=registry, owner="runner-a")
    runner_b = runner_on(db, settings, registry=registry, owner="runner-b")
    await add(db, "test.slow", {"n": 1})

    a_done = asyncio.create_task(runner_a.run_until_idle())
    await asyncio.wait_for(started[1].wait(), WAIT)
    [job] = await jobs_in(db)
    assert (job.status, job.lease_owner, job.attempts) == (RUNNING, "runner-a", 1)
    assert job.lease_expires_at == T0 + timedelta(seconds=settings.job_lease_seconds)

    assert await runner_b.claim(10) == []  # lease still valid
    clock.advance(settings.job_lease_seconds)  # lease expired (A's heartbeat is 10 s of real time away)
    b_done = asyncio.create_task(runner_b.run_until_idle())
    await asyncio.wait_for(started[2].wait(), WAIT)
    [job] = await jobs_in(db)
    assert (job.status, job.lease_owner, job.attempts) == (RUNNING, "runner-b", 2)

    release[1].set()  # A finishes late: it must not delete the job B now holds
    assert await asyncio.wait_for(a_done, WAIT) == 1
    [job] = await jobs_in(db)
    assert (job.status, job.lease_owner, job.attempts) == (RUNNING, "runner-b", 2)

    release[2].set()
    assert await asyncio.wait_for(b_done, WAIT) == 1
    assert await jobs_in(db) == []
    assert [c[1] for c in record.calls] == [1, 2]


async def test_late_failure_and_retry_later_of_a_lost_lease_are_ignored(db: Database, settings: Settings) -> None:
    clock.freeze(T0)
    registry = registry_with(record=Recorder())
    runner_a = runner_on(db, settings, registry=registry, owner="runner-a")
    runner_b = runner_on(db, settings, registry=registry, owner="runner-b")
    await add(db, "test.record", {"n": 1})
    [claimed_by_a] = await runner_a.claim(10)
    clock.advance(settings.job_lease_seconds + 1)
    [claimed_by_b] = await runner_b.claim(10)
    assert claimed_by_b.id == claimed_by_a.id and claimed_by_b.attempts == 2

    await runner_a._fail(claimed_by_a, "too late")
    await runner_a._retry_later(claimed_by_a, RetryLater(delay=timedelta(0)))
    await runner_a._release_leases()
    [job] = await jobs_in(db)
    assert (job.status, job.lease_owner, job.attempts, job.last_error) == (RUNNING, "runner-b", 2, None)


async def test_job_whose_runner_keeps_dying_goes_dead_without_running(db: Database, settings: Settings) -> None:
    clock.freeze(T0)
    record = Recorder()
    registry = registry_with(record=record)
    settings = tuned(settings, job_max_attempts=2)
    await add(db, "test.record", {"n": 1})
    for owner in ("crashes-1", "crashes-2"):  # each claims and then "dies" with the lease
        assert len(await runner_on(db, settings, registry=registry, owner=owner).claim(10)) == 1
        clock.advance(settings.job_lease_seconds + 1)
    assert await runner_on(db, settings, registry=registry, owner="survivor").run_until_idle() == 0
    [job] = await jobs_in(db)
    assert (job.status, job.attempts, job.lease_owner) == (DEAD, 3, None)
    assert job.last_error == (
        "attempt 3 exceeds job_max_attempts=2: earlier runs ended without an outcome (runner crashed or was killed)"
    )
    assert record.calls == []


async def test_heartbeat_extends_the_lease_of_a_long_handler(db: Database, settings: Settings) -> None:
    clock.freeze(T0)
    lease = 0.3  # the heartbeat runs every lease/3 seconds of real time
    started, release = asyncio.Event(), asyncio.Event()

    async def long(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        started.set()
        await release.wait()

    registry = registry_with(long=Recorder(long))
    settings = tuned(settings, job_lease_seconds=lease)
    runner_a = runner_on(db, settings, registry=registry, owner="runner-a")
    runner_b = runner_on(db, settings, registry=registry, owner="runner-b")
    await add(db, "test.long", {"n": 1})
    a_done = asyncio.create_task(runner_a.run_until_idle())
    await asyncio.wait_for(started.wait(), WAIT)
    first_expiry = T0 + timedelta(seconds=lease)
    [job] = await jobs_in(db)
    assert job.lease_expires_at == first_expiry

    clock.advance(0.2)

    async def extended() -> bool:
        [job] = await jobs_in(db)
        return job.lease_expires_at is not None and job.lease_expires_at > first_expiry

    await eventually(extended, "the heartbeat")
    [job] = await jobs_in(db)
    assert job.lease_expires_at == T0 + timedelta(seconds=0.2 + lease)
    clock.advance(0.25)  # past the first expiry, within the extended one
    assert await runner_b.claim(10) == []

    release.set()
    assert await asyncio.wait_for(a_done, WAIT) == 1
    assert await jobs_in(db) == []


# --- graceful shutdown ----------------------------------------------------------------------------------


async def test_stop_waits_for_running_handlers_and_claims_nothing_new(db: Database, settings: Settings) -> None:
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def work(_ctx: JobContext, payload: dict[str, Any]) -> None:
        started.set()
        await release.wait()
        finished.set()

    record = Recorder(work)
    runner = runner_on(db, tuned(settings, job_shutdown_grace_seconds=WAIT), registry=registry_with(work=record))
    await runner.start()
    await add(db, "test.work", {"n": 1})
    wake_local_runners()
    await asyncio.wait_for(started.wait(), WAIT)

    stopping = asyncio.create_task(runner.stop())
    await asyncio.sleep(0.2)  # give stop() the chance to (wrongly) return or claim more
    assert not stopping.done()
    await add(db, "test.work", {"n": 2})
    wake_local_runners()
    release.set()
    await asyncio.wait_for(stopping, WAIT)

    assert finished.is_set()
    assert [c[2] for c in record.calls] == [{"n": 1}]
    [left] = await jobs_in(db)  # the job enqueued during shutdown waits for the next runner
    assert (left.payload, left.status, left.attempts, left.lease_owner) == ({"n": 2}, QUEUED, 0, None)


async def test_stop_releases_unfinished_jobs_after_the_grace_period(db: Database, settings: Settings) -> None:
    clock.freeze(T0)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    registry = registry_with(stuck=Recorder(stuck))
    runner_a = runner_on(db, tuned(settings, job_shutdown_grace_seconds=0.2), registry=registry, owner="runner-a")
    await add(db, "test.stuck", {"n": 1})
    await runner_a.start()
    await asyncio.wait_for(started.wait(), WAIT)
    [job] = await jobs_in(db)
    assert (job.status, job.lease_owner, job.attempts) == (RUNNING, "runner-a", 1)

    await asyncio.wait_for(runner_a.stop(), WAIT)
    assert cancelled.is_set()
    [job] = await jobs_in(db)
    assert (job.status, job.lease_owner, job.lease_expires_at, job.attempts) == (QUEUED, None, None, 0)

    # Same instant (clock frozen): no lease expiry needed for another runner to take it over.
    runner_b = runner_on(db, settings, registry=registry, owner="runner-b")
    [claimed] = await runner_b.claim(10)
    assert (claimed.id, claimed.attempts) == (job.id, 1)


async def test_started_runner_picks_up_work_and_finishes_it(db: Database, settings: Settings) -> None:
    done = asyncio.Event()

    async def count(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        if len(record.calls) == 25:
            done.set()

    record = Recorder(count)
    runner = runner_on(db, tuned(settings, job_concurrency=4), registry=registry_with(count=record))
    await runner.start()
    try:
        async with db.transaction() as session:
            await enqueue_many(session, "test.count", [{"n": n} for n in range(25)])
        wake_local_runners()
        await asyncio.wait_for(done.wait(), WAIT)

        async def empty() -> bool:
            return await jobs_in(db) == []

        await eventually(empty, "the queue to drain")
    finally:
        await runner.stop()
    assert sorted(c[2]["n"] for c in record.calls) == list(range(25))


# --- periodic work --------------------------------------------------------------------------------------


async def test_periodic_job_has_one_instance_and_is_rescheduled(db: Database, settings: Settings) -> None:
    clock.freeze(T0)
    record = Recorder()
    registry = Registry()
    registry.handler("test.tick", every=lambda s: timedelta(minutes=5))(record)
    runners = [runner_on(db, settings, registry=registry, owner=f"runner-{i}") for i in range(4)]
    await asyncio.gather(*(r.schedule_periodic() for r in runners))
    await asyncio.gather(*(r.schedule_periodic() for r in runners))
    [job] = await jobs_in(db)
    assert (job.kind, job.unique_key, job.due_at, job.status) == ("test.tick", "periodic:test.tick", T0, QUEUED)

    assert await runners[0].run_until_idle() == 1
    [job] = await jobs_in(db)
    assert (job.due_at, job.status, job.attempts) == (T0 + timedelta(minutes=5), QUEUED, 0)
    assert await runners[1].run_until_idle() == 0
    await asyncio.gather(*(r.schedule_periodic() for r in runners))  # a restart does not add a second one
    assert len(await jobs_in(db)) == 1

    clock.advance(timedelta(minutes=5))
    assert await runners[1].run_until_idle() == 1
    [job] = await jobs_in(db)
    assert job.due_at == T0 + timedelta(minutes=10)
    assert len(record.calls) == 2


async def test_failing_periodic_job_never_dies(db: Database, settings: Settings) -> None:
    clock.freeze(T0)

    async def broken(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        raise OSError("disk full")

    registry = Registry()
    registry.handler("test.tick", every=lambda s: timedelta(hours=1))(Recorder(broken))
    runner = runner_on(db, tuned(settings, job_max_attempts=2), registry=registry)
    await runner.schedule_periodic()
    assert await runner.run_until_idle() == 1
    clock.advance(2)
    assert await runner.run_until_idle() == 1
    [job] = await jobs_in(db)
    assert (job.status, job.attempts, job.last_error) == (QUEUED, 0, "OSError: disk full")
    assert job.due_at == clock.now() + timedelta(hours=1)


# --- enqueue_unique -------------------------------------------------------------------------------------


async def test_enqueue_unique_is_race_free(db: Database, settings: Settings) -> None:
    async def attempt(n: int) -> bool:
        async with db.transaction() as session:
            added = await enqueue_unique(session, "test.record", "order:42", {"n": n})
            await asyncio.sleep(0.01)  # hold the transaction open so the others overlap with it
            return added

    results = await asyncio.gather(*(attempt(n) for n in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    [job] = await jobs_in(db)
    assert job.unique_key == "order:42"
    assert job.payload == {"n": results.index(True)}

    record = Recorder()
    assert await runner_on(db, settings, registry=registry_with(record=record)).run_until_idle() == 1
    async with db.transaction() as session:  # done jobs free their key
        assert await enqueue_unique(session, "test.record", "order:42", {"n": 99}) is True


async def test_enqueue_unique_rolls_back_with_the_callers_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            assert await enqueue_unique(session, "test.record", "k", {}) is True
            raise RuntimeError("caller failed")
    assert await jobs_in(db) == []
    async with db.transaction() as session:
        assert await enqueue_unique(session, "test.record", "k", {}) is True


# --- wake-ups -------------------------------------------------------------------------------------------


async def test_wake_local_runners_skips_the_poll_wait(db: Database, settings: Settings) -> None:
    done = asyncio.Event()

    async def work(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        done.set()

    runner = runner_on(db, tuned(settings, job_poll_seconds=3600), registry=registry_with(work=Recorder(work)))
    await runner.start()
    try:
        await add(db, "test.work", {"n": 1})
        wake_local_runners()
        await asyncio.wait_for(done.wait(), WAIT)
    finally:
        await runner.stop()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_notify_wakes_runners_of_other_processes(db: Database, settings: Settings) -> None:
    done = asyncio.Event()

    async def work(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        done.set()

    other_process_db = Database(settings.database_url)  # its own connections, and no wake_local_runners()
    runner = runner_on(
        other_process_db, tuned(settings, job_poll_seconds=3600), registry=registry_with(work=Recorder(work))
    )
    await runner.start()
    try:
        await add(db, "test.work", {"n": 1})
        await asyncio.wait_for(done.wait(), WAIT)
    finally:
        await runner.stop()
        await other_process_db.dispose()


# --- group-committed outcomes, shared heartbeat, batched claims ------------------------------------------


class CountingRunner(JobRunner):
    """Counts outcome transactions; ``hold_writes`` makes them wait (e.g. to stand for a crash before the flush)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.outcome_batches: list[list[int]] = []
        self.hold_writes: asyncio.Event | None = None

    async def _write_outcomes(self, outcomes: Any) -> list[bool]:
        if self.hold_writes is not None:
            await self.hold_writes.wait()
        self.outcome_batches.append([outcome.job.id for outcome in outcomes])
        return await super()._write_outcomes(outcomes)


async def test_outcomes_that_arrive_together_are_written_in_one_transaction(db: Database, settings: Settings) -> None:
    clock.freeze(T0)
    gate = asyncio.Event()

    async def behaviour(_ctx: JobContext, payload: dict[str, Any]) -> None:
        await gate.wait()
        if payload["n"] % 3 == 1:
            raise RetryLater(delay=timedelta(minutes=1))
        if payload["n"] % 3 == 2:
            raise ValueError("no")

    record = Recorder(behaviour)
    runner = CountingRunner(
        Runtime.build(tuned(settings, job_concurrency=30), db), registry=registry_with(mixed=record)
    )
    async with db.transaction() as session:
        await enqueue_many(session, "test.mixed", [{"n": n} for n in range(30)])
    runner.hold_writes = asyncio.Event()  # the first write waits until every handler has finished
    running = asyncio.create_task(runner.run_until_idle())
    gate.set()
    await eventually(lambda: _true(len(record.calls) == 30), "all handlers to run")
    await asyncio.sleep(0)  # let them submit their outcomes
    runner.hold_writes.set()
    assert await asyncio.wait_for(running, WAIT) == 30

    assert sum(len(batch) for batch in runner.outcome_batches) == 30
    assert len(runner.outcome_batches) <= 2  # the first outcome alone at most, then all the others together
    left = await jobs_in(db)
    retried = {job.payload["n"]: job for job in left if job.last_error is None}
    failed = {job.payload["n"]: job for job in left if job.last_error is not None}
    assert sorted(retried) == list(range(1, 30, 3)) and sorted(failed) == list(range(2, 30, 3))
    assert {(j.status, j.attempts, j.due_at, j.lease_owner) for j in retried.values()} == {
        (QUEUED, 0, T0 + timedelta(minutes=1), None)
    }
    assert {(j.status, j.attempts, j.due_at, j.last_error, j.lease_owner) for j in failed.values()} == {
        (QUEUED, 1, T0 + timedelta(seconds=2), "ValueError: no", None)
    }


async def _true(value: bool) -> bool:
    return value


async def test_batched_completion_is_lease_checked_per_job(db: Database, settings: Settings) -> None:
    clock.freeze(T0)
    registry = registry_with(record=Recorder())
    runner_a = runner_on(db, settings, registry=registry, owner="runner-a")
    runner_b = runner_on(db, settings, registry=registry, owner="runner-b")
    await add(db, "test.record", {"n": 1})
    [stolen] = await runner_a.claim(10)
    clock.advance(settings.job_lease_seconds + 1)
    [taken_over] = await runner_b.claim(10)  # A's lease on job 1 ran out and B took it
    await add(db, "test.record", {"n": 2})
    [kept] = await runner_a.claim(10)

    from callerid.jobs.runner import _Outcome

    written = await runner_a._write_outcomes([_Outcome(stolen, done=True), _Outcome(kept, done=True)])
    assert written == [False, True]
    [job] = await jobs_in(db)  # only the job A still held is gone; B's is untouched
    assert (job.id, job.status, job.lease_owner, job.attempts) == (taken_over.id, RUNNING, "runner-b", 2)


async def test_crash_before_the_outcome_is_written_leaves_the_job_to_run_again(
    db: Database, settings: Settings
) -> None:
    clock.freeze(T0)
    record = Recorder()
    registry = registry_with(record=record)
    doomed = CountingRunner(Runtime.build(settings, db), registry=registry, owner="doomed")
    doomed.hold_writes = asyncio.Event()  # never set: the process "dies" before its outcome is flushed
    await add(db, "test.record", {"n": 1})
    running = asyncio.create_task(doomed.run_until_idle())
    await eventually(lambda: _true(len(record.calls) == 1), "the handler to run")
    [job] = await jobs_in(db)
    assert (job.status, job.lease_owner, job.attempts) == (RUNNING, "doomed", 1)  # done, but not recorded as done

    survivor = runner_on(db, settings, registry=registry, owner="survivor")
    assert await survivor.run_until_idle() == 0  # the lease still holds
    clock.advance(settings.job_lease_seconds)
    assert await survivor.run_until_idle() == 1
    assert [(c[0], c[1]) for c in record.calls] == [(job.id, 1), (job.id, 2)]
    assert await jobs_in(db) == []
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_one_bad_outcome_does_not_stop_the_others_in_its_batch(db: Database, settings: Settings) -> None:
    clock.freeze(T0)

    class PickyRunner(CountingRunner):
        async def _write_outcomes(self, outcomes: Any) -> list[bool]:
            if any(outcome.job.payload["n"] == 0 for outcome in outcomes):
                await super()._write_outcomes([])  # an attempted write (counted), then the failure
                raise RuntimeError("cannot write this one")
            return await super()._write_outcomes(outcomes)

    record = Recorder()
    runner = PickyRunner(Runtime.build(tuned(settings, job_concurrency=5), db), registry=registry_with(record=record))
    async with db.transaction() as session:
        await enqueue_many(session, "test.record", [{"n": n} for n in range(5)])
    runner.hold_writes = asyncio.Event()
    running = asyncio.create_task(runner.run_until_idle())
    await eventually(lambda: _true(len(record.calls) == 5), "all handlers to run")
    await asyncio.sleep(0)  # let them submit their outcomes
    runner.hold_writes.set()
    assert await asyncio.wait_for(running, WAIT) == 5
    [left] = await jobs_in(db)  # its lease runs out and it runs again; the other four are done
    assert (left.payload, left.status, left.lease_owner) == ({"n": 0}, RUNNING, runner.owner)


async def test_one_heartbeat_extends_every_lease_and_skips_lost_ones(db: Database, settings: Settings) -> None:
    clock.freeze(T0)
    lease = 30.0
    registry = registry_with(record=Recorder())
    runner_a = runner_on(db, tuned(settings, job_lease_seconds=lease), registry=registry, owner="runner-a")
    runner_b = runner_on(db, tuned(settings, job_lease_seconds=lease), registry=registry, owner="runner-b")
    async with db.transaction() as session:
        await enqueue_many(session, "test.record", [{"n": n} for n in range(3)])
    held = await runner_a.claim(2)
    clock.advance(lease + 1)
    [stolen] = await runner_b.claim(1)  # the third job was queued; B takes over one of A's expired ones first
    assert stolen.id in {job.id for job in held}
    await runner_a.extend_leases()
    by_id = {job.id: job for job in await jobs_in(db)}
    [kept] = [job for job in held if job.id != stolen.id]
    assert (by_id[kept.id].lease_owner, by_id[kept.id].lease_expires_at) == (
        "runner-a",
        clock.now() + timedelta(seconds=lease),
    )
    assert (by_id[stolen.id].lease_owner, by_id[stolen.id].lease_expires_at) == (
        "runner-b",
        clock.now() + timedelta(seconds=lease),
    )
    assert runner_a._lease_lost == {stolen.id}
    clock.advance(5)
    await runner_a.extend_leases()  # the lost one is no longer touched
    by_id = {job.id: job for job in await jobs_in(db)}
    assert by_id[kept.id].lease_expires_at == clock.now() + timedelta(seconds=lease)
    assert by_id[stolen.id].lease_expires_at == clock.now() - timedelta(seconds=5) + timedelta(seconds=lease)


async def test_a_heartbeat_right_after_outcomes_are_committed_loses_no_lease(db: Database, settings: Settings) -> None:
    """Under a backlog the heartbeat's UPDATE often runs after outcomes were committed (done: row deleted; retry
    later: row requeued) but before the jobs' tasks resumed: those jobs are not extended, and were reported as
    ``job_lease_lost`` although nothing was lost."""

    reported: set[int] = set()

    class HeartbeatAfterCommit(JobRunner):
        async def _write_outcomes(self, outcomes: Any) -> list[bool]:
            written = await super()._write_outcomes(outcomes)
            await self.extend_leases()  # before the futures of these outcomes are settled
            reported.update(self._lease_lost)
            return written

    async def behaviour(_ctx: JobContext, payload: dict[str, Any]) -> None:
        if payload["n"] % 2:
            raise RetryLater(delay=timedelta(minutes=1))

    record = Recorder(behaviour)
    runner = HeartbeatAfterCommit(
        Runtime.build(tuned(settings, job_concurrency=8), db), registry=registry_with(record=record)
    )
    async with db.transaction() as session:
        await enqueue_many(session, "test.record", [{"n": n} for n in range(8)])
    assert await runner.run_until_idle() == 8
    assert reported == set()
    assert sorted(job.payload["n"] for job in await jobs_in(db)) == [1, 3, 5, 7]  # the retried ones, queued again


async def test_claim_takes_expired_leases_first_and_never_its_own_held_jobs(db: Database, settings: Settings) -> None:
    clock.freeze(T0)
    registry = registry_with(record=Recorder())
    runner_a = runner_on(db, settings, registry=registry, owner="runner-a")
    runner_b = runner_on(db, settings, registry=registry, owner="runner-b")
    await add(db, "test.record", {"n": 1})
    [first] = await runner_a.claim(1)
    await add(db, "test.record", {"n": 2})
    clock.advance(settings.job_lease_seconds)
    assert [job.payload for job in await runner_a.claim(5)] == [{"n": 2}]  # not its own lapsed job 1
    async with db.transaction() as session:
        await enqueue_many(session, "test.record", [{"n": 3}, {"n": 4}])
    clock.advance(settings.job_lease_seconds)
    claimed = await runner_b.claim(2)  # lapsed leases before queued jobs
    assert sorted((job.payload["n"], job.attempts) for job in claimed) == [(1, 2), (2, 2)]
    assert first.id in {job.id for job in claimed}
    assert sorted((job.payload["n"], job.attempts) for job in await runner_b.claim(5)) == [(3, 1), (4, 1)]


async def test_stop_writes_finished_outcomes_before_releasing_the_rest(db: Database, settings: Settings) -> None:
    release = asyncio.Event()

    async def work(_ctx: JobContext, payload: dict[str, Any]) -> None:
        if payload["n"] == 2:
            await asyncio.Event().wait()  # stuck until cancelled at the end of the grace period
        await release.wait()

    record = Recorder(work)
    runner = CountingRunner(
        Runtime.build(tuned(settings, job_shutdown_grace_seconds=0.3), db),
        registry=registry_with(work=record),
        owner="runner-a",
    )
    async with db.transaction() as session:
        await enqueue_many(session, "test.work", [{"n": 1}, {"n": 2}])
    await runner.start()
    await eventually(lambda: _true(len(record.calls) == 2), "both handlers to start")
    runner.hold_writes = asyncio.Event()
    stopping = asyncio.create_task(runner.stop())
    release.set()
    await asyncio.sleep(0.4)  # past the grace period: job 2 is cancelled, job 1's outcome is waiting to be written
    assert not stopping.done()
    runner.hold_writes.set()
    await asyncio.wait_for(stopping, WAIT)
    [left] = await jobs_in(db)
    assert (left.payload, left.status, left.lease_owner, left.attempts) == ({"n": 2}, QUEUED, None, 0)
