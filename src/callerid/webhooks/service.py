"""Webhooks: the rules, free of HTTP (SPEC §9).

- Configs: at most 5 per account, names unique (case-insensitive) and <= 50 characters, http(s) URLs
  that lead to public addresses, event types ``cmb`` and/or ``user_feedback``.
- :func:`emit_event` is what other domains call when a CMB request or survey answer arrives.
- :func:`attempt_delivery` runs one attempt of one event (the ``webhooks.deliver`` job) and returns the
  time of the next attempt, if any; retries follow ``webhook_retry_schedule`` counted from the end of the
  failed attempt. The webhook's config is read afresh at each attempt.
- Console tools: :func:`rotate_secret` (the old secret keeps signing for an overlap), :func:`resend_event`
  and :func:`retry_failed_since` (manual attempts: one attempt each, no retries, no failure e-mail), and
  the event log with filters (:func:`list_events`).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock, failures, secretbox
from callerid.accounts import members
from callerid.accounts import service as accounts
from callerid.batching import Batcher
from callerid.config import Settings
from callerid.db import Database
from callerid.db.values import in_values
from callerid.db.write import SessionTx, WriteTx
from callerid.display_text import storage_problem
from callerid.jobs.purge import Purge
from callerid.jobs.service import enqueue, enqueue_many
from callerid.timefmt import iso_z
from callerid.webhooks import mail, secrets_at_rest, signing
from callerid.webhooks.delivery import AttemptResult, WebhookBusy, deliverer_of
from callerid.webhooks.models import (
    EVENT_TYPES,
    FAILED,
    FINAL_STATES,
    OUTCOME_WEBHOOK_NOT_FOUND,
    PENDING,
    RESCHEDULED,
    SUCCESS,
    WEBHOOK_DELETED,
    OutboxMail,
    RetryRun,
    WebhookAttempt,
    WebhookConfig,
    WebhookEvent,
)
from callerid.webhooks.payloads import envelope, sample_payload
from callerid.webhooks.safety import UnsafeUrl, check_destination, check_url_syntax
from callerid.webhooks.schedule import parse_schedule

DELIVER_JOB = "webhooks.deliver"
# How long a delivery job waits for its webhook's concurrency limit before giving its slot back.
BUSY_WAIT_SECONDS = 2.0
BUSY_RETRY_DELAY = timedelta(seconds=1)
MAX_NAME_LENGTH = 50


class WebhooksError(failures.InvalidInput):
    """A rule of this domain was broken; the message says which, for a person to read."""


class NotFound(failures.NotFound, WebhooksError):
    """No such webhook or event in the account."""


class LimitReached(WebhooksError):
    """A count the account may not exceed (webhooks, retries)."""


# --- configs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedWebhook:
    webhook: WebhookConfig
    secret: str  # shown once


def _clean_name(name: str) -> str:
    name = name.strip()
    if name == "":
        raise WebhooksError("name is required")
    if len(name) > MAX_NAME_LENGTH:
        raise WebhooksError(f"name must be at most {MAX_NAME_LENGTH} characters")
    problem = storage_problem(name, "name")
    if problem is not None:
        raise WebhooksError(problem)
    return name


def parse_event_types(value: str | list[str]) -> list[str]:
    """``"cmb,user_feedback"`` or a list -> the distinct types in canonical order."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    chosen = {p.strip() for p in parts if p.strip()}
    unknown = sorted(chosen - set(EVENT_TYPES))
    if not chosen or unknown:
        shown = f" ({', '.join(unknown)} is not one)" if unknown else ""
        raise WebhooksError(f"events must be one or both of cmb, user_feedback{shown}")
    return [t for t in EVENT_TYPES if t in chosen]


async def _clean_url(settings: Settings, url: str) -> str:
    try:
        url = check_url_syntax(url, require_https=settings.webhook_require_https)
        await check_destination(url, allow_private=settings.webhook_allow_private)
    except UnsafeUrl as exc:
        raise WebhooksError(str(exc)) from None
    return url


