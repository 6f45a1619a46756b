"""Putting work on the queue. Enqueue inside the caller's transaction so work and state commit together; the
database seam wakes the runners (this process's at once, other processes' by NOTIFY on PostgreSQL) once the
transaction commits, so callers never wake them themselves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.db.write import Step, WriteTx, insert_unless_exists, mark_enqueued
from callerid.jobs.models import QUEUED, Job

_INSERT_JOB = insert(Job.__table__)


def periodic_key(kind: str) -> str:
    """The unique_key of the one queued instance of a periodic kind."""
    return f"periodic:{kind}"


def _job_row(kind: str, payload: dict[str, Any], *, due_at: datetime | None = None) -> dict[str, Any]:
    now = clock.now()
    return {
        "kind": kind,
        "payload": payload,
        "status": QUEUED,
        "due_at": due_at or now,
        "attempts": 0,
        "created_at": now,
    }


def enqueue_step(kind: str, payload: dict[str, Any], *, due_at: datetime | None = None) -> Step:
    """A job as one step of a ``Database.write`` (the hot writers' way to enqueue)."""
    return Step(_INSERT_JOB, _job_row(kind, payload, due_at=due_at), wakes_runners=True)


async def enqueue_in(
    tx: WriteTx, kind: str, payload: dict[str, Any], *, due_at: datetime | None = None, unique_key: str | None = None
) -> None:
    """A job in a ``Database.transact`` transaction (``unique_key``: one the caller knows to be free)."""
    row = _job_row(kind, payload, due_at=due_at)
    if unique_key is not None:
        row["unique_key"] = unique_key
    await tx.execute(_INSERT_JOB, row)
    await tx.wake_runners()


async def enqueue(session: AsyncSession, kind: str, payload: dict[str, Any], *, due_at: datetime | None = None) -> None:
    await enqueue_many(session, kind, [payload], due_at=due_at)


async def enqueue_many(
    session: AsyncSession, kind: str, payloads: list[dict[str, Any]], *, due_at: datetime | None = None
) -> None:
    if not payloads:
        return
    await session.execute(_INSERT_JOB, [_job_row(kind, payload, due_at=due_at) for payload in payloads])
    await mark_enqueued(session)


async def enqueue_unique(
    session: AsyncSession, kind: str, key: str, payload: dict[str, Any], *, due_at: datetime | None = None
) -> bool:
    """Enqueue unless a job with ``key`` already exists (race-free). Returns whether one was added.

    The key is free again once the job succeeded (its row is deleted); a ``dead`` job keeps it.
    """
    values = {**_job_row(kind, payload, due_at=due_at), "unique_key": key}
    added = await insert_unless_exists(session, Job.__table__, values, unique=["unique_key"])
    if added:
        await mark_enqueued(session)
    return added
