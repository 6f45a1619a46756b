"""The job runner: claims due jobs with a lease, runs their handlers, retries, shuts down gracefully.

Claiming is an UPDATE ... RETURNING over a sub-select of due rows; on PostgreSQL the sub-select uses
``FOR UPDATE SKIP LOCKED`` so that many runners share a queue without waiting on each other. On SQLite
the single write lock (``BEGIN IMMEDIATE``) serialises claims. A job whose runner dies keeps its lease
until the lease expires; then any runner claims it again (at-least-once). While a handler runs, the
runner extends its lease so long jobs are not stolen. Every write about a claimed job checks
``lease_owner`` so a runner that lost its lease can no longer change the job.

Per-job database work is kept small because SQLite has a single writer: outcomes (done, retry, failed)
are group-committed (every outcome that arrives while one write is in progress goes into the next
transaction, so there is no added delay when idle); one heartbeat loop extends all of this runner's
leases in one UPDATE; and the runner claims a batch at a time, refilling when a quarter of its slots is
free rather than after every job. A handler's job counts as done only once its outcome is committed: a
crash before that leaves the job leased, and it runs again after the lease expires.

New work is noticed by polling (``job_poll_seconds``), by ``wake_local_runners()`` in this process and,
on PostgreSQL, by ``LISTEN``/``NOTIFY`` from other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy import (
    Integer,
    String,
    all_,
    any_,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.db.pointread import point_session
from callerid.db.sqlitewriter import WriteTransaction, sqlite_writer
from callerid.jobs.models import DEAD, QUEUED, RUNNING, Job
from callerid.jobs.registry import JobContext, Registry, RetryLater
from callerid.jobs.registry import registry as default_registry
from callerid.jobs.service import NOTIFY_CHANNEL, add_local_waker, enqueue_unique, periodic_key, remove_local_waker

log = structlog.get_logger("callerid.jobs")

_NOW = bindparam("now", type_=Job.due_at.type)
# Due work of any kind: queued and due, or running with a lapsed lease (two index walks, each stops at a row).
_ANY_DUE = select(
    or_(
        exists().where(Job.status == QUEUED, Job.due_at <= _NOW),
        exists().where(Job.status == RUNNING, Job.lease_expires_at <= _NOW),
    ).label("due")
)

MAX_ERROR_CHARS = 2000
# Outcomes written in one transaction at most (bounded statement size; SQLite allows 32766 parameters).
MAX_OUTCOME_BATCH = 500

_TABLE = Job.__table__
# Rescheduling outcomes differ per job (due time, attempts, error): one statement run for many parameter sets.
_RESCHEDULE_FAILED = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("b_id"), _TABLE.c.lease_owner == bindparam("b_owner"), _TABLE.c.status == RUNNING)
    .values(
        status=bindparam("b_status", type_=_TABLE.c.status.type),
        due_at=bindparam("b_due_at", type_=_TABLE.c.due_at.type),
        attempts=bindparam("b_attempts", type_=_TABLE.c.attempts.type),
        lease_owner=None,
        lease_expires_at=None,
        last_error=bindparam("b_error", type_=_TABLE.c.last_error.type),
    )
)
_RESCHEDULE_LATER = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("b_id"), _TABLE.c.lease_owner == bindparam("b_owner"), _TABLE.c.status == RUNNING)
    .values(
        status=QUEUED,
        due_at=bindparam("b_due_at", type_=_TABLE.c.due_at.type),
        lease_owner=None,
        lease_expires_at=None,
        attempts=_TABLE.c.attempts - 1,  # not a failure
    )
)


# SQLite: the runner's frequent writes as statements built once, run by db.sqlitewriter on the loop thread (an
# aiosqlite transaction takes several event-loop turns, holding SQLite's write lock all along). Lists of ids or
# kinds go in as one JSON array each.
def _json_list(name: str, item_type: Any) -> Any:
    return select(type_coerce(literal_column("value"), item_type)).select_from(
        func.json_each(bindparam(name, type_=String))
    )


_RETURNING = (_TABLE.c.id, _TABLE.c.kind, _TABLE.c.payload, _TABLE.c.attempts)
_LEASE_VALUES = {
    "status": RUNNING,
    "lease_owner": bindparam("owner", type_=_TABLE.c.lease_owner.type),
    "lease_expires_at": bindparam("lease_until", type_=_TABLE.c.lease_expires_at.type),
    "attempts": _TABLE.c.attempts + 1,
}
_NOW_AT = bindparam("now", type_=_TABLE.c.due_at.type)
_CLAIM_EXPIRED_SQLITE = (
    update(_TABLE)
    .where(
        _TABLE.c.id.in_(
            select(_TABLE.c.id)
            .where(
                _TABLE.c.kind.in_(_json_list("kinds", String)),
                _TABLE.c.status == RUNNING,
                _TABLE.c.lease_expires_at <= _NOW_AT,
                _TABLE.c.id.not_in(_json_list("held", Integer)),
            )
            .order_by(_TABLE.c.lease_expires_at)
            .limit(bindparam("limit", type_=Integer))
            .scalar_subquery()
        )
    )
    .values(**_LEASE_VALUES)
    .returning(*_RETURNING)
)
_CLAIM_QUEUED_SQLITE = (
    update(_TABLE)
    .where(
        _TABLE.c.id.in_(
            select(_TABLE.c.id)
            .where(
                _TABLE.c.kind.in_(_json_list("kinds", String)), _TABLE.c.status == QUEUED, _TABLE.c.due_at <= _NOW_AT
            )
            .order_by(_TABLE.c.due_at, _TABLE.c.id)
            .limit(bindparam("limit", type_=Integer))
            .scalar_subquery()
        )
    )
    .values(**_LEASE_VALUES)
    .returning(*_RETURNING)
)
_COMPLETE_SQLITE = (
    delete(_TABLE)
    .where(
        _TABLE.c.id.in_(_json_list("ids", Integer)),
        _TABLE.c.lease_owner == bindparam("owner", type_=_TABLE.c.lease_owner.type),
        _TABLE.c.status == RUNNING,
    )
    .returning(_TABLE.c.id)
)
_EXTEND_SQLITE = (
    update(_TABLE)
    .where(
        _TABLE.c.id.in_(_json_list("ids", Integer)),
        _TABLE.c.lease_owner == bindparam("owner", type_=_TABLE.c.lease_owner.type),
        _TABLE.c.status == RUNNING,
    )
    .values(lease_expires_at=bindparam("lease_until", type_=_TABLE.c.lease_expires_at.type))
    .returning(_TABLE.c.id)
)


# PostgreSQL: the claim as one statement run in autocommit: one round trip, where a transaction of two UPDATEs took
# five (BEGIN, the two, COMMIT, the pool's reset), each a wake-up of the server that is slow on a busy machine.
# Lapsed leases first, then queued jobs; each branch walks its own index in order and stops at ``limit`` (see the
# note in _claim_with_session), the second is not run when the first fills the claim. Lists go in as arrays, so the
# statement text is the same for every claim and asyncpg prepares it once per connection.
_KINDS_PG = bindparam("kinds", type_=postgresql.ARRAY(_TABLE.c.kind.type))
_LIMIT = bindparam("limit", type_=Integer)
_EXPIRED_PG = (
    select(_TABLE.c.id)
    .where(
        _TABLE.c.kind == any_(_KINDS_PG),
        _TABLE.c.status == RUNNING,
        _TABLE.c.lease_expires_at <= _NOW_AT,
        _TABLE.c.id != all_(bindparam("held", type_=postgresql.ARRAY(_TABLE.c.id.type))),
    )
    .order_by(_TABLE.c.lease_expires_at)
    .limit(_LIMIT)
    .with_for_update(skip_locked=True)
    .subquery("expired")
)
_QUEUED_PG = (
    select(_TABLE.c.id)
    .where(_TABLE.c.kind == any_(_KINDS_PG), _TABLE.c.status == QUEUED, _TABLE.c.due_at <= _NOW_AT)
    .order_by(_TABLE.c.due_at, _TABLE.c.id)
    .limit(_LIMIT)
    .with_for_update(skip_locked=True)
    .subquery("queued")
)
_CLAIM_PG = (
    update(_TABLE)
    .where(
        _TABLE.c.id.in_(union_all(select(_EXPIRED_PG.c.id), select(_QUEUED_PG.c.id)).limit(_LIMIT).scalar_subquery())
    )
    .values(**_LEASE_VALUES)
    .returning(*_RETURNING)
)


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class _Outcome:
    """What to write about a finished job: delete it (done), or put it back (``reschedule`` parameters)."""

    job: ClaimedJob
    done: bool
    retry_later: bool = False
    reschedule: dict[str, Any] | None = None


def _backoff(attempt: int) -> timedelta:
    return timedelta(seconds=min(2**attempt, 300))


def _default_owner() -> str:
    # lease_owner is String(100): keep room for the pid and the random part after a long hostname.
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _OutcomeWriter:
    """Group commit of job outcomes: outcomes that arrive while a write is in progress go together in the
    next transaction; the first one after a quiet spell is written at once (no timer, no added delay).

    Hand-written rather than a library: it is a few lines, and the write must stay in this module's
    lease-checked statements.
    """

    def __init__(self, runner: JobRunner):
        self._runner = runner
        self._pending: list[tuple[_Outcome, asyncio.Future[bool]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, outcome: _Outcome) -> bool:
        """Wait until ``outcome`` is committed. Returns False when the lease was lost (nothing written)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="callerid-job-outcomes")
        # Shielded: a handler task cancelled at shutdown must not cancel a write that others wait for.
        return await asyncio.shield(future)

    async def idle(self) -> None:
        """Wait until every submitted outcome is written (or failed)."""
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_OUTCOME_BATCH], self._pending[MAX_OUTCOME_BATCH:]
            try:
                results = await self._runner._write_outcomes([outcome for outcome, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch, None, exc=exc)
                    continue
                # One bad outcome must not fail the others: write each on its own.
                log.warning("job_outcome_batch_failed", size=len(batch), exc_info=True)
                for item in batch:
                    try:
                        _settle([item], await self._runner._write_outcomes([item[0]]))
                    except Exception as exc:
                        _settle([item], None, exc=exc)
            else:
                _settle(batch, results)


def _settle(
    batch: list[tuple[_Outcome, asyncio.Future[bool]]],
    results: Sequence[bool] | None,
    *,
    exc: BaseException | None = None,
) -> None:
    """Hand each waiting submitter its result, or the exception that stopped its write."""
    for index, (_, future) in enumerate(batch):
        if future.done():
            continue
        if results is not None:
            future.set_result(results[index])
        else:
            future.set_exception(exc or RuntimeError("job outcome write failed"))


class JobRunner:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        registry: Registry | None = None,
        services: dict[str, Any] | None = None,
        owner: str | None = None,
    ):
        self.db = db
        self.settings = settings
        self.registry = registry or default_registry
        self.services = services if services is not None else {}
        self.owner = owner or _default_owner()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        # Every job this runner holds a lease on: handler running or outcome not yet committed.
        self._held: dict[int, ClaimedJob] = {}
        self._lease_lost: set[int] = set()  # held jobs whose lease the heartbeat found taken
        # Held jobs whose outcome went to the outcome writer: their row may be gone or requeued (outcome committed)
        # before their task resumes and stops holding them, so a failed extension says nothing about the lease.
        self._settling: set[int] = set()
        self._more_due = False  # the last claim was full: the queue may hold more due work
        self._outcomes = _OutcomeWriter(self)
        self._loop_task: asyncio.Task[None] | None = None
        self._heartbeat_stop = asyncio.Event()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._listen_connection: AsyncConnection | None = None
        self._autocommit: AsyncEngine | None = None

    # --- lifecycle -------------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    @property
    def running_job_ids(self) -> set[int]:
        """Ids of the jobs this runner is executing right now (``start`` mode)."""
        return set(self._running)

    async def start(self) -> None:
        """Run in the background of the current event loop (embedded mode)."""
        await self.schedule_periodic()
        add_local_waker(self.wake)
        await self._listen()
        self._start_heartbeat()
        self._loop_task = asyncio.create_task(self.run_forever(), name="callerid-job-runner")

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish within the grace period, release the rest."""
        self._stopping.set()
        self._wake.set()
        remove_local_waker(self.wake)
        if self._loop_task is not None:
            await self._loop_task
        if self._running:
            _, pending = await asyncio.wait(
                list(self._running.values()), timeout=self.settings.job_shutdown_grace_seconds
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        await self._outcomes.idle()  # outcomes of finished jobs are written before the rest is released
        await self._stop_heartbeat()
        await self._unlisten()
        await self._release_leases()

    async def run_forever(self) -> None:
        while not self._stopping.is_set():
            # Clear before claiming: a wake-up that arrives while we claim must not be lost.
            self._wake.clear()
            free = self._free_slots()
            claimed = 0
            if free > 0:
                try:
                    claimed = await self.claim_and_dispatch()
                except Exception:
                    log.exception("job_claim_failed")
                self._more_due = claimed >= free
            if claimed < free or self._free_slots() == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.job_poll_seconds)

    async def _listen(self) -> None:
        """On PostgreSQL, wake on NOTIFY from enqueues in other processes (polling remains the fallback)."""
        if not self.db.is_postgres:
            return
        connection: AsyncConnection | None = None
        try:
            connection = await self.db.engine.connect()
            raw = await connection.get_raw_connection()
            await raw.driver_connection.add_listener(NOTIFY_CHANNEL, self._on_notify)  # type: ignore[union-attr]
        except Exception:
            log.warning("job_listen_failed", exc_info=True)
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()
            return
        self._listen_connection = connection

    def _on_notify(self, *_args: Any) -> None:
        self._wake.set()

    async def _unlisten(self) -> None:
        connection, self._listen_connection = self._listen_connection, None
        if connection is None:
            return
        try:
            raw = await connection.get_raw_connection()
            await raw.driver_connection.remove_listener(NOTIFY_CHANNEL, self._on_notify)  # type: ignore[union-attr]
        except Exception:
            log.warning("job_unlisten_failed", exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    # --- claiming ------------------------------------------------------------------------------------

    def _free_slots(self) -> int:
        return max(0, self.settings.job_concurrency - len(self._running))

    def _refill_slots(self) -> int:
        """Free slots worth a claim while the queue has more: claiming per finished job would cost a write
        transaction per job (SQLite's single writer is the bottleneck); a quarter of the slots keeps the
        runner nearly full."""
        return max(1, self.settings.job_concurrency // 4)

    def _lease_until(self) -> datetime:
        return clock.now() + timedelta(seconds=self.settings.job_lease_seconds)

    async def claim(self, limit: int) -> list[ClaimedJob]:
        """Lease up to ``limit`` due jobs of the kinds this runner handles (also ones whose lease expired)."""
        kinds = list(self.registry.handlers)
        if limit <= 0 or not kinds:
            return []
        now = clock.now()
        if self.db.is_sqlite and not await self._anything_due(now):
            return []
        writer = sqlite_writer(self.db)
        if writer is not None:
            values = {
                "kinds": orjson.dumps(kinds).decode(),
                "held": orjson.dumps(list(self._held)).decode(),
                "now": now,
                "owner": self.owner,
                "lease_until": now + timedelta(seconds=self.settings.job_lease_seconds),
                "limit": limit,
            }

            def lease_due(tx: WriteTransaction) -> list[Any]:
                # Two statements rather than one with OR: see the note in _claim_with_session.
                found = tx.query(_CLAIM_EXPIRED_SQLITE, values)
                if len(found) < limit:
                    found += tx.query(_CLAIM_QUEUED_SQLITE, {**values, "limit": limit - len(found)})
                return found

            rows = await writer.transaction(lease_due)
        elif self.db.is_postgres:
            values = {
                "kinds": kinds,
                "held": list(self._held),
                "now": now,
                "owner": self.owner,
                "lease_until": now + timedelta(seconds=self.settings.job_lease_seconds),
                "limit": limit,
            }
            async with self._autocommit_engine().connect() as connection:
                rows = list((await connection.execute(_CLAIM_PG, values)).all())
        else:
            rows = await self._claim_with_session(kinds, limit, now)
        jobs = [ClaimedJob(r.id, r.kind, r.payload, r.attempts) for r in rows]
        # attempts only exceeds the maximum when earlier runs were lost with their runner (crash, kill):
        # a job that keeps killing its runner must not be retried for ever.
        lost = [job for job in jobs if job.attempts > self.settings.job_max_attempts]
        for job in lost:
            await self._fail(
                job,
                f"attempt {job.attempts} exceeds job_max_attempts={self.settings.job_max_attempts}: "
                "earlier runs ended without an outcome (runner crashed or was killed)",
            )
        runnable = [job for job in jobs if job.attempts <= self.settings.job_max_attempts]
        for job in runnable:
            self._held[job.id] = job
        return runnable

    def _autocommit_engine(self) -> AsyncEngine:
        """PostgreSQL: the database's pool, its connections used in autocommit (single-statement claims)."""
        if self._autocommit is None:
            self._autocommit = self.db.engine.execution_options(isolation_level="AUTOCOMMIT")
        return self._autocommit

    async def _claim_with_session(self, kinds: list[str], limit: int, now: datetime) -> list[Any]:
        lease = {
            "status": RUNNING,
            "lease_owner": self.owner,
            "lease_expires_at": now + timedelta(seconds=self.settings.job_lease_seconds),
            "attempts": Job.attempts + 1,
        }
        # Two statements rather than one with OR over the two statuses: with OR, SQLite merges both
        # indexes and sorts every due row (milliseconds per claim with a backlog of 10,000); each of these
        # walks its own index in order and stops at ``limit``.
        expired_conditions = [Job.kind.in_(kinds), Job.status == RUNNING, Job.lease_expires_at <= now]
        if self._held:
            # A job of ours whose lease lapsed (e.g. the loop was blocked) is still ours: never twice.
            expired_conditions.append(Job.id.not_in(list(self._held)))
        expired = (
            select(Job.id)
            .where(*expired_conditions)
            .order_by(Job.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        queued = (
            select(Job.id)
            .where(Job.kind.in_(kinds), Job.status == QUEUED, Job.due_at <= now)
            .order_by(Job.due_at, Job.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        returning = (Job.id, Job.kind, Job.payload, Job.attempts)
        async with self.db.transaction() as session:
            rows = list(
                (
                    await session.execute(
                        update(Job)
                        .where(Job.id.in_(expired))
                        .values(**lease)
                        .returning(*returning)
                        .execution_options(synchronize_session=False)
                    )
                ).all()
            )
            if len(rows) < limit:
                rows += (
                    await session.execute(
                        update(Job)
                        .where(Job.id.in_(queued.limit(limit - len(rows)).scalar_subquery()))
                        .values(**lease)
                        .returning(*returning)
                        .execution_options(synchronize_session=False)
                    )
                ).all()
        return rows

    async def _anything_due(self, now: datetime) -> bool:
        """SQLite: whether a claim could find work, asked without the write lock. An idle runner polls several
        times a second, and each claim is a write transaction that would make the real-time writers wait."""
        async with point_session(self.db) as session:
            return bool((await session.execute(_ANY_DUE, {"now": now})).scalar())

    async def claim_and_dispatch(self) -> int:
        jobs = await self.claim(self._free_slots())
        for job in jobs:
            task = asyncio.create_task(self._run(job), name=f"job-{job.kind}-{job.id}")
            self._running[job.id] = task
            task.add_done_callback(lambda _t, job_id=job.id: self._finished(job_id))
        return len(jobs)

    def _finished(self, job_id: int) -> None:
        self._running.pop(job_id, None)
        # Claim again when enough slots are free, or at once when the last claim found the queue empty
        # (then new work arrives with a wake-up or the poll, not because a slot is free).
        if self._more_due and self._free_slots() >= self._refill_slots():
            self._wake.set()

    async def run_until_idle(self, max_rounds: int = 10_000) -> int:
        """Process every due job, including ones that handlers enqueue meanwhile (tests, CLI). Returns count."""
        done = 0
        heartbeat = self._heartbeat_task is None
        if heartbeat:
            self._start_heartbeat()
        try:
            for _ in range(max_rounds):
                jobs = await self.claim(max(1, self.settings.job_concurrency))
                if not jobs:
                    return done
                await asyncio.gather(*(self._run(job) for job in jobs))
                done += len(jobs)
            return done
        finally:
            if heartbeat:
                await self._stop_heartbeat()

    # --- running ---------------------------------------------------------------------------------------

    async def _run(self, job: ClaimedJob) -> None:
        self._held[job.id] = job
        try:
            fn = self.registry.handlers[job.kind]
            context = JobContext(
                db=self.db, settings=self.settings, job_id=job.id, attempt=job.attempts, services=self.services
            )
            outcome: BaseException | None = None
            try:
                await fn(context, job.payload)
            except Exception as exc:
                outcome = exc
            self._settling.add(job.id)
            try:
                if outcome is None:
                    await self._complete(job)
                elif isinstance(outcome, RetryLater):
                    await self._retry_later(job, outcome)
                else:
                    log.warning("job_failed", job_id=job.id, kind=job.kind, attempt=job.attempts, error=repr(outcome))
                    await self._fail(job, "".join(traceback.format_exception_only(outcome)).strip())
            except Exception:
                # The lease runs out and another claim retries the job.
                log.exception("job_outcome_write_failed", job_id=job.id, kind=job.kind)
        finally:
            self._held.pop(job.id, None)
            self._settling.discard(job.id)
            self._lease_lost.discard(job.id)

    # --- leases ----------------------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        self._heartbeat_stop.clear()
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="callerid-job-heartbeat")

    async def _stop_heartbeat(self) -> None:
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            # Stop the heartbeat between writes rather than cancelling it inside one.
            self._heartbeat_stop.set()
            await task

    async def _heartbeat(self) -> None:
        """One loop for all of this runner's leases: every lease/3 s, one UPDATE extends them all."""
        interval = max(0.05, self.settings.job_lease_seconds / 3)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heartbeat_stop.wait(), timeout=interval)
            if self._heartbeat_stop.is_set():
                return
            try:
                await self.extend_leases()
            except Exception:
                log.exception("job_heartbeat_failed", owner=self.owner)

    async def extend_leases(self) -> None:
        """Extend the lease of every job this runner holds; log (once) those whose lease another took."""
        ids = [job_id for job_id in self._held if job_id not in self._lease_lost]
        if not ids:
            return
        writer = sqlite_writer(self.db)
        if writer is not None:
            values = {"ids": orjson.dumps(ids).decode(), "owner": self.owner, "lease_until": self._lease_until()}
            extended = {row.id for row in await writer.transaction(lambda tx: tx.query(_EXTEND_SQLITE, values))}
        else:
            async with self.db.transaction() as session:
                result = await session.execute(
                    update(Job)
                    .where(Job.id.in_(ids), Job.lease_owner == self.owner, Job.status == RUNNING)
                    .values(lease_expires_at=self._lease_until())
                    .returning(Job.id)
                    .execution_options(synchronize_session=False)
                )
                extended = set(result.scalars().all())
        for job_id in ids:
            # Not one whose outcome is being written or was committed while this update waited: under a backlog,
            # many outcomes are committed just before the heartbeat's UPDATE runs, and their tasks resume after
            # it (they still look held then). Such a job's lease, if it was really lost, is reported by its
            # outcome write (``job_completed_after_lease_lost``).
            if job_id not in extended and job_id in self._held and job_id not in self._settling:
                self._lease_lost.add(job_id)
                log.warning("job_lease_lost", job_id=job_id, owner=self.owner)

    # --- outcomes ----------------------------------------------------------------------------------------

    async def _complete(self, job: ClaimedJob) -> None:
        if not await self._outcomes.submit(_Outcome(job, done=True)):
            log.warning("job_completed_after_lease_lost", job_id=job.id, kind=job.kind, owner=self.owner)

    async def _retry_later(self, job: ClaimedJob, retry: RetryLater) -> None:
        due = retry.at or clock.now() + (retry.delay or timedelta(0))
        await self._outcomes.submit(_Outcome(job, done=False, retry_later=True, reschedule={"b_due_at": due}))

    async def _fail(self, job: ClaimedJob, error: str) -> None:
        give_up = job.attempts >= self.settings.job_max_attempts
        periodic = self.registry.periodic.get(job.kind)
        due: datetime = clock.now() + _backoff(job.attempts)
        status, attempts = (DEAD if give_up else QUEUED), job.attempts
        if give_up and periodic is not None:
            # Periodic work never dies: start over at the next period, keeping the error for the operator.
            status, attempts, due = QUEUED, 0, clock.now() + periodic.every(self.settings)
        reschedule = {"b_status": status, "b_due_at": due, "b_attempts": attempts, "b_error": error[:MAX_ERROR_CHARS]}
        await self._outcomes.submit(_Outcome(job, done=False, reschedule=reschedule))
        if give_up:
            log.error("job_gave_up", job_id=job.id, kind=job.kind, attempts=job.attempts, status=status, error=error)

    async def _write_outcomes(self, outcomes: list[_Outcome]) -> list[bool]:
        """Write ``outcomes`` in one transaction, each only if this runner still holds the job's lease.

        Returns, per outcome, whether it was written (for reschedules: True, not checked per row).
        """
        writer = sqlite_writer(self.db)
        periodic_done = any(outcome.done and outcome.job.kind in self.registry.periodic for outcome in outcomes)
        if writer is not None and not periodic_done:
            return await writer.transaction(lambda tx: self._write_outcomes_sqlite(tx, outcomes))
        async with self.db.transaction() as session:
            return await self._write_outcomes_in(session, outcomes)

    def _write_outcomes_sqlite(self, tx: WriteTransaction, outcomes: list[_Outcome]) -> list[bool]:
        """``_write_outcomes_in`` on db.sqlitewriter (no periodic job among the finished ones: re-enqueueing
        those stays on the session path)."""
        done_ids = [outcome.job.id for outcome in outcomes if outcome.done]
        deleted: set[int] = set()
        if done_ids:
            values = {"ids": orjson.dumps(done_ids).decode(), "owner": self.owner}
            deleted = {row.id for row in tx.query(_COMPLETE_SQLITE, values)}
        for statement, retry_later in ((_RESCHEDULE_LATER, True), (_RESCHEDULE_FAILED, False)):
            for outcome in outcomes:
                if not outcome.done and outcome.retry_later == retry_later:
                    tx.execute(statement, {"b_id": outcome.job.id, "b_owner": self.owner, **(outcome.reschedule or {})})
        return [outcome.job.id in deleted if outcome.done else True for outcome in outcomes]

    async def _write_outcomes_in(self, session: AsyncSession, outcomes: list[_Outcome]) -> list[bool]:
        done_ids = [outcome.job.id for outcome in outcomes if outcome.done]
        deleted: set[int] = set()
        if done_ids:
            result = await session.execute(
                delete(Job)
                .where(Job.id.in_(done_ids), Job.lease_owner == self.owner, Job.status == RUNNING)
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            )
            deleted = set(result.scalars().all())
            for outcome in outcomes:
                periodic = self.registry.periodic.get(outcome.job.kind)
                if outcome.done and periodic is not None and outcome.job.id in deleted:
                    # Same transaction as the delete: a crash cannot lose the periodic job.
                    await enqueue_unique(
                        session,
                        outcome.job.kind,
                        periodic_key(outcome.job.kind),
                        {},
                        due_at=clock.now() + periodic.every(self.settings),
                    )
        for statement, retry_later in ((_RESCHEDULE_LATER, True), (_RESCHEDULE_FAILED, False)):
            parameters = [
                {"b_id": outcome.job.id, "b_owner": self.owner, **(outcome.reschedule or {})}
                for outcome in outcomes
                if not outcome.done and outcome.retry_later == retry_later
            ]
            if parameters:
                await session.execute(statement, parameters)
        return [outcome.job.id in deleted if outcome.done else True for outcome in outcomes]

    async def _release_leases(self) -> None:
        """Hand unfinished jobs back at once instead of making others wait for lease expiry."""
        try:
            async with self.db.transaction() as session:
                await session.execute(
                    update(Job)
                    .where(Job.lease_owner == self.owner, Job.status == RUNNING)
                    .values(status=QUEUED, lease_owner=None, lease_expires_at=None, attempts=Job.attempts - 1)
                )
        except Exception:
            log.exception("job_release_failed")

    # --- periodic work -----------------------------------------------------------------------------------

    async def schedule_periodic(self) -> None:
        """Make sure each periodic kind has exactly one job waiting (idempotent across processes)."""
        for kind in self.registry.periodic:
            async with self.db.transaction() as session:
                await enqueue_unique(session, kind, periodic_key(kind), {}, due_at=clock.now())
