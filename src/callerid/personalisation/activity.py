"""Call records as the console shows them (issue 11 §6): an account's batches with their counts by outcome, a batch's
records, one record, and the account's real-time (R2) records. Read-only.

How these reads find an account's records in the compact layout (``personalisation.models``), whose indexes are
kept to what the API needs (a record costs under 300 bytes with them, issue 15; ``bench/storage.py``):

- **Time first.** Group keys grow in arrival order, so a time range is a range of group keys, found with two probes
  of ``ix_call_batches_created_at`` (with a margin for writes that waited in a queue); every read here walks only
  the groups and records of its range (primary-key ranges) and then checks ``created_at`` exactly.
- **Whose.** A batch names its account, but no index leads with it: listing an account's batches walks the batch
  rows of the range (every account's, R2 groups too) and keeps its own. An R2 group has no account at all: a valid
  record is the account's when its text's label is (a label is only ever used by its own account, SPEC §7.1 #3);
  R2 records refused by validation name no label that can be trusted and are not listed (the API answered them).
- **Search** by number: ``personalisation.record_search``.

What that costs (2.2 million records in 24,000 groups; SQLite on a quiet machine, PostgreSQL alike): a page of batches
9-36 ms, real-time records 40-100 ms (1,700-10,000 of the account's in the range). Both grow with every account's
groups in the date range, not with the account's own: at 300,000 B2 records a minute (600 batches), a week is 6
million groups and a page takes seconds. A partial index ``call_batches (account_id, key)`` for batches with an
account would make the batch list cost the account's own (a fraction of a byte per B2 record, ~40 bytes per R1).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, func, literal_column, or_, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement, Select

from callerid.db import Database
from callerid.db.base import UuidText
from callerid.labels.shared import LABELS
from callerid.personalisation.models import (
    DELIVERED_STATE,
    GROUP_SPAN,
    INVALID_INPUT,
    INVALID_STATE,
    OUTCOME_STATES,
    PENDING_STATE,
    REASON_OF_STATE,
    CallBatch,
    CallBatchText,
    CallRecord,
    first_id,
    group_key_of,
    record_uuid,
)
from callerid.personalisation.outcomes import outcomes_by_position
from callerid.personalisation.reading import batch_records
from callerid.timefmt import from_epoch_ms

_BATCHES = CallBatch.__table__
_TEXTS = CallBatchText.__table__
_RECORDS = CallRecord.__table__
_SPAN = literal_column(str(GROUP_SPAN), BigInteger)

# What the console calls a record's outcome (SPEC §8, and the two states before one).
PENDING = "pending"
DELIVERED = "delivered"
OUTCOMES = (DELIVERED, PENDING, INVALID_INPUT, *OUTCOME_STATES)
OUTCOME_TITLES = {
    DELIVERED: "Delivered",
    PENDING: "Pending",
    INVALID_INPUT: "Invalid input",
    "not_app_user": "Not an app user",
    "os_not_supported": "OS not supported",
    "app_version_not_supported": "App version not supported",
    "failed_to_push": "Failed to push",
}
# An R2 record keeps its outcome as its state (a batch's records: in the batch's ``outcomes``).
_OUTCOME_OF_STATE = {DELIVERED_STATE: DELIVERED, PENDING_STATE: PENDING, INVALID_STATE: INVALID_INPUT}
_OUTCOME_OF_STATE.update(REASON_OF_STATE)
STATE_OF_REALTIME_OUTCOME = {DELIVERED: DELIVERED_STATE, **OUTCOME_STATES}

# A group's key is given when its row is written, its created_at just before (a batch) or when its group commit is
# built (R2): a write that waited longer than this in a queue could fall outside the key range of its time.
KEY_MARGIN = timedelta(minutes=10)
# Rows fetched per round trip while streaming a CSV.
STREAM_ROWS = 1000


@dataclass(frozen=True)
class KeyRange:
    """The group keys of a time range: ``low <= key < high`` (no upper bound when ``high`` is None)."""

    low: int
    high: int | None

    def holds(self, key: ColumnElement[int]) -> list[ColumnElement[bool]]:
        return [key >= self.low] if self.high is None else [key >= self.low, key < self.high]


# The key of the first group created at or after ``at`` (ix_call_batches_created_at).
_FIRST_KEY_FROM = (
    select(_BATCHES.c.key)
    .where(_BATCHES.c.created_at >= bindparam("at", type_=_BATCHES.c.created_at.type))
    .order_by(_BATCHES.c.created_at)
    .limit(1)
)


async def key_range(session: AsyncSession, start: datetime, end: datetime) -> KeyRange | None:
    """The group keys of groups created in ``[start, end)`` (a little wider); None when no group is that recent."""

    low: int | None = await session.scalar(_FIRST_KEY_FROM, {"at": start - KEY_MARGIN})
    if low is None:
        return None
    high: int | None = await session.scalar(_FIRST_KEY_FROM, {"at": end + KEY_MARGIN})
    return KeyRange(low, high)


# --- batches ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSummary:
    """One B1/B2 batch (R1: of one record) with its records counted by outcome."""

    key: int
    id: uuid.UUID
    version: str
    record_count: int
    created_at: datetime
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def delivered(self) -> bool:
        """No record waits for delivery any more."""
        return not self.counts.get(PENDING)


def _batch_where(account_id: uuid.UUID, keys: KeyRange, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    b = _BATCHES.c
    return [*keys.holds(b.key), b.account_id == account_id, b.created_at >= start, b.created_at < end]


_BATCH_COLUMNS = (
    _BATCHES.c.key,
    _BATCHES.c.id,
    _BATCHES.c.version,
    _BATCHES.c.record_count,
    _BATCHES.c.created_at,
    _BATCHES.c.outcomes,
)


async def _summaries(session: AsyncSession, rows: Sequence[Any]) -> list[BatchSummary]:
    """Counts by outcome: delivery outcomes from each batch's ``outcomes``, the invalid records counted in its key
    range (a primary-key range of at most ``batch_max_records`` rows), the rest pending."""
    if not rows:
        return []
    # One count per batch, as a correlated sub-select: a primary-key range scan each. As a join, PostgreSQL chose to
    # read the whole records table for the few invalid ones (118 ms on a million records, growing with the table).
    key = _BATCHES.c.key
    invalid_count = (
        select(func.count())
        .where(_RECORDS.c.id >= key * _SPAN, _RECORDS.c.id < (key + 1) * _SPAN, _RECORDS.c.state == INVALID_STATE)
        .correlate(_BATCHES)
        .scalar_subquery()
    )
    invalid_query = select(key, invalid_count).where(key.in_([row.key for row in rows]))
    invalid = {key: count for key, count in (await session.execute(invalid_query)).all()}
    summaries = []
    for row in rows:
        counts: dict[str, int] = {}
        if invalid.get(row.key):
            counts[INVALID_INPUT] = invalid[row.key]
        for reason, _message, ranges in row.outcomes or ():
            outcome = DELIVERED if reason is None else reason
            covered = sum(stop - start for start, stop in zip(ranges[::2], ranges[1::2], strict=True))
            counts[outcome] = counts.get(outcome, 0) + covered
        pending = row.record_count - sum(counts.values())
        if pending > 0:
            counts[PENDING] = pending
        summaries.append(BatchSummary(row.key, row.id, row.version, row.record_count, row.created_at, counts))
    return summaries


async def list_batches(
    session: AsyncSession,
    account_id: uuid.UUID,
    start: datetime,
    end: datetime,
    *,
    limit: int | None,
    offset: int = 0,
) -> tuple[list[BatchSummary], int]:
    """The account's batches created in ``[start, end)``, newest first, and how many there are."""
    keys = await key_range(session, start, end)
    if keys is None:
        return [], 0
    where = _batch_where(account_id, keys, start, end)
    total = await session.scalar(select(func.count()).select_from(_BATCHES).where(*where)) or 0
    query = select(*_BATCH_COLUMNS).where(*where).order_by(_BATCHES.c.key.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = (await session.execute(query)).all() if total > offset else []
    return await _summaries(session, rows), total


async def each_batch(
    db: Database, account_id: uuid.UUID, start: datetime, end: datetime, *, chunk: int = 500
) -> AsyncIterator[BatchSummary]:
    """Every batch of ``list_batches``, newest first, read ``chunk`` at a time (each chunk goes on below the last
    key of the one before, so the range is walked once)."""
    async with db.session() as session:
        keys = await key_range(session, start, end)
        if keys is None:
            return
        where = _batch_where(account_id, keys, start, end)
        before: int | None = None
        while True:
            query = select(*_BATCH_COLUMNS).where(*where).order_by(_BATCHES.c.key.desc()).limit(chunk)
            if before is not None:
                query = query.where(_BATCHES.c.key < before)
            rows = (await session.execute(query)).all()
            for summary in await _summaries(session, rows):
                yield summary
            if len(rows) < chunk:
                return
            before = rows[-1].key


async def get_batch(session: AsyncSession, account_id: uuid.UUID, batch_id: uuid.UUID) -> BatchSummary | None:
    """The account's batch ``batch_id`` (unique index), or None: unknown and another account's look the same."""
    query = select(*_BATCH_COLUMNS).where(_BATCHES.c.id == batch_id, _BATCHES.c.account_id == account_id)
    row = (await session.execute(query)).first()
    if row is None:
        return None
    return (await _summaries(session, [row]))[0]


# --- records ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityRecord:
    """A call record as the console shows it: values as stored (a record refused by validation: as sent, any JSON
    value), its outcome (``OUTCOMES``) and why."""

    ref: int  # the record's internal id (group key and position): the console's address for it
    position: int
    batch_id: uuid.UUID | None  # None: a real-time (R2) record
    record_id: str | None  # the id S1/S2 show; R2 records have none (their push message's id is not stored)
    values: dict[str, Any]  # caller, receiver, label_id, label_name, call_reason, starts_at, ends_at
    outcome: str
    field: str | None
    message: str | None
    created_at: datetime

    def time(self, name: str) -> datetime | None:
        """``starts_at`` / ``ends_at`` as a time, when it is epoch milliseconds a datetime holds."""
        value = self.values.get(name)
        if type(value) is not int or not 0 <= value <= 253_402_300_799_999:
            return None
        return from_epoch_ms(value)

    def text(self, name: str) -> str:
        value = self.values.get(name)
        return "" if value is None else str(value)


def _outcome_of(status: str, reason: str | None) -> str:
    if status == "pending":
        return PENDING
    return DELIVERED if status == "success" else (reason or INVALID_INPUT)


async def records_of_batch(session: AsyncSession, account_id: uuid.UUID, batch: BatchSummary) -> list[ActivityRecord]:
    """Every record of the account's batch in submission order, as S1/S2 read them (``reading.batch_records``)."""
    stored = await batch_records(session, account_id, batch.id)
    first = first_id(batch.key)
    return [
        ActivityRecord(
            ref=first + position,
            position=position,
            batch_id=batch.id,
            record_id=record.id,
            values=record.values,
            outcome=_outcome_of(record.status, record.reason),
            field=record.field,
            message=record.message,
            created_at=record.created_at,
        )
        for position, record in enumerate(stored)
    ]


# A record with its group and (valid records) its text and label.
RECORD_COLUMNS = (
    _RECORDS.c.id,
    _RECORDS.c.caller,
    _RECORDS.c.receiver,
    _RECORDS.c.starts_at,
    _RECORDS.c.ends_at,
    _RECORDS.c.state,
    _RECORDS.c.problem,
    _RECORDS.c.legacy_id,
    type_coerce(_TEXTS.c.label_id, UuidText()).label("label_id"),
    _TEXTS.c.label_name,
    _TEXTS.c.call_reason,
    _BATCHES.c.key,
    _BATCHES.c.id.label("group_id"),
    _BATCHES.c.account_id.label("batch_account_id"),
    _BATCHES.c.created_at,
    _BATCHES.c.outcomes,
)
# ``display + 0``: no index can serve it, so SQLite reads records by their key range instead of building an
# automatic index on ``display`` over the whole table first (12 s instead of 10 ms on 2 million records).
TEXT_OF_RECORD = and_(_TEXTS.c.batch_key == _BATCHES.c.key, _TEXTS.c.number == _RECORDS.c.display + 0)


def record_of(row: Any, outcomes: dict[int, dict[int, tuple[str | None, str | None]]]) -> ActivityRecord:
    """An ActivityRecord from a ``RECORD_COLUMNS`` row; ``outcomes`` caches each batch's decoded outcomes."""
    first = first_id(row.key)
    position = row.id - first
    is_batch = row.batch_account_id is not None
    field_name = message = None
    if row.state == INVALID_STATE:
        problem = row.problem or {}
        values = dict(problem.get("sent") or {})
        outcome, field_name, message = INVALID_INPUT, problem.get("field"), problem.get("message")
    else:
        values = {
            "caller": str(row.caller),
            "receiver": str(row.receiver),
            "label_id": row.label_id,
            "label_name": row.label_name,
            "call_reason": row.call_reason,
            "starts_at": row.starts_at,
            "ends_at": row.ends_at,
        }
        outcome = _OUTCOME_OF_STATE[row.state]
        if is_batch and row.state == PENDING_STATE and row.outcomes is not None:
            decoded = outcomes.get(row.key)
            if decoded is None:
                decoded = outcomes[row.key] = outcomes_by_position(row.outcomes)
            reason, message = decoded.get(position, (None, None))
            outcome = DELIVERED if reason is None else reason
    record_id = None
    if is_batch:
        record_id = str(row.legacy_id) if row.legacy_id is not None else record_uuid(row.group_id, position)
    return ActivityRecord(
        ref=row.id,
        position=position,
        batch_id=row.group_id if is_batch else None,
        record_id=record_id,
        values=values,
        outcome=outcome,
        field=field_name,
        message=message,
        created_at=row.created_at,
    )


def _records_query(source: Any) -> Select[Any]:
    """``RECORD_COLUMNS`` of the records ``source`` (a FROM holding ``_RECORDS``) joined to their group and text."""
    return select(*RECORD_COLUMNS).select_from(
        source.join(_BATCHES, _BATCHES.c.key == group_key_of(_RECORDS.c.id))
        .outerjoin(_TEXTS, TEXT_OF_RECORD)
        .outerjoin(LABELS, LABELS.c.id == _TEXTS.c.label_id)
    )


async def get_record(session: AsyncSession, account_id: uuid.UUID, ref: int) -> ActivityRecord | None:
    """Record ``ref`` when it is the account's: in one of its batches, or a valid R2 record with one of its labels."""
    query = _records_query(_RECORDS).where(
        _RECORDS.c.id == ref,
        or_(
            _BATCHES.c.account_id == account_id,
            and_(_BATCHES.c.account_id.is_(None), LABELS.c.account_id == account_id),
        ),
    )
    row = (await session.execute(query)).first()
    return None if row is None else record_of(row, {})


@dataclass(frozen=True)
class RecordPage:
    records: list[ActivityRecord]
    total: int
    counts: dict[str, int] = field(default_factory=dict)  # by outcome, over the whole range


def _realtime_source(account_id: uuid.UUID, keys: KeyRange, start: datetime, end: datetime) -> tuple[Any, Any]:
    """The FROM and WHERE of the account's valid R2 records of ``[start, end)``: the R2 groups of the time range
    (every account's: an R2 group has none), each group's texts whose label is the account's, and only then those
    texts' records (a primary-key range per group)."""
    b = _BATCHES.c
    in_group = and_(_RECORDS.c.id >= b.key * _SPAN, _RECORDS.c.id < (b.key + 1) * _SPAN)
    source = (
        _BATCHES.join(_RECORDS, in_group).join(_TEXTS, TEXT_OF_RECORD).join(LABELS, LABELS.c.id == _TEXTS.c.label_id)
    )
    mine = and_(
        *keys.holds(b.key),
        b.account_id.is_(None),
        b.created_at >= start,
        b.created_at < end,
        LABELS.c.account_id == account_id,
    )
    return source, mine


def _realtime_query(source: Any, mine: Any, outcome: str | None) -> Select[Any]:
    query = select(*RECORD_COLUMNS).select_from(source).where(mine)
    if outcome is not None:
        query = query.where(_RECORDS.c.state == STATE_OF_REALTIME_OUTCOME[outcome])
    return query.order_by(_RECORDS.c.id.desc())


async def realtime_records(
    session: AsyncSession,
    account_id: uuid.UUID,
    start: datetime,
    end: datetime,
    *,
    outcome: str | None = None,
    limit: int,
    offset: int = 0,
) -> RecordPage:
    """A page of the account's valid R2 records of ``[start, end)`` (with ``outcome`` only, unless None), newest
    first, with the range's counts by outcome."""
    keys = await key_range(session, start, end)
    if keys is None:
        return RecordPage([], 0)
    source, mine = _realtime_source(account_id, keys, start, end)
    by_state = (
        await session.execute(
            select(_RECORDS.c.state, func.count()).select_from(source).where(mine).group_by(_RECORDS.c.state)
        )
    ).all()
    counts = {_OUTCOME_OF_STATE[state]: count for state, count in by_state if state in _OUTCOME_OF_STATE}
    total = counts.get(outcome, 0) if outcome is not None else sum(counts.values())
    if total <= offset:
        return RecordPage([], total, counts)
    rows = (await session.execute(_realtime_query(source, mine, outcome).offset(offset).limit(limit))).all()
    return RecordPage([record_of(row, {}) for row in rows], total, counts)


async def each_realtime_record(
    db: Database, account_id: uuid.UUID, start: datetime, end: datetime, *, outcome: str | None = None
) -> AsyncIterator[ActivityRecord]:
    """Every record of ``realtime_records``, newest first, streamed (one pass over the range)."""
    async with db.session() as session:
        keys = await key_range(session, start, end)
        if keys is None:
            return
        source, mine = _realtime_source(account_id, keys, start, end)
        query = _realtime_query(source, mine, outcome).execution_options(yield_per=STREAM_ROWS)
        async for row in await session.stream(query):
            yield record_of(row, {})
