"""Fixtures for call-personalisation tests: a pinned clock, labels, and request-body builders."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.labels import service as labels
from callerid.labels.models import Label
from callerid.personalisation.models import (
    DELIVERED_STATE,
    ERROR,
    GROUP_SPAN,
    INVALID_INPUT,
    INVALID_STATE,
    PENDING,
    PENDING_STATE,
    REASON_OF_STATE,
    SUCCESS,
    CallBatch,
    CallBatchText,
    CallRecord,
    group_key_of,
    record_uuid,
)
from callerid.personalisation.outcomes import outcomes_by_position
from callerid.personalisation.service import epoch_ms
from tests.conftest import Tenant, create_tenant
from tests.labels.images import image_bytes

CALLER = "911234567890"
RECEIVER = "919876543210"
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@pytest.fixture(autouse=True)
def now() -> Iterator[datetime]:
    """Pin "now" to the current second (so freshly minted tokens stay valid)."""
    pinned = clock.now().replace(microsecond=0)
    clock.freeze(pinned)
    yield pinned
    clock.reset()


@pytest.fixture
def now_ms(now: datetime) -> int:
    return epoch_ms(now)


async def add_label(
    db: Database, settings: Settings, account_id: uuid.UUID, name: str = "FlowerEra", label_type: str = "dynamic"
) -> Label:
    async with db.transaction() as session:
        return await labels.create_label(
            session, settings, account_id=account_id, name=name, logo=image_bytes(), label_type=label_type
        )


@pytest.fixture
async def label(db: Database, settings: Settings, tenant: Tenant) -> Label:
    return await add_label(db, settings, tenant.account_id)


@pytest.fixture
async def static_label(db: Database, settings: Settings, tenant: Tenant) -> Label:
    return await add_label(db, settings, tenant.account_id, "Static Label", label_type="static")


@pytest.fixture
async def foreign_label(db: Database, settings: Settings) -> Label:
    other = await create_tenant(db, settings, name="Other Co")
    return await add_label(db, settings, other.account_id, "Not Yours")


def record_v2(label: Label, now_ms: int, **changes: Any) -> dict[str, Any]:
    """A valid v2 record; ``changes`` override fields, a value of ``...`` removes the field."""
    record: dict[str, Any] = {
        "label_id": str(label.id),
        "dynamic_label_name": "Flower rasm",
        "dynamic_call_reason": "Flower Delivery",
        "caller_number": CALLER,
        "receiver_number": RECEIVER,
        "starts_at": now_ms - 1000,
        "ends_at": now_ms + HOUR_MS,
    }
    return _apply(record, changes)


def record_v1(label: Label, now_ms: int, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "label_id": str(label.id),
        "label_name": "Flower rasm",
        "call_reason": "Flower Delivery",
        "caller": CALLER,
        "receiver": RECEIVER,
        "starts_at": now_ms - 1000,
        "ends_at": now_ms + HOUR_MS,
    }
    return _apply(record, changes)


def _apply(record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if value is ...:
            record.pop(key, None)
        else:
            record[key] = value
    return record


@dataclass(frozen=True)
class StoredRow:
    """A call record as stored, decoded (callerid.personalisation.models): numbers as text, codes as names."""

    id: uuid.UUID | None  # the public id (None: an R2 record, whose id only its push message had)
    batch_id: uuid.UUID | None  # None: an R2 record
    position: int
    version: str
    caller: str | None
    receiver: str | None
    label_id: uuid.UUID | None
    label_name: str | None
    call_reason: str | None
    starts_at: int | None
    ends_at: int | None  # None for an invalid record
    status: str
    reason: str | None
    field: str | None
    message: str | None  # None for an R2 record's outcome (not stored: R2 records are never shown again)
    sent: dict[str, Any] | None


async def stored_records(db: Database) -> list[StoredRow]:
    """Every call record, in arrival order."""
    records, groups, texts = CallRecord.__table__, CallBatch.__table__, CallBatchText.__table__
    joined = records.join(groups, groups.c.key == group_key_of(records.c.id)).outerjoin(
        texts, (texts.c.batch_key == groups.c.key) & (texts.c.number == records.c.display)
    )
    query = select(
        records, groups.c.id.label("group_id"), groups.c.account_id, groups.c.version, groups.c.outcomes
    ).add_columns(texts.c.label_id, texts.c.label_name, texts.c.call_reason)
    async with db.session() as session:
        rows = (await session.execute(query.select_from(joined).order_by(records.c.id))).all()
    return [_decoded(row) for row in rows]


def _decoded(row: Any) -> StoredRow:
    batch = row.account_id is not None
    position = row.id % GROUP_SPAN
    status, reason, field, message, sent = ERROR, None, None, None, None
    if row.state == INVALID_STATE:
        reason, field, message, sent = INVALID_INPUT, row.problem["field"], row.problem["message"], row.problem["sent"]
    elif row.state == PENDING_STATE:
        outcome = outcomes_by_position(row.outcomes).get(position)
        if outcome is None:
            status = PENDING
        else:
            reason, message = outcome
            status = SUCCESS if reason is None else ERROR
    elif row.state == DELIVERED_STATE:
        status = SUCCESS
    else:
        reason = REASON_OF_STATE[row.state]
    public_id = row.legacy_id or (uuid.UUID(record_uuid(row.group_id, position)) if batch else None)
    return StoredRow(
        id=public_id,
        batch_id=row.group_id if batch else None,
        position=position,
        version=row.version,
        caller=None if row.caller is None else str(row.caller),
        receiver=None if row.receiver is None else str(row.receiver),
        label_id=row.label_id,
        label_name=row.label_name,
        call_reason=row.call_reason,
        starts_at=row.starts_at,
        ends_at=None if row.state == INVALID_STATE else row.ends_at,
        status=status,
        reason=reason,
        field=field,
        message=message,
        sent=sent,
    )


async def stored_batches(db: Database) -> list[CallBatch]:
    """The batches of B1/B2/R1 requests (not the groups of R2 records, which have no account)."""
    async with db.session() as session:
        return list((await session.scalars(select(CallBatch).where(CallBatch.account_id.is_not(None)))).all())


async def s2(client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], batch_id: str) -> dict[str, Any]:
    response = await client.get(
        f"/v2/clients/{tenant.account_id}/dynamic_call_records?batchId={batch_id}", headers=auth
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def s1(client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], batch_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/clients/{tenant.account_id}/dynamic_call_records?batchId={batch_id}", headers=auth)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body
