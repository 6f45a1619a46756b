"""Reading call records: a batch's records (S1/S2) and the identity a receiver should see for a call (SPEC §6)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, column, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.db import Database
from callerid.db.base import UuidText
from callerid.db.keyedreads import KeyedQuery
from callerid.db.values import rows_values
from callerid.labels.shared import LABELS
from callerid.personalisation.models import (
    DELIVERED_STATE,
    ERROR,
    INVALID_INPUT,
    INVALID_STATE,
    PENDING,
    PENDING_STATE,
    REASON_OF_STATE,
    SUCCESS,
    CallBatch,
    CallBatchText,
    CallRecord,
    first_id,
    group_key_of,
    record_uuid,
)
from callerid.personalisation.outcomes import Outcome, outcomes_by_position
from callerid.personalisation.rules import epoch_ms
from callerid.personalisation.schemas import StoredRecord
from callerid.phone import normalise_phone

_BATCHES = CallBatch.__table__
_TEXTS = CallBatchText.__table__
_RECORDS = CallRecord.__table__

# A record with what it shows: its group's text, and the text's label (for the logo).
RECORDS_WITH_TEXTS = _RECORDS.join(
    _TEXTS, and_(_TEXTS.c.batch_key == group_key_of(_RECORDS.c.id), _TEXTS.c.number == _RECORDS.c.display)
).join(LABELS, LABELS.c.id == _TEXTS.c.label_id)

# A group's records: its key range, in submission order (the primary key's order).
IN_GROUP = and_(
    _RECORDS.c.id >= bindparam("first_id", type_=BigInteger), _RECORDS.c.id < bindparam("stop_id", type_=BigInteger)
)

_BATCH = select(_BATCHES.c.key, _BATCHES.c.created_at, _BATCHES.c.outcomes).where(
    _BATCHES.c.id == bindparam("batch_id"), _BATCHES.c.account_id == bindparam("account_id")
)
_BATCH_TEXTS = select(
    _TEXTS.c.number,
    type_coerce(_TEXTS.c.label_id, UuidText()).label("label_id"),
    _TEXTS.c.label_name,
    _TEXTS.c.call_reason,
).where(_TEXTS.c.batch_key == bindparam("key"))
_BATCH_RECORDS = select(_RECORDS).where(IN_GROUP).order_by(_RECORDS.c.id)


def group_range(key: int) -> dict[str, int]:
    """The bind values of ``IN_GROUP`` for group ``key``."""
    first = first_id(key)
    return {"first_id": first, "stop_id": first_id(key + 1)}


async def batch_records(session: AsyncSession, account_id: uuid.UUID, batch_id: uuid.UUID) -> list[StoredRecord]:
    """A batch's records in submission order; empty for an unknown batch or another account's."""
    batch = (await session.execute(_BATCH, {"batch_id": batch_id, "account_id": account_id})).first()
    if batch is None:
        return []
    rows = (await session.execute(_BATCH_RECORDS, group_range(batch.key))).all()
    texts = {row.number: row for row in (await session.execute(_BATCH_TEXTS, {"key": batch.key})).all()}
    outcomes = outcomes_by_position(batch.outcomes)
    first = first_id(batch.key)
    account, batch_text = str(account_id), str(batch_id)
    stored = []
    for row in rows:
        position = row.id - first
        record_id = str(row.legacy_id) if row.legacy_id is not None else record_uuid(batch_id, position)
        stored.append(_stored(row, record_id, account, batch_text, texts, outcomes.get(position), batch.created_at))
    return stored


def _stored(
    row: Any,
    record_id: str,
    account_id: str,
    batch_id: str,
    texts: dict[int, Any],
    outcome: Outcome | None,
    created_at: datetime,
) -> StoredRecord:
    field = message = reason = None
    if row.state == INVALID_STATE:
        problem = row.problem
        values = dict(problem["sent"])
        status, reason, field, message = ERROR, INVALID_INPUT, problem["field"], problem["message"]
    else:
        text = texts[row.display]
        values = {
            "caller": str(row.caller),
            "receiver": str(row.receiver),
            "label_id": text.label_id,
            "label_name": text.label_name,
            "call_reason": text.call_reason,
            "starts_at": row.starts_at,
            "ends_at": row.ends_at,
        }
        if row.state == PENDING_STATE:
            if outcome is None:
                status = PENDING
            else:
                reason, message = outcome
                status = SUCCESS if reason is None else ERROR
        elif row.state == DELIVERED_STATE:
            status = SUCCESS
        else:  # an R2 record's outcome (status queries never reach R2 records: they have no batch)
            status, reason = ERROR, REASON_OF_STATE[row.state]
    return StoredRecord(
        id=record_id,
        account_id=account_id,
        batch_id=batch_id,
        values=values,
        status=status,
        reason=reason,
        field=field,
        message=message,
        created_at=created_at,
    )


@dataclass(frozen=True)
class ActiveIdentity:
    """What a receiver's phone shows for a call from ``caller`` (SPEC §6)."""

    label_id: str
    name: str
    logo_key: str
    call_reason: str | None
    starts_at: int  # epoch ms
    ends_at: int  # epoch ms
    # Which record and whose label (call signals link to them, callerid.analytics.signals); the lookup ignores them.
    record_id: int | None = None
    account_id: uuid.UUID | None = None


