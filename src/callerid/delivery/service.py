"""Devices and delivery outcomes (SPEC §8): who gets a record, and what happened when we pushed it."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from packaging.version import InvalidVersion, Version
from prometheus_client import Counter, Gauge
from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.accounts.secrets import sha256_hex
from callerid.config import Settings
from callerid.db import Database
from callerid.db.keyedreads import KeyedQuery
from callerid.db.values import in_values
from callerid.db.write import lock_session
from callerid.delivery.hub import LocalHub
from callerid.delivery.models import Device
from callerid.failures import InvalidInput
from callerid.phone import normalise_phone

if TYPE_CHECKING:
    from callerid.runtime import Runtime

log = structlog.get_logger("callerid.delivery")

PLATFORMS = ("android", "ios")


@dataclass(frozen=True)
class PushMessage:
    record_id: str
    caller: str
    receiver: str
    label_id: str
    label_name: str
    logo_url: str
    call_reason: str | None
    starts_at: int  # epoch ms
    ends_at: int  # epoch ms

    def to_json(self) -> str:
        """The WebSocket message the receiver's phone gets."""
        return orjson.dumps(
            {
                "type": "call_personalisation",
                "record_id": self.record_id,
                "caller": self.caller,
                "receiver": self.receiver,
                "label_id": self.label_id,
                "label_name": self.label_name,
                "logo_url": self.logo_url,
                "call_reason": self.call_reason,
                "starts_at": self.starts_at,
                "ends_at": self.ends_at,
            }
        ).decode()


