"""Device retention: a phone is seen when it registers or connects its push stream (at most one write a day), and
its device is forgotten once unseen for ``device_retention_days``. Both databases; time moved, never slept."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from starlette.testclient import TestClient

from callerid import clock
from callerid.accounts.secrets import sha256_hex
from callerid.config import Settings
from callerid.db import Database
from callerid.delivery.models import Device
from callerid.delivery.retention import DEVICE_PURGES, mark_seen
from callerid.jobs.purge import purge
from callerid.runtime import Runtime

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


async def add_device(db: Database, number: str, *, created: datetime, seen: datetime | None = None) -> tuple[str, str]:
    """A registered device (as registration leaves it, plus ``last_seen_at``); its id and token."""
    token = "dev_" + secrets.token_urlsafe(32)
    device = Device(
        id=uuid.uuid4(), phone_number=number, platform="android", app_version="2.0.0", token_hash=sha256_hex(token),
        created_at=created, last_seen_at=seen,
    )  # fmt: skip
    async with db.transaction() as session:
        session.add(device)
    return str(device.id), token


async def last_seen(db: Database, device_id: str) -> datetime | None:
    async with db.session() as session:
        seen: datetime | None = await session.scalar(
            select(Device.last_seen_at).where(Device.id == uuid.UUID(device_id))
        )
        return seen


async def device_numbers(db: Database) -> set[str]:
    async with db.session() as session:
        return set((await session.scalars(select(Device.phone_number))).all())


async def test_devices_unseen_for_the_retention_period_are_forgotten(db: Database, settings: Settings) -> None:
    clock.freeze(NOW)
    cutoff = NOW - timedelta(days=settings.device_retention_days)
    await add_device(db, "919000000001", created=cutoff - 10 * DAY, seen=cutoff - SECOND)  # gone
    await add_device(db, "919000000002", created=cutoff - 10 * DAY, seen=cutoff + SECOND)  # seen just inside
    await add_device(db, "919000000003", created=cutoff - SECOND)  # never seen since registering: gone
    await add_device(db, "919000000004", created=cutoff + SECOND)  # registered just inside
    await add_device(db, "919000000005", created=cutoff - 300 * DAY, seen=NOW - DAY)  # old but in use

    run = await purge(db, settings, DEVICE_PURGES)

    assert run.deleted == {"devices": 1, "devices_never_seen": 1}
    assert await device_numbers(db) == {"919000000002", "919000000004", "919000000005"}


async def test_a_device_is_marked_seen_at_most_once_a_day(
    db: Database, settings: Settings, runtime: Runtime, runtime_with: Callable[[Settings], Runtime]
) -> None:
    clock.freeze(NOW)
    device_id, _ = await add_device(db, "919000000001", created=NOW - 10 * DAY)
    assert await mark_seen(runtime, device_id) is True
    assert await last_seen(db, device_id) == NOW
    clock.advance(DAY - SECOND)
    assert await mark_seen(runtime, device_id) is False  # remembered by this process: no write
    another_process = runtime_with(settings)
    assert await mark_seen(another_process, device_id) is False  # the guarded UPDATE changes nothing
    assert await last_seen(db, device_id) == NOW
    clock.advance(SECOND)
    assert await mark_seen(runtime, device_id) is True
    assert await last_seen(db, device_id) == NOW + DAY


def test_connecting_the_push_stream_marks_the_device_seen(phone_client: TestClient) -> None:
    clock.freeze(NOW)
    db: Database = phone_client.app.state.runtime.db  # type: ignore[attr-defined]
    device_id, token = phone_client.portal.call(  # type: ignore[union-attr]
        lambda: add_device(db, "919000000001", created=NOW - 100 * DAY)
    )
    assert phone_client.portal.call(last_seen, db, device_id) is None  # type: ignore[union-attr]
    with phone_client.websocket_connect("/app/v1/stream", headers={"Authorization": f"Bearer {token}"}) as ws:
        assert ws.receive_json()["type"] == "connected"

        async def seen_soon() -> datetime | None:
            for _ in range(200):  # the mark is written beside the stream: wait for it (bounded)
                seen = await last_seen(db, device_id)
                if seen is not None:
                    return seen
                await asyncio.sleep(0.01)
            return None

        assert phone_client.portal.call(seen_soon) == NOW  # type: ignore[union-attr]
    clock.advance(timedelta(days=200))
    settings = phone_client.app.state.runtime.settings  # type: ignore[attr-defined]
    run = phone_client.portal.call(purge, db, settings, DEVICE_PURGES)  # type: ignore[union-attr]
    assert run.deleted == {"devices": 1, "devices_never_seen": 0}  # seen 200 days ago: forgotten


async def test_expired_registrations_and_old_development_sms_go(db: Database, settings: Settings) -> None:
    from sqlalchemy import insert as sql_insert

    from callerid.delivery.models import PendingRegistration, SmsOutbox
    from callerid.delivery.retention import REGISTRATION_PURGES
    from callerid.jobs.purge import purge

    clock.freeze(NOW)

    def registration(number: str, expires: datetime) -> dict[str, object]:
        return {
            "id": uuid.uuid4(),
            "phone_number": number,
            "platform": "android",
            "app_version": "2.0.0",
            "code_hash": "0" * 64,
            "code_sent_at": expires - timedelta(minutes=10),
            "expires_at": expires,
            "created_at": expires - timedelta(minutes=10),
        }

    def sms(number: str, at: datetime) -> dict[str, object]:
        return {
            "id": uuid.uuid4(),
            "phone_number": number,
            "message": "Your callerid code is 123456",
            "code": "123456",
            "registration_id": uuid.uuid4(),
            "created_at": at,
        }

    async with db.transaction() as session:
        await session.execute(
            sql_insert(PendingRegistration),
            [
                registration("919000000001", NOW - timedelta(hours=1) - SECOND),  # expired over an hour ago
                registration("919000000002", NOW - timedelta(minutes=30)),  # expired, still answered "expired"
                registration("919000000003", NOW + timedelta(minutes=5)),  # waiting for its code
            ],
        )
        await session.execute(
            sql_insert(SmsOutbox), [sms("919000000004", NOW - timedelta(days=1, seconds=1)), sms("919000000005", NOW)]
        )
    run = await purge(db, settings, REGISTRATION_PURGES)
    assert (run.deleted["device_registrations"], run.deleted["sms_outbox"]) == (1, 1)
    async with db.session() as session:
        left = sorted((await session.scalars(select(PendingRegistration.phone_number))).all())
        assert left == ["919000000002", "919000000003"]
        assert (await session.scalars(select(SmsOutbox.phone_number))).all() == ["919000000005"]
