"""The job runner: claims due jobs with a lease, runs their handlers, retries, shuts down gracefully.

Claiming is one UPDATE ... RETURNING over a sub-select of due rows; on PostgreSQL the sub-select uses
``FOR UPDATE SKIP LOCKED`` so that many runners share a queue without waiting on each other. On SQLite
the single write lock (``BEGIN IMMEDIATE``) serialises claims. A job whose runner dies keeps its lease
until the lease expires; then any runner claims it again (at-least-once). While a handler runs, the
runner extends its lease so long jobs are not stolen. Every write about a claimed job checks
``lease_owner`` so a runner that lost its lease can no longer change the job.

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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.models import DEAD, QUEUED, RUNNING, Job
from callerid.jobs.registry import JobContext, Registry, RetryLater
from callerid.jobs.registry import registry as default_registry
from callerid.jobs.service import NOTIFY_CHANNEL, add_local_waker, enqueue_unique, periodic_key, remove_local_waker

log = structlog.get_logger("callerid.jobs")

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


def _backoff(attempt: int) -> timedelta:
    return timedelta(seconds=min(2**attempt, 300))


def _default_owner() -> str:
    # lease_owner is String(100): keep room for the pid and the random part after a long hostname.
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
        self._loop_task: asyncio.Task[None] | None = None
        self._listen_connection: AsyncConnection | None = None

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
        await self._unlisten()
        await self._release_leases()

    async def run_forever(self) -> None:
        while not self._stopping.is_set():
            # Clear before claiming: a wake-up that arrives while we claim must not be lost.
            self._wake.clear()
            try:
                claimed = await self.claim_and_dispatch()
            except Exception:
                log.exception("job_claim_failed")
                claimed = 0
            if claimed == 0 or self._free_slots() == 0:
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

    async def claim(self, limit: int) -> list[ClaimedJob]:
        """Lease up to ``limit`` due jobs of the kinds this runner handles (also ones whose lease expired)."""
        kinds = list(self.registry.handlers)
        if limit <= 0 or not kinds:
            return []
        now = clock.now()
        conditions = [
            Job.kind.in_(kinds),
            or_(
                (Job.status == QUEUED) & (Job.due_at <= now),
                (Job.status == RUNNING) & (Job.lease_expires_at <= now),
            ),
        ]
        if self._running:
            # A job of ours whose lease lapsed (e.g. the loop was blocked) is still running here: never twice.
            conditions.append(Job.id.not_in(list(self._running)))
        due = (
            select(Job.id)
            .where(*conditions)
            .order_by(Job.due_at, Job.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        statement = (
            update(Job)
            .where(Job.id.in_(due))
            .values(
                status=RUNNING,
                lease_owner=self.owner,
                lease_expires_at=now + timedelta(seconds=self.settings.job_lease_seconds),
                attempts=Job.attempts + 1,
            )
            .returning(Job.id, Job.kind, Job.payload, Job.attempts)
            .execution_options(synchronize_session=False)
        )
        async with self.db.transaction() as session:
            rows = (await session.execute(statement)).all()
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
        return [job for job in jobs if job.attempts <= self.settings.job_max_attempts]

    async def claim_and_dispatch(self) -> int:
        jobs = await self.claim(self._free_slots())
        for job in jobs:
            task = asyncio.create_task(self._run(job), name=f"job-{job.kind}-{job.id}")
            self._running[job.id] = task
            task.add_done_callback(lambda _t, job_id=job.id: self._finished(job_id))
        return len(jobs)

    def _finished(self, job_id: int) -> None:
        self._running.pop(job_id, None)
        self._wake.set()  # a slot is free

    async def run_until_idle(self, max_rounds: int = 10_000) -> int:
        """Process every due job, including ones that handlers enqueue meanwhile (tests, CLI). Returns count."""
        done = 0
        for _ in range(max_rounds):
            jobs = await self.claim(max(1, self.settings.job_concurrency))
            if not jobs:
                return done
            await asyncio.gather(*(self._run(job) for job in jobs))
            done += len(jobs)
        return done

    # --- running ---------------------------------------------------------------------------------------

    async def _run(self, job: ClaimedJob) -> None:
        fn = self.registry.handlers[job.kind]
        context = JobContext(
            db=self.db, settings=self.settings, job_id=job.id, attempt=job.attempts, services=self.services
        )
        heartbeat_stop = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(job.id, heartbeat_stop), name=f"job-heartbeat-{job.id}")
        outcome: BaseException | None = None
        try:
            await fn(context, job.payload)
        except Exception as exc:
            outcome = exc
        finally:
            # Stop the heartbeat between writes rather than cancelling it inside one.
            heartbeat_stop.set()
            await heartbeat
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

    async def _heartbeat(self, job_id: int, stop: asyncio.Event) -> None:
        interval = max(0.05, self.settings.job_lease_seconds / 3)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if stop.is_set():
                return
            try:
                async with self.db.transaction() as session:
                    result = await session.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.lease_owner == self.owner, Job.status == RUNNING)
                        .values(lease_expires_at=clock.now() + timedelta(seconds=self.settings.job_lease_seconds))
                    )
                if result.rowcount == 0:  # type: ignore[attr-defined]
                    log.warning("job_lease_lost", job_id=job_id, owner=self.owner)
                    return
            except Exception:
                log.exception("job_heartbeat_failed", job_id=job_id)

    def _owned(self, job: ClaimedJob) -> Any:
        return (Job.id == job.id) & (Job.lease_owner == self.owner) & (Job.status == RUNNING)

    async def _complete(self, job: ClaimedJob) -> None:
        periodic = self.registry.periodic.get(job.kind)
        async with self.db.transaction() as session:
            result = await session.execute(delete(Job).where(self._owned(job)))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                log.warning("job_completed_after_lease_lost", job_id=job.id, kind=job.kind, owner=self.owner)
                return
            if periodic is not None:
                # Same transaction as the delete: a crash cannot lose the periodic job.
                await enqueue_unique(
                    session, job.kind, periodic_key(job.kind), {}, due_at=clock.now() + periodic.every(self.settings)
                )

    async def _retry_later(self, job: ClaimedJob, retry: RetryLater) -> None:
        due = retry.at or clock.now() + (retry.delay or timedelta(0))
        async with self.db.transaction() as session:
            await session.execute(
                update(Job)
                .where(self._owned(job))
                .values(
                    status=QUEUED,
                    due_at=due,
                    lease_owner=None,
                    lease_expires_at=None,
                    attempts=Job.attempts - 1,  # not a failure
                )
            )

    async def _fail(self, job: ClaimedJob, error: str) -> None:
        give_up = job.attempts >= self.settings.job_max_attempts
        periodic = self.registry.periodic.get(job.kind)
        due: datetime = clock.now() + _backoff(job.attempts)
        status, attempts = (DEAD if give_up else QUEUED), job.attempts
        if give_up and periodic is not None:
            # Periodic work never dies: start over at the next period, keeping the error for the operator.
            status, attempts, due = QUEUED, 0, clock.now() + periodic.every(self.settings)
        async with self.db.transaction() as session:
            await session.execute(
                update(Job)
                .where(self._owned(job))
                .values(
                    status=status,
                    due_at=due,
                    attempts=attempts,
                    lease_owner=None,
                    lease_expires_at=None,
                    last_error=error[:MAX_ERROR_CHARS],
                )
            )
        if give_up:
            log.error("job_gave_up", job_id=job.id, kind=job.kind, attempts=job.attempts, status=status, error=error)

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