async def _name_taken(session: AsyncSession, account_id: uuid.UUID, name: str, *, except_id: uuid.UUID | None) -> bool:
    query = select(WebhookConfig.id).where(
        WebhookConfig.account_id == account_id, WebhookConfig.name_key == name.casefold()
    )
    if except_id is not None:
        query = query.where(WebhookConfig.id != except_id)
    return (await session.scalar(query)) is not None


async def _lock_account(session: AsyncSession, account_id: uuid.UUID) -> None:
    """Serialise config changes of one account (the account's lock, owned by accounts)."""
    try:
        await accounts.lock_account(session, account_id)
    except failures.NotFound:
        raise NotFound(f"account {account_id} not found") from None


async def create_webhook(
    session: AsyncSession,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    name: str,
    url: str,
    events: str | list[str],
) -> CreatedWebhook:
    name = _clean_name(name)
    event_types = parse_event_types(events)
    url = await _clean_url(settings, url)
    await _lock_account(session, account_id)
    count = await session.scalar(select(func.count()).where(WebhookConfig.account_id == account_id))
    if (count or 0) >= settings.max_webhooks_per_account:
        raise LimitReached(f"an account can have at most {settings.max_webhooks_per_account} webhooks")
    if await _name_taken(session, account_id, name, except_id=None):
        raise WebhooksError(f"a webhook named {name!r} already exists")
    now = clock.now()
    secret = signing.new_secret()
    webhook_id = uuid.uuid4()
    webhook = WebhookConfig(
        id=webhook_id,
        account_id=account_id,
        name=name,
        name_key=name.casefold(),
        url=url,
        events=event_types,
        secret=secrets_at_rest.seal(settings, webhook_id, secret),  # encrypted at rest; shown in clear once
        created_at=now,
        updated_at=now,
    )
    session.add(webhook)
    await session.flush()
    return CreatedWebhook(webhook, secret)


async def get_webhook(session: AsyncSession, *, account_id: uuid.UUID, webhook_id: uuid.UUID) -> WebhookConfig:
    webhook = await session.get(WebhookConfig, webhook_id)
    if webhook is None or webhook.account_id != account_id:
        raise NotFound(f"webhook {webhook_id} not found")
    return webhook


async def list_webhooks(session: AsyncSession, account_id: uuid.UUID) -> list[WebhookConfig]:
    query = select(WebhookConfig).where(WebhookConfig.account_id == account_id).order_by(WebhookConfig.created_at)
    return list((await session.scalars(query)).all())


async def update_webhook(
    session: AsyncSession,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    name: str | None = None,
    url: str | None = None,
    events: str | list[str] | None = None,
) -> WebhookConfig:
    """Change any of name, URL, event types; later attempts of pending events use the new values."""
    new_name = _clean_name(name) if name is not None else None
    new_events = parse_event_types(events) if events is not None else None
    new_url = await _clean_url(settings, url) if url is not None else None
    await _lock_account(session, account_id)
    webhook = await get_webhook(session, account_id=account_id, webhook_id=webhook_id)
    if new_name is not None:
        if await _name_taken(session, account_id, new_name, except_id=webhook_id):
            raise WebhooksError(f"a webhook named {new_name!r} already exists")
        webhook.name, webhook.name_key = new_name, new_name.casefold()
    if new_url is not None:
        webhook.url = new_url
    if new_events is not None:
        webhook.events = new_events
    webhook.updated_at = clock.now()
    await session.flush()
    return webhook


async def delete_webhook(session: AsyncSession, *, account_id: uuid.UUID, webhook_id: uuid.UUID) -> None:
    """Delete the config. Its events stay in the log; their next attempt ends them as webhook_deleted."""
    webhook = await get_webhook(session, account_id=account_id, webhook_id=webhook_id)
    await session.delete(webhook)
    await session.flush()


