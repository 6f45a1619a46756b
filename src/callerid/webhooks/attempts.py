"""Delivery attempts: planning each attempt's outcome and next time, the batched reads and writes of deliveries
(``DeliveryStore``), sending one attempt and the test event, and the failure notice (SPEC §9.5-9.6).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock, secretbox
from callerid.accounts import members
from callerid.analytics.counting import (
    WEBHOOK_COUNTER,
    account_timezones,
    add_in_tx,
    add_webhook_delivery,
    delivery_delay_ms,
)
from callerid.analytics.tally import Tally
from callerid.batching import Batcher
from callerid.config import Settings
from callerid.db import Database
from callerid.db.values import in_values
from callerid.db.write import SessionTx, WriteTx
from callerid.ops import metrics
from callerid.webhooks import mail, secrets_at_rest
from callerid.webhooks.configs import (
    BUSY_RETRY_DELAY,
    BUSY_WAIT_SECONDS,
    WebhooksError,
    get_webhook,
    retry_schedule,
)
from callerid.webhooks.delivery import AttemptResult, WebhookBusy
from callerid.webhooks.events import _new_event
from callerid.webhooks.models import (
    EVENT_TYPES,
    FAILED,
    FINAL_STATES,
    OUTCOME_WEBHOOK_NOT_FOUND,
    RESCHEDULED,
    SUCCESS,
    WEBHOOK_DELETED,
    WebhookAttempt,
    WebhookConfig,
    WebhookEvent,
)
from callerid.webhooks.payloads import sample_payload

if TYPE_CHECKING:
    from callerid.runtime import Runtime


@dataclass(frozen=True)
class AttemptRecord:
    """One finished attempt and the event state it leads to."""

    event: WebhookEvent | EventRow
    number: int
    url: str
    result: AttemptResult
    state: str
    next_attempt_at: datetime | None
    notify: bool = True  # a final failure e-mails the account admins (not for manual resends)


def plan_attempt(
    settings: Settings,
    event: WebhookEvent | EventRow,
    number: int,
    url: str,
    result: AttemptResult,
    *,
    retries: bool,
    notify: bool = True,
) -> AttemptRecord:
    """The event's next state after attempt ``number``; retries count from the end of the failed attempt.

    ``notify=False`` (manual resends): a failure does not e-mail the admins.
    """
    schedule = retry_schedule(settings) if retries else []
    next_attempt_at: datetime | None = None
    if result.succeeded:
        state = SUCCESS
    elif result.outcome == OUTCOME_WEBHOOK_NOT_FOUND:
        state = WEBHOOK_DELETED
    elif number < len(schedule):
        state = RESCHEDULED
        next_attempt_at = clock.now() + schedule[number]
    else:
        state = FAILED
    return AttemptRecord(event, number, url, result, state, next_attempt_at, notify)


def _attempt_row(record: AttemptRecord) -> dict[str, Any]:
    result = record.result
    return {
        "event_id": record.event.id,
        "number": record.number,
        "url": record.url,
        "started_at": result.started_at,
        "duration_ms": result.duration_ms,
        "outcome": result.outcome,
        "status_code": result.status_code,
        "error": result.error,
    }


_EVENTS, _ATTEMPTS = WebhookEvent.__table__, WebhookAttempt.__table__
# An attempt moves its event on only if the event is still at that attempt and not final: when two runners ran the
# same attempt (at-least-once), only the first one's is logged. Built once (SQLAlchemy caches their compiled form).
_MOVE_ON_VALUES = {
    "state": bindparam("b_state", type_=_EVENTS.c.state.type),
    "attempts_made": bindparam("b_next_number", type_=_EVENTS.c.attempts_made.type),
    "next_attempt_at": bindparam("b_next_at", type_=_EVENTS.c.next_attempt_at.type),
    "updated_at": bindparam("b_now", type_=_EVENTS.c.updated_at.type),
}
_STILL_AT = (
    _EVENTS.c.attempts_made == bindparam("b_number", type_=_EVENTS.c.attempts_made.type),
    *(_EVENTS.c.state != final for final in FINAL_STATES),
)
# Many events moving to the same values (under load nearly all of a batch: first attempts that succeeded).
_MOVE_ON_MANY = (
    update(_EVENTS)
    .where(in_values(_EVENTS.c.id, "b_ids"), *_STILL_AT)
    .values(**_MOVE_ON_VALUES)
    .returning(_EVENTS.c.id)
)
_INSERT_ATTEMPTS = insert(_ATTEMPTS)


def _move_on_values(record: AttemptRecord, now: datetime) -> dict[str, Any]:
    return {
        "b_number": record.number,
        "b_state": record.state,
        "b_next_number": record.number + 1,
        "b_next_at": record.next_attempt_at,
        "b_now": now,
    }


def _notifies(record: AttemptRecord) -> bool:
    """Whether logging this attempt queues a failure notice (SPEC §9.6)."""
    return record.state == FAILED and record.notify and not record.event.is_test


def _counted(record: AttemptRecord) -> bool:
    """Whether the attempt ends its event in a state the daily figures count (success, or failed for good)."""
    return record.state in WEBHOOK_COUNTER and not record.event.is_test


@dataclass(frozen=True)
class Figures:
    """What counting webhook deliveries in a write needs, read before it: the database (its dialect) and the
    accounts' timezones."""

    db: Any
    timezones: dict[uuid.UUID, str]


