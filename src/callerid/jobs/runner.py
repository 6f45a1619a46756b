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

New work is noticed by polling (``job_poll_seconds``), at once after a commit that enqueued work in this process,
and from other processes where the database tells (``Database.listen_for_jobs``: PostgreSQL's LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from callerid import clock
from callerid.batching import Batcher
from callerid.db.write import WriteTx, add_local_waker, remove_local_waker
from callerid.jobs import statements
from callerid.jobs.models import DEAD, QUEUED
from callerid.jobs.registry import JobContext, Registry, RetryLater
from callerid.jobs.registry import registry as default_registry
from callerid.jobs.service import enqueue_in, enqueue_unique, periodic_key

if TYPE_CHECKING:
    from callerid.runtime import Runtime

log = structlog.get_logger("callerid.jobs")

MAX_ERROR_CHARS = 2000
# Outcomes written in one transaction at most (bounded statement size; SQLite allows 32766 parameters).
MAX_OUTCOME_BATCH = 500


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


class JobRunner:
    def __init__(self, runtime: Runtime, *, registry: Registry | None = None, owner: str | None = None):
        self.runtime = runtime  # what handlers get (JobContext.runtime)
        self.db = runtime.db
        self.settings = runtime.settings
        self.registry = registry or default_registry
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
        # Outcomes are group-committed: every outcome that arrives while one write is in progress goes into the next.
        self._outcomes: Batcher[_Outcome, bool] = Batcher(
            self._write_outcomes, max_batch=MAX_OUTCOME_BATCH, alone_on_error=True, name="callerid-job-outcomes"
        )
        self._loop_task: asyncio.Task[None] | None = None
        self._heartbeat_stop = asyncio.Event()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._unlisten_db: Callable[[], Awaitable[None]] | None = None

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
        """Wake on other processes' enqueues where the database tells (polling remains the fallback)."""
        try:
            self._unlisten_db = await self.db.listen_for_jobs(self._wake.set)
        except Exception:
            log.warning("job_listen_failed", exc_info=True)

    async def _unlisten(self) -> None:
        close, self._unlisten_db = self._unlisten_db, None
        if close is not None:
            await close()

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
        if not await self._anything_due(now):
            return []
        values = {
            "kinds": kinds,
            "held": list(self._held),
            "now": now,
            "owner": self.owner,
            "lease_until": now + timedelta(seconds=self.settings.job_lease_seconds),
            "limit": limit,
        }

        async def lease_due(tx: WriteTx) -> list[Any]:
            found = await tx.query(statements.CLAIM_EXPIRED, values)
            if len(found) < limit:
                found += await tx.query(statements.CLAIM_QUEUED, {**values, "limit": limit - len(found)})
            return found

        rows = await self.db.transact(lease_due)
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

    async def _anything_due(self, now: datetime) -> bool:
        """Whether a claim could find work, asked without a write transaction. An idle runner polls several times a
        second, and each claim is a write transaction (on SQLite it would make the real-time writers wait)."""
        async with self.db.point_session() as session:
            return bool((await session.execute(statements.ANY_DUE, {"now": now})).scalar())

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
            context = JobContext(runtime=self.runtime, job_id=job.id, attempt=job.attempts)
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
        values = {"ids": ids, "owner": self.owner, "lease_until": self._lease_until()}
        extended = {row.id for row in await self.db.transact(lambda tx: tx.query(statements.EXTEND, values))}
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
        return await self.db.transact(lambda tx: self._write_outcomes_in(tx, outcomes))

    async def _write_outcomes_in(self, tx: WriteTx, outcomes: list[_Outcome]) -> list[bool]:
        done_ids = [outcome.job.id for outcome in outcomes if outcome.done]
        deleted: set[int] = set()
        if done_ids:
            deleted = {row.id for row in await tx.query(statements.COMPLETE, {"ids": done_ids, "owner": self.owner})}
            for outcome in outcomes:
                periodic = self.registry.periodic.get(outcome.job.kind)
                if outcome.done and periodic is not None and outcome.job.id in deleted:
                    # Same transaction as the delete: a crash cannot lose the periodic job. Its key is free: the
                    # one job holding it was just deleted, and only this runner held that job's lease.
                    await enqueue_in(
                        tx,
                        outcome.job.kind,
                        {},
                        due_at=clock.now() + periodic.every(self.settings),
                        unique_key=periodic_key(outcome.job.kind),
                    )
        for statement, retry_later in ((statements.RESCHEDULE_LATER, True), (statements.RESCHEDULE_FAILED, False)):
            parameters = [
                {"b_id": outcome.job.id, "b_owner": self.owner, **(outcome.reschedule or {})}
                for outcome in outcomes
                if not outcome.done and outcome.retry_later == retry_later
            ]
            if parameters:
                await tx.executemany(statement, parameters)
        return [outcome.job.id in deleted if outcome.done else True for outcome in outcomes]

    async def _release_leases(self) -> None:
        """Hand unfinished jobs back at once instead of making others wait for lease expiry."""
        try:
            await self.db.transact(lambda tx: tx.execute(statements.RELEASE, {"owner": self.owner}))
        except Exception:
            log.exception("job_release_failed")

    # --- periodic work -----------------------------------------------------------------------------------

    async def schedule_periodic(self) -> None:
        """Make sure each periodic kind has exactly one job waiting (idempotent across processes)."""
        for kind in self.registry.periodic:
            async with self.db.transaction() as session:
                await enqueue_unique(session, kind, periodic_key(kind), {}, due_at=clock.now())
