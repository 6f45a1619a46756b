"""Webhook events: emitting them (one per subscribed webhook, with their queued deliveries, in the caller's
transaction), manual resends and retry runs from the console, and the events log with its retention.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.accounts.service import get_account
from callerid.analytics.counting import WEBHOOK_COUNTER, add_in_session, add_webhook_delivery, delivery_delay_ms
from callerid.analytics.tally import Tally
from callerid.config import Settings
from callerid.jobs.purge import Purge
from callerid.jobs.service import enqueue, enqueue_many
from callerid.timefmt import iso_z
from callerid.webhooks import mail
from callerid.webhooks.configs import DELIVER_JOB, NotFound, WebhooksError, list_webhooks, retry_schedule
from callerid.webhooks.models import (
    EVENT_TYPES,
    FAILED,
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
from callerid.webhooks.payloads import envelope

_EVENTS = WebhookEvent.__table__


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
    if not event.is_test:
        await _take_back(session, [(event.id, event.created_at, event.state, event.attempts_made)], event.account_id)
    event.state, event.next_attempt_at, event.updated_at = PENDING, now, now
    await session.flush()
    await enqueue(session, DELIVER_JOB, _manual_job(event.id))


_LAST_ATTEMPT = select(WebhookAttempt.started_at, WebhookAttempt.duration_ms).where(
    WebhookAttempt.event_id == bindparam("event_id"), WebhookAttempt.number == bindparam("number")
)


async def _take_back(
    session: AsyncSession, events: list[tuple[uuid.UUID, datetime, str, int]], account_id: uuid.UUID
) -> None:
    """Events sent again leave their final state: that state (and a success's delay) no longer counts in the daily
    figures; the state the new attempt ends in counts instead. ``events``: (id, created_at, state, attempts made)."""
    tally = Tally()
    timezone = (await get_account(session, account_id)).timezone
    for event_id, created_at, state, attempts_made in events:
        if state not in WEBHOOK_COUNTER:
            continue
        delay = None
        if state == SUCCESS:
            last = (await session.execute(_LAST_ATTEMPT, {"event_id": event_id, "number": attempts_made - 1})).first()
            delay = None if last is None else delivery_delay_ms(created_at, last.started_at, last.duration_ms)
        add_webhook_delivery(tally, account_id, timezone, created_at, state, delay, amount=-1)
    await add_in_session(session, tally)


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
        .returning(events.c.id, events.c.created_at)
    )
    rows = updated.all()
    event_ids = [row.id for row in rows]
    await _take_back(session, [(row.id, row.created_at, FAILED, 0) for row in rows], account_id)
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