async def figures_for(db: Database, records: list[AttemptRecord]) -> Figures | None:
    accounts = {record.event.account_id for record in records if _counted(record)}
    return Figures(db, await account_timezones(db, accounts)) if accounts else None


def _figures_of(figures: Figures, logged: list[AttemptRecord]) -> Tally:
    tally = Tally()
    for record in logged:
        if _counted(record):
            event, result = record.event, record.result
            delay = delivery_delay_ms(event.created_at, result.started_at, result.duration_ms)
            timezone = figures.timezones.get(event.account_id, "UTC")
            add_webhook_delivery(tally, event.account_id, timezone, event.created_at, record.state, delay)
    return tally


def _count(logged: list[AttemptRecord]) -> None:
    """Prometheus: the deliveries that reached a final state, once their write committed."""
    results: dict[str, int] = {}
    for record in logged:
        if _counted(record):
            results[record.state] = results.get(record.state, 0) + 1
    for state, count in results.items():
        metrics.WEBHOOK_DELIVERIES.labels(result=state).inc(count)


async def _log_attempts(
    tx: WriteTx, records: list[AttemptRecord], figures: Figures | None = None
) -> list[AttemptRecord]:
    """Move the events on and log their attempts, in ``tx``'s transaction; returns the records logged. With
    ``figures``, the events that reached a final state are counted in the daily figures in the same transaction.

    One UPDATE ... RETURNING per group of records that move to the same values (under load nearly all of a batch:
    first attempts that succeeded), instead of one statement per event, and one INSERT of the attempts.
    """
    now = clock.now()
    groups: dict[tuple[str, int, datetime | None], dict[uuid.UUID, AttemptRecord]] = {}
    for record in records:
        group = groups.setdefault((record.state, record.number, record.next_attempt_at), {})
        group.setdefault(record.event.id, record)  # a duplicate in the same batch: the first one counts
    logged: list[AttemptRecord] = []
    for by_id in groups.values():
        first = next(iter(by_id.values()))
        moved = await tx.query(_MOVE_ON_MANY, {"b_ids": list(by_id), **_move_on_values(first, now)})
        logged.extend(by_id[row.id] for row in moved)
    if logged:
        await tx.executemany(_INSERT_ATTEMPTS, [_attempt_row(r) for r in logged])
        if figures is not None:
            await add_in_tx(tx, figures.db, _figures_of(figures, logged))
    return logged


async def write_attempts(
    session: AsyncSession, records: list[AttemptRecord], figures: Figures | None = None
) -> list[AttemptRecord]:
    """Log attempts and move their events on, in the caller's transaction (one per batch).

    Each event update is conditional on the attempt number, so that when two runners ran the same
    attempt (at-least-once), only the first one's attempt is logged and only one failure notice goes
    out; an event deleted meanwhile (account removed, log purged) is skipped.
    """
    logged = await _log_attempts(SessionTx(session), records, figures)
    for record in logged:
        if _notifies(record):
            await _queue_failure_notice(session, record.event, record.number + 1, record.result)
    return logged


