"""Call signals from phones (issue 13): what happened to an incoming call the phone looked up, linked to the identity
it was shown, stored once per event id and counted into the daily figures in the same transaction.

- **Linking.** The receiver is the device's verified number. The identity is the one the caller-ID lookup shows
  (``identity.service.lookup``'s sources, in its order): the newest call record of the pair whose window holds the
  call's start (``personalisation.service.active_identity``) gives the label, the label's account and the record;
  otherwise the caller's listing (``numbers.service``) gives the account, the feature set and its label. A listed
  caller's feature set is stored with a record too, when the listing is the record's account's. The call's start is
  ``occurredAt`` less the duration for ``ended`` (a long call may outlive its record's window), else ``occurredAt``.
  A caller with neither (or listed with secure branding and no record: the lookup refused it) showed no verified
  identity: its signal is **ignored** (answered in ``ignored``, nothing stored or counted) rather than refusing the
  request, so that a phone flushing its queue is never stuck on a call whose record was purged meanwhile.
- **Once per event id.** Ids the device sent before are duplicates at once (one read), whatever they would link to
  now. The rest: ``INSERT ... ON CONFLICT (device_id, event_id) DO NOTHING RETURNING event_id`` for each signal
  inside one ``db.transact``; only the rows actually inserted are tallied, in the same transaction. Two concurrent
  requests with the same id: one inserts, the other's insert returns nothing, so it is counted once.
- **Counted.** displayed -> ``shown``; answered / missed / rejected -> the same-named counter; ended -> ``ended``
  +1 and ``talk_seconds`` += duration; on the day of ``occurredAt`` in the account's timezone, keyed by label,
  feature set and business number (the caller).
- **Limited** per device (``signal_rate_limit``, counted in signals) with the process-shared limiter
  (``accounts.ratelimit``: Redis when configured): a request is refused (429) while the device's window is full;
  an accepted request counts all its signals. A refused request counts nothing, so a phone retrying its queue after
  ``Retry-After`` is never starved by its own retries.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from limits import RateLimitItem, parse
from sqlalchemy import bindparam, select

from callerid import clock
from callerid.accounts.service import get_account
from callerid.analytics.models import NO_ID, CallSignal
from callerid.analytics.schemas import ENDED, SignalIn
from callerid.analytics.tally import FiguresKey, Tally, day_in
from callerid.config import Settings
from callerid.db.write import OnConflict, WriteTx
from callerid.failures import InvalidInput, LimitExceeded
from callerid.jobs.purge import Purge
from callerid.numbers.service import listed_identity
from callerid.ops.metrics import CALL_SIGNALS
from callerid.personalisation.service import active_identity

if TYPE_CHECKING:
    from callerid.delivery.service import DeviceInfo
    from callerid.runtime import Runtime

_SIGNALS = CallSignal.__table__
_COLUMNS = (
    "device_id",
    "event_id",
    "account_id",
    "kind",
    "business_number",
    "label_id",
    "feature_set_id",
    "record_id",
    "duration_seconds",
    "occurred_at",
    "received_at",
)
_KNOWN = select(_SIGNALS.c.event_id).where(
    _SIGNALS.c.device_id == bindparam("device_id"), _SIGNALS.c.event_id.in_(bindparam("event_ids", expanding=True))
)
# The counter of each kind in daily_figures (ended also adds its duration to talk_seconds).
COUNTER_OF_KIND = {
    "displayed": "shown",
    "answered": "answered",
    "missed": "missed",
    "rejected": "rejected",
    ENDED: "ended",
}

_INSERT_NEW = OnConflict(
    lambda insert: (
        insert(_SIGNALS)
        .values({name: bindparam(name) for name in _COLUMNS})
        .on_conflict_do_nothing(index_elements=[_SIGNALS.c.device_id, _SIGNALS.c.event_id])
        .returning(_SIGNALS.c.event_id)
    )
)


@dataclass(frozen=True, slots=True)
class SignalsAnswer:
    """Every event id sent, in exactly one list, in the order sent."""

    accepted: list[str]
    duplicates: list[str]
    ignored: list[str]

    def to_json(self) -> dict[str, list[str]]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "ignored": self.ignored}


@dataclass(frozen=True, slots=True)
class Shown:
    """The identity a signal is about: whose it is and where it is counted."""

    account_id: uuid.UUID
    label_id: uuid.UUID
    feature_set_id: uuid.UUID
    record_id: int | None


@lru_cache(maxsize=16)
def _limit(spec: str) -> RateLimitItem:
    return parse(spec)


def check_times(signals: list[SignalIn], settings: Settings, now: datetime) -> None:
    """Refuse (naming the field) a time too far ahead of the server's clock or older than the age limit."""
    latest = now + timedelta(seconds=settings.signal_max_skew_seconds)
    earliest = now - timedelta(days=settings.signal_max_age_days)
    for signal in signals:
        name = signal.field("occurredAt")
        if signal.occurred_at > latest:
            raise InvalidInput(
                f"{name} is in the future (more than {settings.signal_max_skew_seconds} seconds ahead)", field=name
            )
        if signal.occurred_at < earliest:
            raise InvalidInput(f"{name} is older than {settings.signal_max_age_days} days", field=name)


async def _check_rate(runtime: Runtime, device_id: str, count: int) -> None:
    """429 while the device's window is full (nothing counted); else count the request's ``count`` signals."""
    limiter = runtime.limiter
    item = _limit(runtime.settings.signal_rate_limit)
    identity = f"call-signals:{device_id}"
    wait = await limiter.blocked(item, identity)
    if wait is not None:
        raise LimitExceeded(
            f"too many call signals from this phone: try again in {wait} seconds", field="signals", retry_after=wait
        )
    # Each signal is one hit; together they go to Redis in one script call (the limiter groups concurrent checks).
    await asyncio.gather(*(limiter.hit(item, identity) for _ in range(count)))


