"""Putting work on the queue. Enqueue inside the caller's transaction so work and state commit together."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.jobs.models import QUEUED, Job

# PostgreSQL channel that enqueues NOTIFY (delivered at commit) so runners in other processes wake at once.
NOTIFY_CHANNEL = "callerid_jobs"

# Runners in this process register a callback here so that new work is picked up without waiting
# for the next poll. Other processes learn of it by NOTIFY (PostgreSQL) or by polling (SQLite).
_local_wakers: list[Callable[[], None]] = []


def add_local_waker(waker: Callable[[], None]) -> None:
    _local_wakers.append(waker)


def remove_local_waker(waker: Callable[[], None]) -> None:
    if waker in _local_wakers:
        _local_wakers.remove(waker)


def wake_local_runners() -> None:
    """Call after committing enqueued work."""
    for waker in list(_local_wakers):
        waker()


def periodic_key(kind: str) -> str:
    """The unique_key of the one queued instance of a periodic kind."""
    return f"periodic:{kind}"


async def _notify(session: AsyncSession) -> None:
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


async def enqueue(session: AsyncSession, kind: str, payload: dict[str, Any], *, due_at: datetime | None = None) -> None:
    await enqueue_many(session, kind, [payload], due_at=due_at)


def job_row(kind: str, payload: dict[str, Any], *, due_at: datetime | None = None) -> dict[str, Any]:
    """The ``jobs`` row of a new job, for writers that insert it themselves (``INSERT_JOB``) in their own
    transaction; they call ``wake_local_runners()`` after committing."""
    now = clock.now()
    return {
        "kind": kind,
        "payload": payload,
        "status": QUEUED,
        "due_at": due_at or now,
        "attempts": 0,
        "created_at": now,
    }


INSERT_JOB = insert(Job.__table__)


async def enqueue_many(
    session: AsyncSession, kind: str, payloads: list[dict[str, Any]], *, due_at: datetime | None = None
) -> None:
    if not payloads:
        return
    await session.execute(insert(Job), [job_row(kind, payload, due_at=due_at) for payload in payloads])
    await _notify(session)


async def enqueue_unique(
    session: AsyncSession, kind: str, key: str, payload: dict[str, Any], *, due_at: datetime | None = None
) -> bool:
    """Enqueue unless a job with ``key`` already exists (race-free). Returns whether one was added.

    The key is free again once the job succeeded (its row is deleted); a ``dead`` job keeps it.
    """
    now = clock.now()
    values = {
        "kind": kind,
        "payload": payload,
        "status": QUEUED,
        "due_at": due_at or now,
        "attempts": 0,
        "unique_key": key,
        "created_at": now,
    }
    dialect = session.get_bind().dialect.name
    insert_fn = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert_fn(Job).values(**values).on_conflict_do_nothing(index_elements=["unique_key"])
    result = await session.execute(statement.returning(Job.id))
    added = result.scalar_one_or_none() is not None
    if added:
        await _notify(session)
    return added