@dataclass(frozen=True)
class DeliveryOutcome:
    reason: (
        str | None
    )  # None = delivered; else not_app_user | os_not_supported | app_version_not_supported | failed_to_push
    message: str | None

    @property
    def delivered(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class RegisteredDevice:
    device_id: str
    device_token: str
    # The device this registration replaced (its live connections should be closed), if any.
    replaced_device_id: str | None = None


@dataclass(frozen=True)
class DeviceInfo:
    device_id: str
    phone_number: str
    platform: str
    app_version: str


DELIVERED = DeliveryOutcome(None, None)

PUSH_OUTCOMES = Counter("callerid_push_outcomes_total", "Records pushed to phones, by outcome", ["outcome"])
# livesum: with several processes, /metrics shows the sum over the processes that are alive.
PUSH_STREAMS = Gauge("callerid_push_streams", "Open phone WebSocket streams", multiprocess_mode="livesum")


@lru_cache(maxsize=4096)
def parse_version(value: str) -> Version | None:
    try:
        return Version(value)
    except InvalidVersion:
        return None


def outcome(settings: Settings, reason: str) -> DeliveryOutcome:
    messages = {
        "not_app_user": settings.outcome_message_not_app_user,
        "os_not_supported": settings.outcome_message_os_not_supported,
        "app_version_not_supported": settings.outcome_message_app_version_not_supported,
        "failed_to_push": settings.outcome_message_failed_to_push,
    }
    return DeliveryOutcome(reason, messages[reason])


def new_device_token() -> str:
    return "dev_" + secrets.token_urlsafe(32)


def check_registration(phone_number: str, platform: str, app_version: str) -> str:
    """The normalised number of a registration request, or InvalidInput naming the bad field."""
    number = normalise_phone(phone_number)
    if number is None:
        raise InvalidInput("phone_number is invalid")
    if platform not in PLATFORMS:
        raise InvalidInput("platform must be one of: android, ios")
    if not isinstance(app_version, str) or len(app_version) > 64 or parse_version(app_version) is None:
        raise InvalidInput("app_version is invalid")
    return number


async def register_device(
    session: AsyncSession, *, phone_number: str, platform: str, app_version: str
) -> RegisteredDevice:
    """Register the app for ``phone_number``, replacing any device it had. Run inside ``db.transaction()``.

    No proof of ownership here: callers have it already (callerid.delivery.verification).
    """
    number = check_registration(phone_number, platform, app_version)
    # Serialise registrations of one number: two concurrent ones would both see no previous device and the second
    # insert would break the unique number.
    await lock_session(session, "device:" + number)
    previous = (await session.execute(select(Device.id).where(Device.phone_number == number))).scalar_one_or_none()
    if previous is not None:
        await session.execute(delete(Device).where(Device.id == previous))
    token = new_device_token()
    device = Device(
        id=uuid.uuid4(),
        phone_number=number,
        platform=platform,
        app_version=app_version,
        token_hash=sha256_hex(token),
        created_at=clock.now(),
    )
    session.add(device)
    await session.flush()
    return RegisteredDevice(
        device_id=str(device.id),
        device_token=token,
        replaced_device_id=str(previous) if previous is not None else None,
    )


async def unregister_device(session: AsyncSession, device_id: str) -> bool:
    """Forget a device (the app was uninstalled). Run inside ``db.transaction()``."""
    result = await session.execute(delete(Device).where(Device.id == uuid.UUID(device_id)))
    return bool(result.rowcount)


async def unregister_number(session: AsyncSession, phone_number: str) -> str | None:
    """Forget the device of a number; its id, or None if none was registered. Run inside ``db.transaction()``."""
    number = normalise_phone(phone_number)
    if number is None:
        raise InvalidInput("phone_number is invalid")
    device_id = (await session.execute(select(Device.id).where(Device.phone_number == number))).scalar_one_or_none()
    if device_id is None:
        return None
    await session.execute(delete(Device).where(Device.id == device_id))
    return str(device_id)


async def authenticate_device(session: AsyncSession, token: str | None) -> DeviceInfo | None:
    """The device a bearer token belongs to, or None."""
    if not token:
        return None
    row = (await session.execute(_DEVICE_BY_TOKEN, {"token_hash": sha256_hex(token)})).one_or_none()
    if row is None:
        return None
    return DeviceInfo(
        device_id=str(row.id), phone_number=row.phone_number, platform=row.platform, app_version=row.app_version
    )


class DeviceAuthCache:
    """Recently authenticated device tokens (``Runtime.device_auth``), so the caller-ID hot path costs one query,
    not two.

    Only successes are cached, for ``ttl_seconds``; this process forgets a device at once when it is
    replaced or unregistered here, other processes within the TTL (the stream itself is closed at once
    everywhere, through the hub).
    """

    def __init__(self, ttl_seconds: float, max_entries: int = 100_000):
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[str, tuple[DeviceInfo, float]] = {}

    def get(self, token: str, now: datetime | None = None) -> DeviceInfo | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if (now or clock.now()).timestamp() - entry[1] >= self._ttl:
            self._entries.pop(token, None)
            return None
        return entry[0]

    def put(self, token: str, device: DeviceInfo) -> None:
        if self._ttl <= 0:
            return
        if len(self._entries) >= self._max:
            self._entries.clear()  # crude but bounded; refilled by the next requests
        self._entries[token] = (device, clock.now().timestamp())

    def forget(self, device_id: str | None) -> None:
        if device_id is None:
            return
        for token in [t for t, (device, _) in self._entries.items() if device.device_id == device_id]:
            self._entries.pop(token, None)


async def close_device(runtime: Runtime, device_id: str | None) -> None:
    """A replaced/unregistered device: its live streams closed (wherever they are, via the hub) and its cached
    token check dropped in this process."""
    if device_id is not None:
        await runtime.hub.close_device(device_id)
        runtime.device_auth.forget(device_id)


_DEVICES = Device.__table__.c
_DEVICE_COLUMNS = (_DEVICES.phone_number, _DEVICES.id, _DEVICES.platform, _DEVICES.app_version)
_DEVICES_BY_NUMBERS = KeyedQuery(
    many=select(*_DEVICE_COLUMNS).where(in_values(_DEVICES.phone_number, "numbers")),
    parameter="numbers",
    key="phone_number",
    one=select(*_DEVICE_COLUMNS).where(_DEVICES.phone_number == bindparam("phone_number")),
)
_DEVICE_BY_TOKEN = select(_DEVICES.id, _DEVICES.phone_number, _DEVICES.platform, _DEVICES.app_version).where(
    _DEVICES.token_hash == bindparam("token_hash")
)


async def devices_for(db: Database, numbers: list[str]) -> dict[str, tuple[str, str, str]]:
    """``number -> (device_id, platform, app_version)`` for the registered numbers among ``numbers``.

    All numbers as one list parameter, one statement built once; the R2s that arrive together share it.
    """
    rows = await db.read_keyed(_DEVICES_BY_NUMBERS, numbers)
    return {row.phone_number: (str(row.id), row.platform, row.app_version) for row in rows}


@dataclass(frozen=True)
class DeliveryPlan:
    """What delivering to each receiver will take (SPEC §8 order): a final outcome already, or a push to a device.

    ``outcomes[i]`` is the outcome of receiver ``i`` when no push is needed (else None); ``pushes`` lists
    ``(i, device_id)`` for the receivers that get one.
    """

    outcomes: list[DeliveryOutcome | None]
    pushes: list[tuple[int, str]]
    failed_to_push: DeliveryOutcome


async def plan_delivery(db: Database, settings: Settings, receivers: Sequence[str]) -> DeliveryPlan:
    """Look up the receivers' devices and decide, per receiver, between a final outcome and a push."""
    devices = await devices_for(db, list(set(receivers))) if receivers else {}
    minimum = parse_version(settings.min_app_version)
    not_app_user = outcome(settings, "not_app_user")
    os_not_supported = outcome(settings, "os_not_supported")
    version_not_supported = outcome(settings, "app_version_not_supported")
    outcomes: list[DeliveryOutcome | None] = [None] * len(receivers)
    pushes: list[tuple[int, str]] = []
    for index, receiver in enumerate(receivers):
        device = devices.get(receiver)
        if device is None:
            outcomes[index] = not_app_user
            continue
        device_id, platform, app_version = device
        if platform != "android":
            outcomes[index] = os_not_supported
            continue
        version = parse_version(app_version)
        if version is None or (minimum is not None and version < minimum):
            outcomes[index] = version_not_supported
            continue
        pushes.append((index, device_id))
    return DeliveryPlan(outcomes, pushes, outcome(settings, "failed_to_push"))


async def push_planned(hub: LocalHub, plan: DeliveryPlan, messages: Sequence[PushMessage]) -> list[DeliveryOutcome]:
    """Carry out a plan: ``messages[k]`` is pushed for ``plan.pushes[k]``. One outcome per receiver, in order."""
    outcomes = list(plan.outcomes)
    if plan.pushes:
        to_push = [
            (device_id, message.to_json()) for (_, device_id), message in zip(plan.pushes, messages, strict=True)
        ]
        try:
            pushed = await hub.publish_many(to_push)
        except Exception:  # Redis down: the push failed; the record's outcome says so (SPEC §8 #4)
            log.warning("push_publish_failed", messages=len(to_push), exc_info=True)
            pushed = [False] * len(to_push)
        for (index, _), ok in zip(plan.pushes, pushed, strict=True):
            outcomes[index] = DELIVERED if ok else plan.failed_to_push
    final = [item if item is not None else plan.failed_to_push for item in outcomes]
    counts: dict[str, int] = {}
    for item in final:
        key = item.reason or "success"
        counts[key] = counts.get(key, 0) + 1
    for key, count in counts.items():
        _push_outcomes(key).inc(count)
    return final


async def deliver_many(runtime: Runtime, messages: Sequence[PushMessage]) -> list[DeliveryOutcome]:
    """Push each message to its receiver's device; one outcome per message, in order (SPEC §8 order)."""
    plan = await plan_delivery(runtime.db, runtime.settings, [message.receiver for message in messages])
    return await push_planned(runtime.hub, plan, [messages[index] for index, _ in plan.pushes])


@lru_cache(maxsize=16)
def _push_outcomes(outcome: str) -> Any:
    return PUSH_OUTCOMES.labels(outcome=outcome)