async def rotate_secret(
    session: AsyncSession, settings: Settings, *, account_id: uuid.UUID, webhook_id: uuid.UUID
) -> CreatedWebhook:
    """Give the webhook a new signing secret, returned once.

    The secret it replaces keeps signing beside the new one (two ``v1,`` signatures per delivery) for
    ``webhook_secret_overlap_hours``, so that the receiver can switch without rejecting deliveries. A second
    rotation within that time replaces the kept secret with the one current until then.
    """
    # Locked and read afresh: a concurrent rotation waits, then moves on from this one's secret.
    webhook = await session.get(WebhookConfig, webhook_id, with_for_update=True, populate_existing=True)
    if webhook is None or webhook.account_id != account_id:
        raise NotFound(f"webhook {webhook_id} not found")
    now = clock.now()
    overlap = timedelta(hours=settings.webhook_secret_overlap_hours)
    secret = signing.new_secret()
    # The kept secret is re-encrypted with the current key (legacy clear text too); one that no longer decrypts
    # could not sign anyway, and rotating is the way out of that, so it is dropped rather than failing.
    kept = secrets_at_rest.resealed(settings, webhook.id, webhook.secret) if overlap > timedelta(0) else None
    webhook.previous_secret = kept
    webhook.previous_secret_expires_at = now + overlap if kept is not None else None
    webhook.secret = secrets_at_rest.seal(settings, webhook.id, secret)
    webhook.secret_rotated_at = now
    webhook.updated_at = now
    await session.flush()
    return CreatedWebhook(webhook, secret)


def _secrets_of(settings: Settings, webhook: WebhookConfig | WebhookRow) -> list[str]:
    """The clear secrets to sign with now (the stored values are encrypted; see ``secrets_at_rest``)."""
    return secrets_at_rest.signing_secrets(settings, webhook, clock.now())


# --- events --------------------------------------------------------------------------------------------


def _new_event(
    webhook: WebhookConfig, *, event_id: uuid.UUID, event_type: str, payload: dict[str, Any], is_test: bool
) -> WebhookEvent:
    now = clock.now()
    return WebhookEvent(
        id=event_id,
        account_id=webhook.account_id,
        webhook_id=webhook.id,
        webhook_name=webhook.name,
        event_type=event_type,
        body=orjson.dumps(payload).decode(),
        state=PENDING,
        is_test=is_test,
        attempts_made=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )


