"""Reading call records: a batch's records (S1/S2) and the identity a receiver should see for a call (SPEC §6)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, column, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.db import Database
from callerid.db.base import UuidText
from callerid.db.keyedreads import KeyedQuery
from callerid.db.values import rows_values
from callerid.labels.shared import LABELS
from callerid.personalisation.models import CallRecord
from callerid.personalisation.rules import epoch_ms
from callerid.personalisation.schemas import StoredRecord
from callerid.phone import normalise_phone

_RECORDS = CallRecord.__table__.c
RECORDS_WITH_LABELS = CallRecord.__table__.join(LABELS, LABELS.c.id == _RECORDS.label_id)


async def batch_records(session: AsyncSession, account_id: uuid.UUID, batch_id: uuid.UUID) -> list[StoredRecord]:
    """A batch's records in submission order; empty for an unknown batch or another account's."""
    records = CallRecord.__table__.c
    rows = (
        await session.execute(
            select(CallRecord.__table__)
            .where(records.batch_id == batch_id, records.account_id == account_id)
            .order_by(records.position)
        )
    ).all()
    return [_stored(row) for row in rows]


def _stored(row: Any) -> StoredRecord:
    if row.sent is not None:
        values = dict(row.sent)
    else:
        values = {
            "caller": row.caller,
            "receiver": row.receiver,
            "label_id": str(row.label_id) if row.label_id is not None else None,
            "label_name": row.label_name,
            "call_reason": row.call_reason,
            "starts_at": row.starts_at,
            "ends_at": row.ends_at,
        }
    return StoredRecord(
        id=str(row.id),
        account_id=str(row.account_id),
        batch_id=str(row.batch_id) if row.batch_id is not None else None,
        values=values,
        status=row.status,
        reason=row.reason,
        field=row.field,
        message=row.message,
        created_at=row.created_at,
    )


@dataclass(frozen=True)
class ActiveIdentity:
    """What a receiver's phone shows for a call from ``caller`` (SPEC §6)."""

    record_id: str
    label_id: str
    name: str
    logo_key: str
    call_reason: str | None
    starts_at: int  # epoch ms
    ends_at: int  # epoch ms


_IDENTITY_COLUMNS = (
    type_coerce(_RECORDS.id, UuidText()).label("id"),  # text: they only go out again as text
    type_coerce(_RECORDS.label_id, UuidText()).label("label_id"),
    _RECORDS.label_name,
    LABELS.c.logo_key,
    _RECORDS.call_reason,
    _RECORDS.starts_at,
    _RECORDS.ends_at,
)


def _newest_usable(caller: Any, receiver: Any, at_ms: Any) -> Any:
    """Conditions and order of the newest valid record of a pair whose window holds ``at_ms``. Records that failed
    validation have NULL caller/receiver and never match; the pair index orders them (created_at, position)."""
    return (
        (
            _RECORDS.caller == caller,
            _RECORDS.receiver == receiver,
            _RECORDS.starts_at <= at_ms,
            _RECORDS.ends_at >= at_ms,
        ),
        (_RECORDS.created_at.desc(), _RECORDS.position.desc()),
    )


def _active_identity_one() -> Any:
    at_ms = bindparam("at_ms", type_=_RECORDS.starts_at.type)
    where, order = _newest_usable(bindparam("caller"), bindparam("receiver"), at_ms)
    return select(*_IDENTITY_COLUMNS).select_from(RECORDS_WITH_LABELS).where(*where).order_by(*order).limit(1)


def _active_identity_many() -> Any:
    pairs = rows_values(
        "pairs",
        column("caller", _RECORDS.caller.type),
        column("receiver", _RECORDS.receiver.type),
        column("at_ms", _RECORDS.starts_at.type),
    )
    where, order = _newest_usable(pairs.c.caller, pairs.c.receiver, pairs.c.at_ms)
    newest = select(_RECORDS.id).where(*where).order_by(*order).limit(1).correlate(pairs).scalar_subquery()
    return (
        select(pairs.c.caller, pairs.c.receiver, pairs.c.at_ms, *_IDENTITY_COLUMNS)
        .select_from(pairs)
        .join(RECORDS_WITH_LABELS, _RECORDS.id == newest)
    )


# Built once: the caller-ID lookup runs it on every call; lookups that arrive together share one statement where a
# read costs a round trip (PostgreSQL).
_ACTIVE_IDENTITY = KeyedQuery(
    one=_active_identity_one(), many=_active_identity_many(), parameter="pairs", key=("caller", "receiver", "at_ms")
)


async def active_identity(db: Database, caller: str, receiver: str, at: datetime) -> ActiveIdentity | None:
    """The newest valid record for the pair whose window contains ``at`` (SPEC §6.1-6.2), or None.

    Hot path: one indexed query on (caller, receiver, created_at).
    """
    caller_number = normalise_phone(caller)
    receiver_number = normalise_phone(receiver)
    if caller_number is None or receiver_number is None:
        return None
    rows = await db.read_keyed(_ACTIVE_IDENTITY, [(caller_number, receiver_number, epoch_ms(at))])
    if not rows:
        return None
    row = rows[0]
    return ActiveIdentity(
        record_id=row.id,
        label_id=row.label_id,
        name=row.label_name,
        logo_key=row.logo_key,
        call_reason=row.call_reason,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
    )
