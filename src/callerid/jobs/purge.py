"""Data retention: expired rows deleted in bounded chunks on the job runner, without stalling the hot paths.

Each domain declares what expires as ``Purge`` objects next to its tables (a table and the condition of its expired
rows) and runs them from one periodic job with ``run_purges``. A chunk is one statement, ``DELETE ... WHERE key IN
(SELECT key ... WHERE <expired> LIMIT n)``, in its own transaction. On SQLite it runs on the writer's thread
(``SqliteWriter.transaction_on_thread``): the event loop goes on serving requests and only other writers wait, for
that one statement (1,000 rows: a few milliseconds); between chunks the purge waits ``retention_chunk_pause_seconds``,
so the real-time writers queued on ``Database.write_lock`` go first. On the loop itself each chunk stalled every
request: purging 1,000 rows at a time, R2 went from 4,450 to 2,060 records/s and its p99 from 15 to 43 ms; on the
thread (20 ms pauses) 4,140 -> 3,660 records/s, p99 16 -> 27 ms, while the purge deletes 33,000 records/s
(bench/retention.py). On PostgreSQL the sub-select takes its rows ``FOR UPDATE SKIP LOCKED``: a row another
transaction is changing (a device being seen) is left for the next run. A run stops after ``retention_run_seconds``
(having deleted at least one full chunk) and continues in a new run a second later (``RetryLater``), so a purge of
millions of rows never holds a runner slot, a lease or a shutdown for long.

Every condition must be served by an index whose leading column it bounds: each chunk's sub-select then reads only
rows it deletes, instead of walking the table while holding the write lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Integer, Table, bindparam, delete, select, tuple_

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.registry import JobContext, RetryLater

log = structlog.get_logger("callerid.retention")

# The bind parameter holding the chunk size in every purge statement.
CHUNK_ROWS = "purge_chunk_rows"
# A purge stopped by its time budget continues after this pause (other due jobs are claimed first).
CONTINUE_AFTER = timedelta(seconds=1)

Cutoffs = Callable[[Settings, datetime], dict[str, Any]]


def retention_every(settings: Settings) -> timedelta:
    """The period of every domain's purge job (``@handler(kind, every=retention_every)``)."""
    return timedelta(minutes=settings.retention_interval_minutes)


class Purge:
    """Expired rows of one table.

    ``expired`` is the condition of the rows to delete; its bind parameters get their values from
    ``cutoffs(settings, now)``. Rows of other tables that hang on these go with them by their foreign keys'
    ``ON DELETE CASCADE`` (webhook attempts with their event). The statement is built once (the SQLite writer
    compiles it once).
    """

    def __init__(self, name: str, table: Table, expired: ColumnElement[bool], cutoffs: Cutoffs):
        keys = tuple(table.primary_key.columns)
        chosen = (
            select(*keys)
            .where(expired)
            .limit(bindparam(CHUNK_ROWS, type_=Integer))
            .with_for_update(skip_locked=True)  # PostgreSQL only: SQLite's compiler leaves it out
        )
        self.name = name
        self.table = table
        self.cutoffs = cutoffs
        if len(keys) == 1:
            self.statement = delete(table).where(keys[0].in_(chosen.scalar_subquery()))
        else:  # a composite key (call signals: device, event id): a row-value IN, on both databases
            self.statement = delete(table).where(tuple_(*keys).in_(chosen))

    def __repr__(self) -> str:
        return f"Purge({self.name!r})"


@dataclass
class PurgeRun:
    """What one run of ``purge`` did."""

    deleted: dict[str, int] = field(default_factory=dict)  # rows per Purge name
    statements: int = 0
    finished: bool = True  # False: stopped by the time budget with rows left

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


async def purge(
    db: Database,
    settings: Settings,
    purges: Sequence[Purge],
    *,
    now: datetime | None = None,
    budget_seconds: float | None = None,
) -> PurgeRun:
    """Delete the rows of ``purges`` (in order) that are expired at ``now``, chunk by chunk, until none is left or
    ``budget_seconds`` (default ``retention_run_seconds``) is used.

    The budget is checked after each full chunk (one that may have left rows of its kind behind), so every run
    deletes at least a full chunk or finishes: a run stopped early makes progress even with a budget of 0.
    """
    now = now or clock.now()
    chunk_rows = settings.retention_chunk_rows
    budget = settings.retention_run_seconds if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    run = PurgeRun()
    for item in purges:
        values = {**item.cutoffs(settings, now), CHUNK_ROWS: chunk_rows}
        run.deleted.setdefault(item.name, 0)
        while True:
            count = await _delete_chunk(db, item, values)
            run.statements += 1
            run.deleted[item.name] += count
            if count < chunk_rows:
                break  # none of this kind left
            if time.monotonic() >= deadline:
                run.finished = False
                return run
            await asyncio.sleep(settings.retention_chunk_pause_seconds)  # queued writers take the lock first
    return run


async def _delete_chunk(db: Database, item: Purge, values: dict[str, Any]) -> int:
    """One chunk in its own transaction; the number of rows it deleted."""
    return await db.transact(lambda tx: tx.execute(item.statement, values), bulk=True)


async def run_purges(ctx: JobContext, purges: Sequence[Purge]) -> PurgeRun:
    """A periodic purge job's body: ``purge`` within the time budget; rows left -> the job runs again shortly."""
    run = await purge(ctx.db, ctx.settings, purges)
    if run.total:
        log.info("retention_purged", deleted=run.deleted, statements=run.statements, finished=run.finished)
    if not run.finished:
        raise RetryLater(delay=CONTINUE_AFTER)
    return run
