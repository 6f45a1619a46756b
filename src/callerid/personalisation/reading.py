"""Reading call records: a batch's records (S1/S2) and the identity a receiver should see for a call (SPEC §6)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.db.base import UuidText
from callerid.labels.shared import LABELS
from callerid.personalisation.models import CallRecord
from callerid.personalisation.rules import epoch_ms
from callerid.personalisation.schemas import StoredRecord
from callerid.phone import normalise_phone

RECORDS_WITH_LABELS = CallRecord.__table__.join(LABELS, LABELS.c.id == CallRecord.__table__.c.label_id)


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


def _active_identity_query() -> Any:
    records = CallRecord.__table__.c
    at_ms = bindparam("at_ms", type_=records.starts_at.type)
    return (
        select(
            type_coerce(records.id, UuidText()).label("id"),  # text: they only go out again as text
            type_coerce(records.label_id, UuidText()).label("label_id"),
            records.label_name,
            LABELS.c.logo_key,
            records.call_reason,
            records.starts_at,
            records.ends_at,
        )
        .select_from(RECORDS_WITH_LABELS)
        .where(
            records.caller == bindparam("caller"),
            records.receiver == bindparam("receiver"),
            records.starts_at <= at_ms,
            records.ends_at >= at_ms,
        )
        .order_by(records.created_at.desc(), records.position.desc())
        .limit(1)
    )


# Built once: the caller-ID lookup runs it on every call.
_ACTIVE_IDENTITY = _active_identity_query()


async def active_identity(session: AsyncSession, caller: str, receiver: str, at: datetime) -> ActiveIdentity | None:
    """The newest valid record for the pair whose window contains ``at`` (SPEC §6.1-6.2), or None.

    Hot path: one indexed query on (caller, receiver, created_at); records that failed validation have
    NULL caller/receiver and never match.
    """
    caller_number = normalise_phone(caller)
    receiver_number = normalise_phone(receiver)
    if caller_number is None or receiver_number is None:
        return None
    at_ms = epoch_ms(at)
    params = {"caller": caller_number, "receiver": receiver_number, "at_ms": at_ms}
    row = (await session.execute(_ACTIVE_IDENTITY, params)).first()
    if row is None:
        return None
    return ActiveIdentity(
        record_id=row.id,
        label_id=row.label_id,
        name=row.label_name,
        logo_key=row.logo_key,
        call_reason=row.call_reason,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
    )