_IDENTITY_COLUMNS = (
    type_coerce(_TEXTS.c.label_id, UuidText()).label("label_id"),  # text: it only goes out again as text
    _TEXTS.c.label_name,
    LABELS.c.logo_key,
    _TEXTS.c.call_reason,
    _RECORDS.c.starts_at,
    _RECORDS.c.ends_at,
    _RECORDS.c.id.label("record_id"),
    LABELS.c.account_id.label("label_account_id"),
)


def _newest_usable(caller: Any, receiver: Any, at_ms: Any) -> Any:
    """Conditions and order of the newest valid record of a pair whose window holds ``at_ms``: the pair's index
    entries walked newest first (ids grow in arrival order). Records that failed validation have NULL
    caller/receiver and never match."""
    records = _RECORDS.c
    return (
        (records.caller == caller, records.receiver == receiver, records.starts_at <= at_ms, records.ends_at >= at_ms),
        (records.id.desc(),),
    )


def _active_identity_one() -> Any:
    where, order = _newest_usable(
        bindparam("caller", type_=BigInteger), bindparam("receiver", type_=BigInteger), bindparam("at_ms", BigInteger)
    )
    return select(*_IDENTITY_COLUMNS).select_from(RECORDS_WITH_TEXTS).where(*where).order_by(*order).limit(1)


def _active_identity_many() -> Any:
    pairs = rows_values(
        "pairs", column("caller", BigInteger), column("receiver", BigInteger), column("at_ms", BigInteger)
    )
    where, order = _newest_usable(pairs.c.caller, pairs.c.receiver, pairs.c.at_ms)
    newest = select(_RECORDS.c.id).where(*where).order_by(*order).limit(1).correlate(pairs).scalar_subquery()
    return (
        select(pairs.c.caller, pairs.c.receiver, pairs.c.at_ms, *_IDENTITY_COLUMNS)
        .select_from(pairs)
        .join(RECORDS_WITH_TEXTS, _RECORDS.c.id == newest)
    )


# Built once: the caller-ID lookup runs it on every call; lookups that arrive together share one statement where a
# read costs a round trip (PostgreSQL).
_ACTIVE_IDENTITY = KeyedQuery(
    one=_active_identity_one(), many=_active_identity_many(), parameter="pairs", key=("caller", "receiver", "at_ms")
)


async def active_identity(db: Database, caller: str, receiver: str, at: datetime) -> ActiveIdentity | None:
    """The newest valid record for the pair whose window contains ``at`` (SPEC §6.1-6.2), or None.

    Hot path: one query walking the pair's index entries newest first (ids grow in arrival order); records that
    failed validation have NULL caller/receiver and never match.
    """
    caller_number = normalise_phone(caller)
    receiver_number = normalise_phone(receiver)
    if caller_number is None or receiver_number is None:
        return None
    key = (int(caller_number), int(receiver_number), epoch_ms(at))
    rows = await db.read_keyed(_ACTIVE_IDENTITY, [key])
    if not rows:
        return None
    row = rows[0]
    return ActiveIdentity(
        label_id=row.label_id,
        name=row.label_name,
        logo_key=row.logo_key,
        call_reason=row.call_reason,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        record_id=row.record_id,
        account_id=row.label_account_id,
    )