@dataclass(frozen=True, slots=True)
class EventRow:
    """What a delivery needs of an event, read with a Core query (no ORM identity map per event)."""

    id: uuid.UUID
    account_id: uuid.UUID
    webhook_name: str
    event_type: str
    body: str
    state: str
    is_test: bool
    attempts_made: int
    next_attempt_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookRow:
    """The webhook's current config as a delivery uses it."""

    id: uuid.UUID
    url: str
    secret: str  # as stored: encrypted (``secrets_at_rest`` opens it)
    previous_secret: str | None = None  # still signs beside ``secret`` until it expires (after a rotation)
    previous_secret_expires_at: datetime | None = None


_EVENT_COLUMNS = [getattr(WebhookEvent, name) for name in EventRow.__slots__]
_WEBHOOK_COLUMNS = [
    WebhookConfig.id.label("w_id"),
    WebhookConfig.url,
    WebhookConfig.secret,
    WebhookConfig.previous_secret,
    WebhookConfig.previous_secret_expires_at,
]


_LOAD_FROM = select(*_EVENT_COLUMNS, *_WEBHOOK_COLUMNS).outerjoin(
    WebhookConfig, WebhookConfig.id == WebhookEvent.webhook_id
)
# One statement text for any number of ids (``db.values``), compiled once.
_LOAD = _LOAD_FROM.where(in_values(WebhookEvent.id, "ids"))


class DeliveryStore:
    """The process's batched reads and writes for deliveries (see ``batching``): ``Runtime.webhook_store``.

    Both stay off SQLAlchemy's ORM session when they can: loads are point reads and attempts are written through
    ``Database.transact`` (the seam's fast path on either database). A batch with a failure notice to queue takes
    the session path (the notice is ORM work).
    """

    def __init__(self, db: Database):
        self.db = db
        # A second batch may start while one waits for the database where writes can run side by side (not on
        # SQLite, whose writes take turns on its one write lock).
        in_flight = 2 if db.concurrent_writes else 1
        self.loads: Batcher[uuid.UUID, tuple[EventRow, WebhookRow | None] | None]
        self.loads = Batcher(self._load, max_in_flight=in_flight)
        self.writes: Batcher[AttemptRecord, None] = Batcher(self._write, max_in_flight=in_flight)

    async def _load(self, event_ids: list[uuid.UUID]) -> list[tuple[EventRow, WebhookRow | None] | None]:
        async with self.db.point_session() as session:
            rows = (await session.execute(_LOAD, {"ids": list(set(event_ids))})).all()
        found: dict[uuid.UUID, tuple[EventRow, WebhookRow | None]] = {}
        width = len(_EVENT_COLUMNS)
        for row in rows:
            webhook_id = row[width]
            webhook = None if webhook_id is None else WebhookRow(*row[width:])
            found[row[0]] = (EventRow(*row[:width]), webhook)
        return [found.get(event_id) for event_id in event_ids]

    async def _write(self, records: list[AttemptRecord]) -> list[None]:
        figures = await figures_for(self.db, records)
        if any(_notifies(record) for record in records):
            async with self.db.transaction() as session:
                logged = await write_attempts(session, records, figures)
        else:
            logged = await self.db.transact(lambda tx: _log_attempts(tx, records, figures))
        _count(logged)
        return [None] * len(records)


async def _queue_failure_notice(
    session: AsyncSession, event: WebhookEvent | EventRow, attempts: int, result: AttemptResult
) -> None:
    """The account's admins are told that an event could not be delivered (SPEC §9.6): those chosen in the
    console settings (every active admin by default)."""
    recipients = await members.failure_notice_recipients(session, event.account_id)
    last_error = result.error or result.outcome
    body = (
        f"Webhook {event.webhook_name!r} could not deliver an event after {attempts} attempts.\n\n"
        f"Event id: {event.id}\n"
        f"Event type: {event.event_type}\n"
        f"Created at: {event.created_at.isoformat()}\n"
        f"Last error: {last_error}\n\n"
        "The event will not be retried. Check the webhook's URL and the receiving server; "
        "the webhook events log shows every attempt.\n"
    )
    await mail.queue_mail(
        session,
        account_id=event.account_id,
        recipients=recipients,
        subject=f"Webhook {event.webhook_name} failed to deliver a {event.event_type} event",
        body=body,
    )


