"""Fixtures for call-personalisation tests: a pinned clock, labels, and request-body builders."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
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
from callerid.personalisation.models import CallBatch, CallRecord
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


async def stored_records(db: Database) -> list[CallRecord]:
    async with db.session() as session:
        rows = await session.scalars(select(CallRecord).order_by(CallRecord.created_at, CallRecord.position))
        return list(rows.all())


async def stored_batches(db: Database) -> list[CallBatch]:
    async with db.session() as session:
        return list((await session.scalars(select(CallBatch))).all())


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