async def emit_event(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    event_type: str,
    created_at: datetime,
    body: dict[str, Any],
) -> list[uuid.UUID]:
    """Create one event per webhook of the account subscribed to ``event_type``, each with its own
    ``event_id`` (SPEC §9.2, §12 #32), and enqueue its delivery, in the caller's transaction.

    ``body`` is the event's own part (cmb_payload or survey_payload); the envelope around it is built here
    (``payloads.envelope``). Returns the event ids; none when no webhook is subscribed. The runners wake once the
    caller commits.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    webhooks = [w for w in await list_webhooks(session, account_id) if event_type in w.events]
    event_ids: list[uuid.UUID] = []
    for webhook in webhooks:
        event_id = uuid.uuid4()
        payload = envelope(
            event_id=str(event_id), account_id=account_id, event_type=event_type, created_at=created_at, body=body
        )
        session.add(_new_event(webhook, event_id=event_id, event_type=event_type, payload=payload, is_test=False))
        event_ids.append(event_id)
    if event_ids:
        await session.flush()
        await enqueue_many(session, DELIVER_JOB, [{"event_id": str(e)} for e in event_ids])
    return event_ids


# --- delivery attempts -----------------------------------------------------------------------------------


def retry_schedule(settings: Settings) -> list[timedelta]:
    return list(_parsed_schedule(settings.webhook_retry_schedule))


@functools.lru_cache(maxsize=16)
def _parsed_schedule(value: str) -> tuple[timedelta, ...]:
    """Parsed once per setting value (every attempt asks: it was ~3 % of a delivery's CPU)."""
    return tuple(parse_schedule(value))


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


async def _log_attempts(tx: WriteTx, records: list[AttemptRecord]) -> list[AttemptRecord]:
    """Move the events on and log their attempts, in ``tx``'s transaction; returns the records logged.

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
    return logged


async def write_attempts(session: AsyncSession, records: list[AttemptRecord]) -> None:
    """Log attempts and move their events on, in the caller's transaction (one per batch).

    Each event update is conditional on the attempt number, so that when two runners ran the same
    attempt (at-least-once), only the first one's attempt is logged and only one failure notice goes
    out; an event deleted meanwhile (account removed, log purged) is skipped.
    """
    for record in await _log_attempts(SessionTx(session), records):
        if _notifies(record):
            await _queue_failure_notice(session, record.event, record.number + 1, record.result)


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
    """The process's batched reads and writes for deliveries (see ``batching``).

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
        if any(_notifies(record) for record in records):
            async with self.db.transaction() as session:
                await write_attempts(session, records)
        else:
            await self.db.transact(lambda tx: _log_attempts(tx, records))
        return [None] * len(records)


STORE_KEY = "webhooks.store"


def store_of(services: dict[str, Any], db: Database) -> DeliveryStore:
    store = services.get(STORE_KEY)
    if store is None or store.db is not db:
        store = DeliveryStore(db)
        services[STORE_KEY] = store
    return store  # type: ignore[no-any-return]


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


async def attempt_delivery(
    db: Database, settings: Settings, services: dict[str, Any], event_id: uuid.UUID, *, manual: bool = False
) -> datetime | None:
    """Run the due attempt of one event. Returns when the next attempt is due (None: the event is done).

    The event and its webhook's current config (None once deleted) are read afresh for every attempt.
    A ``manual`` attempt (a resend from the console) is one attempt: no retries, no failure e-mail.
    """
    store = store_of(services, db)
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
        result = await deliverer_of(services, settings).send(
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
    db: Database,
    settings: Settings,
    services: dict[str, Any],
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    event_type: str = "cmb",
) -> SampleDelivery:
    """One synchronous delivery of the sample payload, no retries, logged as a test event (SPEC §9.7).

    The result carries the first 500 characters of the receiver's answer (``attempt.response_excerpt``) for
    the console to show; it is not stored.
    """
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
    result = await deliverer_of(services, settings).send(
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


# --- manual resends (console) ----------------------------------------------------------------------------


def _manual_job(event_id: uuid.UUID) -> dict[str, Any]:
    return {"event_id": str(event_id), "manual": True}


async def resend_event(session: AsyncSession, *, account_id: uuid.UUID, event_id: uuid.UUID) -> None:
    """Send a finished event (``success`` or ``failed``, test events too) once more, in the caller's transaction.

    The event goes back to ``pending`` and one manual attempt is queued: numbered after the previous ones,
    logged like any other, no retries and no failure e-mail. If the webhook was deleted meanwhile, the attempt
    ends the event as ``webhook_deleted``.
    """
    event = await session.get(WebhookEvent, event_id, with_for_update=True, populate_existing=True)
    if event is None or event.account_id != account_id:
        raise NotFound(f"event {event_id} not found")
    if event.state in (PENDING, RESCHEDULED):
        when = iso_z(event.next_attempt_at) if event.next_attempt_at is not None else "due now"
        raise WebhooksError(f"the event is still being delivered; its next attempt is at {when}")
    if event.state == WEBHOOK_DELETED:
        raise WebhooksError("the webhook was deleted")
    now = clock.now()
    event.state, event.next_attempt_at, event.updated_at = PENDING, now, now
    await session.flush()
    await enqueue(session, DELIVER_JOB, _manual_job(event.id))


def _failed_since(account_id: uuid.UUID, since: datetime, webhook_id: uuid.UUID | None) -> list[Any]:
    """Failed events (not test events) created at or after ``since`` whose webhook still exists."""
    webhooks = select(WebhookConfig.id).where(WebhookConfig.account_id == account_id)
    if webhook_id is not None:
        webhooks = webhooks.where(WebhookConfig.id == webhook_id)
    return [
        WebhookEvent.account_id == account_id,
        WebhookEvent.created_at >= since,
        WebhookEvent.state == FAILED,
        WebhookEvent.is_test.is_(False),
        WebhookEvent.webhook_id.in_(webhooks),
    ]


async def count_failed_since(
    session: AsyncSession, *, account_id: uuid.UUID, since: datetime, webhook_id: uuid.UUID | None = None
) -> int:
    """How many events :func:`retry_failed_since` would send again (before its per-run limit)."""
    query = select(func.count()).select_from(WebhookEvent).where(*_failed_since(account_id, since, webhook_id))
    return int(await session.scalar(query) or 0)


async def retry_failed_since(
    session: AsyncSession,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    since: datetime,
    created_by_email: str,
    webhook_id: uuid.UUID | None = None,
    limit: int | None = None,
) -> RetryRun:
    """Send again every failed event of the account created at or after ``since`` (of one webhook, if given)
    whose webhook still exists, as :func:`resend_event` does, in the caller's transaction.

    Test events are left out (they are samples, not business data). At most ``limit`` events per run
    (default ``webhook_retry_all_max_events``), the newest first: older ones beyond the limit stay failed
    for another run. Raises :class:`WebhooksError` when there is nothing to retry. The returned run records
    the event ids, for :func:`retry_run_progress`.
    """
    limit = settings.webhook_retry_all_max_events if limit is None else limit
    events = WebhookEvent.__table__
    newest = (
        select(WebhookEvent.id)
        .where(*_failed_since(account_id, since, webhook_id))
        .order_by(WebhookEvent.created_at.desc(), WebhookEvent.id)
        .limit(limit)
    )
    now = clock.now()
    # One statement (no list of ids as parameters); the state condition holds against concurrent resends.
    updated = await session.execute(
        update(events)
        .where(events.c.id.in_(newest.scalar_subquery()), events.c.state == FAILED)
        .values(state=PENDING, next_attempt_at=now, updated_at=now)
        .returning(events.c.id)
    )
    event_ids = list(updated.scalars())
    if not event_ids:
        raise WebhooksError(f"there are no failed events since {iso_z(since)} to retry")
    await enqueue_many(session, DELIVER_JOB, [_manual_job(e) for e in event_ids])
    run = RetryRun(
        id=uuid.uuid4(),
        account_id=account_id,
        since=since,
        event_ids=[str(e) for e in event_ids],
        created_by_email=created_by_email,
        created_at=now,
    )
    session.add(run)
    await session.flush()
    return run


@dataclass(frozen=True)
class RetryProgress:
    """Where the events of a retry run stand now."""

    run: RetryRun
    total: int
    delivered: int  # success
    failed: int  # failed or webhook_deleted
    in_progress: int  # pending or rescheduled
    purged: int  # no longer in the log (retention, account removal)
    done: bool  # nothing in progress


PROGRESS_CHUNK = 1000  # ids per IN list, well under the drivers' parameter limits


async def retry_run_progress(session: AsyncSession, *, account_id: uuid.UUID, run_id: uuid.UUID) -> RetryProgress:
    run = await session.get(RetryRun, run_id)
    if run is None or run.account_id != account_id:
        raise NotFound(f"retry run {run_id} not found")
    ids = [uuid.UUID(e) for e in run.event_ids]
    counts: dict[str, int] = {}
    for start in range(0, len(ids), PROGRESS_CHUNK):
        chunk = ids[start : start + PROGRESS_CHUNK]
        rows = await session.execute(
            select(WebhookEvent.state, func.count())
            .where(WebhookEvent.account_id == account_id, WebhookEvent.id.in_(chunk))
            .group_by(WebhookEvent.state)
        )
        for state, count in rows:
            counts[state] = counts.get(state, 0) + int(count)
    delivered = counts.get(SUCCESS, 0)
    failed = counts.get(FAILED, 0) + counts.get(WEBHOOK_DELETED, 0)
    in_progress = counts.get(PENDING, 0) + counts.get(RESCHEDULED, 0)
    purged = len(ids) - sum(counts.values())
    return RetryProgress(run, len(ids), delivered, failed, in_progress, purged, done=in_progress == 0)


# --- logs ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventDetails:
    event: WebhookEvent
    attempts: list[WebhookAttempt]
    planned_retries: list[datetime]  # when the remaining retries will run if each fails


async def list_events(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID | None = None,
    event_type: str | None = None,
    state: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[WebhookEvent], int]:
    """Newest first, with the total count of the filtered events (for paging).

    Filters: ``event_type`` (one of ``EVENT_TYPES``), ``state`` (one of ``EVENT_STATES``), created at or after
    ``created_from`` and before ``created_to``. Values are not checked here.
    """
    where = [WebhookEvent.account_id == account_id]
    if webhook_id is not None:
        where.append(WebhookEvent.webhook_id == webhook_id)
    if event_type is not None:
        where.append(WebhookEvent.event_type == event_type)
    if state is not None:
        where.append(WebhookEvent.state == state)
    if created_from is not None:
        where.append(WebhookEvent.created_at >= created_from)
    if created_to is not None:
        where.append(WebhookEvent.created_at < created_to)
    total = await session.scalar(select(func.count()).select_from(WebhookEvent).where(*where))
    query = (
        select(WebhookEvent)
        .where(*where)
        .order_by(WebhookEvent.created_at.desc(), WebhookEvent.id)
        .limit(limit)
        .offset(offset)
    )
    return list((await session.scalars(query)).all()), int(total or 0)


async def get_event(
    session: AsyncSession, settings: Settings, *, account_id: uuid.UUID, event_id: uuid.UUID
) -> EventDetails:
    event = await session.get(WebhookEvent, event_id)
    if event is None or event.account_id != account_id:
        raise NotFound(f"event {event_id} not found")
    attempts = list(
        (
            await session.scalars(
                select(WebhookAttempt).where(WebhookAttempt.event_id == event_id).order_by(WebhookAttempt.number)
            )
        ).all()
    )
    planned: list[datetime] = []
    if event.state == RESCHEDULED and event.next_attempt_at is not None:
        schedule = retry_schedule(settings)
        planned.append(event.next_attempt_at)
        for delay in schedule[event.attempts_made :]:
            planned.append(planned[-1] + delay)
    return EventDetails(event, attempts, planned)


def _log_cutoffs(settings: Settings, now: datetime) -> dict[str, Any]:
    return {"created_before": now - timedelta(days=settings.webhook_log_retention_days)}


_MAILS, _RUNS = OutboxMail.__table__, RetryRun.__table__
# Events (their attempts go with them: ON DELETE CASCADE), notice mails no longer waiting to be sent and retry runs
# older than the retention period (SPEC §9.7), run in chunks by the webhooks.purge_logs job (callerid.jobs.purge).
# Events by ix_webhook_events_created; mails and retry runs are few (failure notices, console actions).
LOG_PURGES = (
    Purge("webhook_events", _EVENTS, _EVENTS.c.created_at < bindparam("created_before"), _log_cutoffs),
    Purge(
        "mail_outbox",
        _MAILS,
        (_MAILS.c.created_at < bindparam("created_before")) & (_MAILS.c.status != mail.QUEUED),
        _log_cutoffs,
    ),
    Purge("webhook_retry_runs", _RUNS, _RUNS.c.created_at < bindparam("created_before"), _log_cutoffs),
)
