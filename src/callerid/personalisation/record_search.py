"""Searching an account's call records (batch and real-time) by caller or receiver number, for the console.

The records' only index besides their key is ``ix_call_records_pair`` (caller, receiver, id), kept for the caller-ID
lookup (a record costs under 300 bytes with its indexes, issue 15). A search uses it instead of reading records:

- a **caller** number is its first column: one index range, the entries of the time range's key range;
- a **receiver** number is its second column: the index is walked as a skip scan, two probes per distinct caller
  number of the deployment (a recursive query, the same on SQLite and PostgreSQL), then one probe of
  (caller, receiver) each. Business numbers are few beside records (2.2 million records from 500 callers: 24 ms).

Only then are the found records joined to their group and text, and kept when their label is the account's and
their group arrived in the time range (``personalisation.activity``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from callerid.db import Database
from callerid.labels.shared import LABELS
from callerid.personalisation.activity import (
    RECORD_COLUMNS,
    STREAM_ROWS,
    TEXT_OF_RECORD,
    ActivityRecord,
    KeyRange,
    key_range,
    record_of,
)
from callerid.personalisation.models import CallBatch, CallBatchText, CallRecord, first_id, group_key_of

_BATCHES = CallBatch.__table__
_TEXTS = CallBatchText.__table__
_RECORDS = CallRecord.__table__

CALLER = "caller"
RECEIVER = "receiver"
EITHER = "either"
SEARCH_SIDES = (EITHER, RECEIVER, CALLER)


def _distinct_callers() -> Any:
    """Every distinct caller number of the records, one index probe each (a skip scan of ``ix_call_records_pair``):
    ``WITH RECURSIVE callers AS (first caller UNION ALL the next caller above each)``."""
    walk = _RECORDS.alias("walk")
    first = (
        select(_RECORDS.c.caller)
        .where(_RECORDS.c.caller.is_not(None))
        .order_by(_RECORDS.c.caller)
        .limit(1)
        .scalar_subquery()
    )
    callers = select(first.label("caller")).cte("callers", recursive=True)
    following = (
        select(walk.c.caller)
        .where(walk.c.caller > callers.c.caller)
        .order_by(walk.c.caller)
        .limit(1)
        .correlate(callers)
        .scalar_subquery()
    )
    return callers.union_all(select(following).where(callers.c.caller.is_not(None)))


def _found_ids(number: int, side: str, keys: KeyRange) -> Any:
    """The ids of the records in the key range whose caller and/or receiver is ``number``, through the pair index."""
    stop = None if keys.high is None else first_id(keys.high)
    in_range = [_RECORDS.c.id >= first_id(keys.low)] + ([] if stop is None else [_RECORDS.c.id < stop])
    parts: list[Select[Any]] = []
    if side in (EITHER, CALLER):
        parts.append(select(_RECORDS.c.id).where(_RECORDS.c.caller == number, *in_range))
    if side in (EITHER, RECEIVER):
        callers = _distinct_callers()
        parts.append(
            select(_RECORDS.c.id)
            .select_from(callers.join(_RECORDS, _RECORDS.c.caller == callers.c.caller))
            .where(_RECORDS.c.receiver == number, *in_range)
        )
    return (union(*parts) if len(parts) > 1 else parts[0]).subquery("found")


def _search_source(
    account_id: uuid.UUID, number: int, side: str, keys: KeyRange, start: datetime, end: datetime
) -> tuple[Any, Any]:
    found = _found_ids(number, side, keys)
    source = (
        found.join(_RECORDS, _RECORDS.c.id == found.c.id)
        .join(_BATCHES, _BATCHES.c.key == group_key_of(_RECORDS.c.id))
        .join(_TEXTS, TEXT_OF_RECORD)
        .join(LABELS, LABELS.c.id == _TEXTS.c.label_id)
    )
    mine = and_(LABELS.c.account_id == account_id, _BATCHES.c.created_at >= start, _BATCHES.c.created_at < end)
    return source, mine


class _Outcomes:
    """Each batch's outcomes decoded once, for the records of a search (a bounded cache: a search can span many)."""

    def __init__(self) -> None:
        self.by_key: dict[int, dict[int, tuple[str | None, str | None]]] = {}

    def __call__(self, row: Any) -> ActivityRecord:
        if len(self.by_key) > 200:
            self.by_key.clear()
        return record_of(row, self.by_key)


async def search_records(
    session: AsyncSession,
    account_id: uuid.UUID,
    number: int,
    start: datetime,
    end: datetime,
    *,
    side: str = EITHER,
    limit: int,
    offset: int = 0,
) -> tuple[list[ActivityRecord], int]:
    """The account's valid records (batch and R2) of ``[start, end)`` with ``number`` as caller or receiver (``side``),
    newest first, and how many there are. Records refused by validation are not searched (their numbers may not
    even be numbers); their batch's page shows them."""
    keys = await key_range(session, start, end)
    if keys is None:
        return [], 0
    source, mine = _search_source(account_id, number, side, keys, start, end)
    total = await session.scalar(select(func.count()).select_from(source).where(mine)) or 0
    if total <= offset:
        return [], total
    query = select(*RECORD_COLUMNS).select_from(source).where(mine).order_by(_RECORDS.c.id.desc())
    rows = (await session.execute(query.offset(offset).limit(limit))).all()
    decode = _Outcomes()
    return [decode(row) for row in rows], total


async def each_found_record(
    db: Database, account_id: uuid.UUID, number: int, start: datetime, end: datetime, *, side: str = EITHER
) -> AsyncIterator[ActivityRecord]:
    """Every record of ``search_records``, newest first, streamed."""
    async with db.session() as session:
        keys = await key_range(session, start, end)
        if keys is None:
            return
        source, mine = _search_source(account_id, number, side, keys, start, end)
        query = select(*RECORD_COLUMNS).select_from(source).where(mine).order_by(_RECORDS.c.id.desc())
        decode = _Outcomes()
        async for row in await session.stream(query.execution_options(yield_per=STREAM_ROWS)):
            yield decode(row)
