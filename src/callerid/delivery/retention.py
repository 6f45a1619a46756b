"""When a phone was last seen, and forgetting the devices of phones gone for ``device_retention_days``.

"Seen" is registering (``created_at``) or connecting the push stream (``last_seen_at``): an app that receives
pushes keeps its stream open and reconnects whenever it drops. The caller-ID lookup does not count: writing on
that hot path (even once a day per device, it would need a read of the row per request) is what this avoids; an
app that looks up also holds a stream. ``last_seen_at`` is written at stream connect and then once a day while
the stream stays open, at most once a day per device (``SEEN_EVERY``), so a million phones cost a million small
UPDATEs a day, spread over the day.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import bindparam, or_, select, update

from callerid import clock
from callerid.config import Settings
from callerid.db.write import Step
from callerid.delivery.models import Device, PendingRegistration, SmsOutbox
from callerid.delivery.sms import OUTBOX_KEPT
from callerid.delivery.verification import EXPIRED_KEPT
from callerid.jobs.purge import Purge

if TYPE_CHECKING:
    from callerid.runtime import Runtime

log = structlog.get_logger("callerid.delivery")

SEEN_EVERY = timedelta(days=1)
# Runtime.devices_seen (id -> when) holds the devices this process marked seen recently, so that a phone
# reconnecting within SEEN_EVERY costs no write at all; at most this many.
_RECENTLY_SEEN_KEPT = 100_000

_DEVICES = Device.__table__
_LAST_SEEN = select(_DEVICES.c.last_seen_at).where(_DEVICES.c.id == bindparam("device_id"))
# Only when the stored time is SEEN_EVERY old or older (another process may have written it meanwhile).
_MARK_SEEN = (
    update(_DEVICES)
    .where(
        _DEVICES.c.id == bindparam("device_id"),
        or_(_DEVICES.c.last_seen_at.is_(None), _DEVICES.c.last_seen_at <= bindparam("stale_before")),
    )
    .values(last_seen_at=bindparam("now", type_=_DEVICES.c.last_seen_at.type))
)


async def mark_seen(runtime: Runtime, device_id: str) -> bool:
    """Record that the device is in use now, unless that was done less than ``SEEN_EVERY`` ago. Returns whether
    it wrote."""
    now = clock.now()
    db, recently = runtime.db, runtime.devices_seen
    last = recently.get(device_id)
    if last is not None and now - last < SEEN_EVERY:
        return False
    if len(recently) >= _RECENTLY_SEEN_KEPT:
        recently.clear()  # bounded; the read below still keeps it at once a day per device
    key = uuid.UUID(device_id)
    # A read first (no write lock): after a restart every phone reconnects, and most were seen today already.
    async with db.point_session() as session:
        stored = (await session.execute(_LAST_SEEN, {"device_id": key})).scalar()
    if stored is not None and now - stored < SEEN_EVERY:
        recently[device_id] = stored
        return False
    recently[device_id] = now
    values = {"device_id": key, "stale_before": now - SEEN_EVERY, "now": now}
    return bool((await db.write([Step(_MARK_SEEN, values)]))[0])


async def keep_seen(runtime: Runtime, device_id: str) -> None:
    """Run while a push stream is open (cancel it when the stream ends): the device is seen now and once a day."""
    while True:
        try:
            # Shielded: a stream that closes mid-write must not cancel the write on its connection.
            await asyncio.shield(mark_seen(runtime, device_id))
        except Exception:
            log.warning("device_seen_failed", device_id=device_id, exc_info=True)
        await asyncio.sleep(SEEN_EVERY.total_seconds())


def _device_cutoffs(settings: Settings, now: datetime) -> dict[str, Any]:
    return {"seen_before": now - timedelta(days=settings.device_retention_days)}


# Devices seen on a stream before the cutoff, then devices never seen since registering before it (both by
# ix_devices_last_seen_created). Nothing else hangs on a device: records keep the receiver's number, not the device.
DEVICE_PURGES = (
    Purge("devices", _DEVICES, _DEVICES.c.last_seen_at < bindparam("seen_before"), _device_cutoffs),
    Purge(
        "devices_never_seen",
        _DEVICES,
        _DEVICES.c.last_seen_at.is_(None) & (_DEVICES.c.created_at < bindparam("seen_before")),
        _device_cutoffs,
    ),
)


_REGISTRATIONS = PendingRegistration.__table__
_SMS_OUTBOX = SmsOutbox.__table__


def _registration_cutoffs(_settings: Settings, now: datetime) -> dict[str, Any]:
    return {"expired_before": now - EXPIRED_KEPT, "sent_before": now - OUTBOX_KEPT}


# Registrations whose code expired (kept an hour, so a late "verify" still says "expired" rather than "unknown"),
# and the development SMS outbox after a day (both by their own index).
REGISTRATION_PURGES = (
    Purge(
        "device_registrations",
        _REGISTRATIONS,
        _REGISTRATIONS.c.expires_at < bindparam("expired_before"),
        _registration_cutoffs,
    ),
    Purge("sms_outbox", _SMS_OUTBOX, _SMS_OUTBOX.c.created_at < bindparam("sent_before"), _registration_cutoffs),
)