async def attempt_delivery(runtime: Runtime, event_id: uuid.UUID, *, manual: bool = False) -> datetime | None:
    """Run the due attempt of one event. Returns when the next attempt is due (None: the event is done).

    The event and its webhook's current config (None once deleted) are read afresh for every attempt.
    A ``manual`` attempt (a resend from the console) is one attempt: no retries, no failure e-mail.
    """
    settings, store = runtime.settings, runtime.webhook_store
    loaded = await store.loads.submit(event_id)
    if loaded is None:
        return None  # purged
    event, webhook = loaded
    if event.state in FINAL_STATES:
        return None
    if event.next_attempt_at is not None and event.next_attempt_at > clock.now():
        return event.next_attempt_at  # a re-run of a job whose reschedule was lost; wait as planned
    number = event.attempts_made
    if webhook is None:
        result = AttemptResult(OUTCOME_WEBHOOK_NOT_FOUND, None, "the webhook was deleted", clock.now(), 0)
        await store.writes.submit(plan_attempt(settings, event, number, "", result, retries=False, notify=not manual))
        return None
    try:
        result = await runtime.deliverer.send(
            webhook_id=webhook.id,
            url=webhook.url,
            secrets=_secrets_of(settings, webhook),
            event_id=event.id,
            body=event.body.encode(),
            wait_for_slot=BUSY_WAIT_SECONDS,
        )
    except WebhookBusy:
        # A slow webhook must not hold every job-runner slot: put the job back, the attempt is not made.
        return clock.now() + BUSY_RETRY_DELAY
    record = plan_attempt(
        settings, event, number, webhook.url, result, retries=not (event.is_test or manual), notify=not manual
    )
    await store.writes.submit(record)
    return record.next_attempt_at


@dataclass(frozen=True)
class SampleDelivery:
    event: WebhookEvent
    attempt: AttemptResult  # status, started_at, duration_ms and response_excerpt (the answer's start)
    state: str


async def send_test_event(
    runtime: Runtime,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    event_type: str = "cmb",
) -> SampleDelivery:
    """One synchronous delivery of the sample payload, no retries, logged as a test event (SPEC §9.7).

    The result carries the first 500 characters of the receiver's answer (``attempt.response_excerpt``) for
    the console to show; it is not stored.
    """
    db, settings = runtime.db, runtime.settings
    if event_type not in EVENT_TYPES:
        raise WebhooksError("event type must be cmb or user_feedback")
    async with db.transaction() as session:
        webhook = await get_webhook(session, account_id=account_id, webhook_id=webhook_id)
        try:  # before the event is logged: a secret that cannot be opened leaves nothing half-done
            signing_secrets = _secrets_of(settings, webhook)
        except secretbox.DecryptionError as exc:
            raise WebhooksError(f"the signing secret cannot be decrypted ({exc}); rotate it for a new one") from None
        event_id = uuid.uuid4()
        payload = sample_payload(event_type, event_id=str(event_id), account_id=account_id, now=clock.now())
        event = _new_event(webhook, event_id=event_id, event_type=event_type, payload=payload, is_test=True)
        session.add(event)
    result = await runtime.deliverer.send(
        webhook_id=webhook.id,
        url=webhook.url,
        secrets=signing_secrets,
        event_id=event.id,
        body=event.body.encode(),
        excerpt=True,
    )
    async with db.transaction() as session:
        await write_attempts(session, [plan_attempt(settings, event, 0, webhook.url, result, retries=False)])
    return SampleDelivery(event=event, attempt=result, state=SUCCESS if result.succeeded else FAILED)


def _secrets_of(settings: Settings, webhook: WebhookConfig | WebhookRow) -> list[str]:
    """The clear secrets to sign with now (the stored values are encrypted; see ``secrets_at_rest``)."""
    return secrets_at_rest.signing_secrets(settings, webhook, clock.now())