def _lookup_at(signal: SignalIn) -> datetime:
    """When the identity was looked up: the call's start (an ended call's duration before its end)."""
    if signal.kind == ENDED and signal.duration_seconds:
        return signal.occurred_at - timedelta(seconds=signal.duration_seconds)
    return signal.occurred_at


async def shown_identity(runtime: Runtime, caller: str, receiver: str, at: datetime) -> Shown | None:
    """The identity ``caller`` showed ``receiver`` at ``at``, from the caller-ID lookup's sources in its order, or
    None: no record and not listed, or listed with secure branding and no record (the lookup showed nothing)."""
    db = runtime.db
    record = await active_identity(db, caller, receiver, at)
    listed = await listed_identity(db, caller)
    if record is not None and record.account_id is not None:
        same_account = listed is not None and listed.account_id == record.account_id
        feature_set_id = listed.feature_set_id if listed is not None and same_account else NO_ID
        return Shown(record.account_id, uuid.UUID(record.label_id), feature_set_id, record.record_id)
    if listed is None or listed.secure_branding:
        return None
    return Shown(listed.account_id, listed.label_id, listed.feature_set_id, None)


async def record_signals(runtime: Runtime, device: DeviceInfo, signals: list[SignalIn]) -> SignalsAnswer:
    """Store and count ``signals`` (checked for shape by ``schemas.parse_call_signals``) from ``device``."""
    settings = runtime.settings
    now = clock.now()
    check_times(signals, settings, now)
    await _check_rate(runtime, device.device_id, len(signals))

    # A repeated id within the request: the first one stands, the others are duplicates without a database visit.
    first: dict[str, SignalIn] = {}
    for signal in signals:
        first.setdefault(signal.event_id, signal)
    device_id = uuid.UUID(device.device_id)
    # Ids stored before (a queue resent after a lost answer) are duplicates whatever they would link to now; the
    # insert below settles the ones that race with another request.
    async with runtime.db.session() as session:
        known = set((await session.scalars(_KNOWN, {"device_id": device_id, "event_ids": list(first)})).all())
    for event_id in known:
        del first[event_id]

    shown_by: dict[tuple[str, datetime], Shown | None] = {}
    timezones: dict[uuid.UUID, str] = {}
    linked: list[tuple[SignalIn, Shown]] = []
    for signal in first.values():
        at = _lookup_at(signal)
        key = (signal.caller, at)
        if key not in shown_by:
            shown_by[key] = await shown_identity(runtime, signal.caller, device.phone_number, at)
        shown = shown_by[key]
        if shown is not None:
            linked.append((signal, shown))
            timezones.setdefault(shown.account_id, "")
    if timezones:
        async with runtime.db.session() as session:
            for account_id in timezones:
                timezones[account_id] = (await get_account(session, account_id)).timezone

    rows = [_row(device_id, signal, shown, now) for signal, shown in linked]

    async def work(tx: WriteTx) -> set[str]:
        statement = _INSERT_NEW.of_database(runtime.db)
        tally = Tally()
        inserted: set[str] = set()
        for row, (signal, shown) in zip(rows, linked, strict=True):
            if not await tx.query(statement, row):
                continue  # stored before (this or another request): counted then
            inserted.add(signal.event_id)
            _count(tally, signal, shown, timezones[shown.account_id])
        for step in tally.steps(runtime.db):
            await tx.executemany(step.statement, step.rows or ())
        return inserted

    inserted = await runtime.db.transact(work) if rows else set()

    accepted: list[str] = []
    duplicates: list[str] = []
    ignored: list[str] = []
    seen: set[str] = set()
    linked_ids = {signal.event_id for signal, _ in linked} | known
    for signal in signals:
        event_id = signal.event_id
        if event_id in seen:
            duplicates.append(event_id)
            continue
        seen.add(event_id)
        if event_id in inserted:
            accepted.append(event_id)
            CALL_SIGNALS.labels(signal.kind).inc()
        elif event_id in linked_ids:
            duplicates.append(event_id)
        else:
            ignored.append(event_id)
    return SignalsAnswer(accepted, duplicates, ignored)


def _row(device_id: uuid.UUID, signal: SignalIn, shown: Shown, now: datetime) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "event_id": signal.event_id,
        "account_id": shown.account_id,
        "kind": signal.kind,
        "business_number": int(signal.caller),
        "label_id": shown.label_id,
        "feature_set_id": shown.feature_set_id,
        "record_id": shown.record_id,
        "duration_seconds": signal.duration_seconds,
        "occurred_at": signal.occurred_at,
        "received_at": now,
    }


def _retention_cutoffs(settings: Settings, now: datetime) -> dict[str, Any]:
    # Never sooner than the age limit allows a signal to be (re)sent: a resent id must still be a duplicate.
    days = max(settings.signal_retention_days, settings.signal_max_age_days + 1)
    return {"received_before": now - timedelta(days=days)}


# Raw signals, ``signal_retention_days`` after they arrived (by ix_call_signals_received_at); the figures stay.
SIGNAL_PURGES = (
    Purge("call_signals", _SIGNALS, _SIGNALS.c.received_at < bindparam("received_before"), _retention_cutoffs),
)


def _count(tally: Tally, signal: SignalIn, shown: Shown, timezone: str) -> None:
    key = FiguresKey(
        shown.account_id, day_in(timezone, signal.occurred_at), shown.label_id, shown.feature_set_id, int(signal.caller)
    )
    tally.add(key, COUNTER_OF_KIND[signal.kind])
    if signal.kind == ENDED:
        tally.add(key, "talk_seconds", signal.duration_seconds or 0)
