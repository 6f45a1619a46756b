"""The job runner: claims due jobs with a lease, runs their handlers, retries, shuts down gracefully.

Claiming is one UPDATE ... RETURNING over a sub-select of due rows; on PostgreSQL the sub-select uses
``FOR UPDATE SKIP LOCKED`` so that many runners share a queue without waiting on each other. On SQLite
the single write lock serialises claims. A job whose runner dies keeps its lease until the lease
expires; then any runner claims it again (at-least-once). While a handler runs, the runner extends
its lease so long jobs are not stolen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import traceback
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, or_, select, update

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.models import DEAD, QUEUED, RUNNING, Job
from callerid.jobs.registry import JobContext, Registry, RetryLater
from callerid.jobs.registry import registry as default_registry
from callerid.jobs.service import add_local_waker, enqueue_unique, remove_local_waker

log = structlog.get_logger("callerid.jobs")


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


def _backoff(attempt: int) -> timedelta:
    return timedelta(seconds=min(2**attempt, 300))


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
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        """Run in the background of the current event loop (embedded mode)."""
        await self.schedule_periodic()
        add_local_waker(self.wake)
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
        await self._release_leases()

    async def run_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = await self.claim_and_dispatch()
            except Exception:
                log.exception("job_claim_failed")
                claimed = 0
            if claimed == 0 or self._free_slots() == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.job_poll_seconds)

    # --- claiming ------------------------------------------------------------------------------------

    def _free_slots(self) -> int:
        return max(0, self.settings.job_concurrency - len(self._running))

    async def claim(self, limit: int) -> list[ClaimedJob]:
        kinds = list(self.registry.handlers)
        if limit <= 0 or not kinds:
            return []
        now = clock.now()
        due = (
            select(Job.id)
            .where(
                Job.kind.in_(kinds),
                or_(
                    (Job.status == QUEUED) & (Job.due_at <= now),
                    (Job.status == RUNNING) & (Job.lease_expires_at <= now),
                ),
            )
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
        return [ClaimedJob(r.id, r.kind, r.payload, r.attempts) for r in rows]

    async def claim_and_dispatch(self) -> int:
        jobs = await self.claim(self._free_slots())
        for job in jobs:
            task = asyncio.create_task(self._run(job), name=f"job-{job.kind}-{job.id}")
            self._running[job.id] = task
            task.add_done_callback(lambda _t, job_id=job.id: self._running.pop(job_id, None))
        return len(jobs)

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
        heartbeat = asyncio.create_task(self._heartbeat(job.id))
        try:
            await fn(context, job.payload)
        except RetryLater as retry:
            await self._reschedule(job, retry, counts_as_failure=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("job_failed", job_id=job.id, kind=job.kind, attempt=job.attempts, error=repr(exc))
            await self._fail(job, "".join(traceback.format_exception_only(exc)).strip())
        else:
            await self._complete(job)
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, job_id: int) -> None:
        interval = max(0.05, self.settings.job_lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.db.transaction() as session:
                    await session.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.lease_owner == self.owner)
                        .values(lease_expires_at=clock.now() + timedelta(seconds=self.settings.job_lease_seconds))
                    )
            except Exception:
                log.exception("job_heartbeat_failed", job_id=job_id)

    async def _complete(self, job: ClaimedJob) -> None:
        async with self.db.transaction() as session:
            await session.execute(delete(Job).where(Job.id == job.id, Job.lease_owner == self.owner))
        periodic = self.registry.periodic.get(job.kind)
        if periodic is not None:
            await self._schedule_next(job.kind, clock.now() + periodic.every(self.settings))

    async def _reschedule(self, job: ClaimedJob, retry: RetryLater, *, counts_as_failure: bool) -> None:
        due = retry.at or clock.now() + (retry.delay or timedelta(0))
        values: dict[str, Any] = {"status": QUEUED, "due_at": due, "lease_owner": None, "lease_expires_at": None}
        if not counts_as_failure:
            values["attempts"] = Job.attempts - 1
        async with self.db.transaction() as session:
            await session.execute(update(Job).where(Job.id == job.id, Job.lease_owner == self.owner).values(**values))

    async def _fail(self, job: ClaimedJob, error: str) -> None:
        give_up = job.attempts >= self.settings.job_max_attempts
        values: dict[str, Any] = {
            "status": DEAD if give_up else QUEUED,
            "due_at": clock.now() + _backoff(job.attempts),
            "lease_owner": None,
            "lease_expires_at": None,
            "last_error": error[:2000],
        }
        async with self.db.transaction() as session:
            await session.execute(update(Job).where(Job.id == job.id, Job.lease_owner == self.owner).values(**values))
        if give_up:
            log.error("job_dead", job_id=job.id, kind=job.kind, attempts=job.attempts, error=error)

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

    async def _schedule_next(self, kind: str, due: Any) -> None:
        async with self.db.transaction() as session:
            await enqueue_unique(session, kind, f"periodic:{kind}", {}, due_at=due)

    async def schedule_periodic(self) -> None:
        """Make sure each periodic kind has exactly one job waiting (idempotent across processes)."""
        for kind in self.registry.periodic:
            await self._schedule_next(kind, clock.now())
