"""Deliveries (SPEC §9.2-§9.6): events per webhook, signed POSTs, outcomes, the exact retry schedule."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.models import Job
from callerid.jobs.purge import purge
from callerid.jobs.runner import JobRunner
from callerid.runtime import Runtime
from callerid.webhooks import attempts, service
from callerid.webhooks.models import OutboxMail, WebhookAttempt, WebhookEvent
from tests.conftest import Tenant
from tests.webhooks.conftest import emit, make_webhook
from tests.webhooks.receiver import Receiver

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)
SPEC_DELAYS = [
    timedelta(minutes=2),
    timedelta(minutes=6),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=5),
    timedelta(days=1),
    timedelta(days=2),
]


async def event_row(db: Database, event_id: uuid.UUID) -> WebhookEvent:
    async with db.session() as session:
        event = await session.get(WebhookEvent, event_id)
    assert event is not None
    return event


async def attempts_of(db: Database, event_id: uuid.UUID) -> list[WebhookAttempt]:
    async with db.session() as session:
        rows = await session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.event_id == event_id).order_by(WebhookAttempt.number)
        )
        return list(rows.all())


async def outbox(db: Database) -> list[OutboxMail]:
    async with db.session() as session:
        return list((await session.scalars(select(OutboxMail))).all())


async def queued_jobs(db: Database, kind: str) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Job).where(Job.kind == kind)) or 0)


# --- events --------------------------------------------------------------------------------------------


async def test_no_subscribed_webhook_no_event(db: Database, settings: Settings, tenant: Tenant) -> None:
    assert await emit(db, tenant.account_id, "cmb") == []
    await make_webhook(db, settings, tenant.account_id, "http://127.0.0.1:9/x", events="user_feedback")
    assert await emit(db, tenant.account_id, "cmb") == []
    assert await queued_jobs(db, "webhooks.deliver") == 0


async def test_one_event_per_subscribed_webhook(db: Database, settings: Settings, tenant: Tenant) -> None:
    a = await make_webhook(db, settings, tenant.account_id, "http://127.0.0.1:9/a", name="A", events="cmb")
    b = await make_webhook(db, settings, tenant.account_id, "http://127.0.0.1:9/b", name="B")
    await make_webhook(db, settings, tenant.account_id, "http://127.0.0.1:9/c", name="C", events="user_feedback")
    ids = await emit(db, tenant.account_id, "cmb")
    assert len(ids) == 2 and len(set(ids)) == 2
    events = [await event_row(db, i) for i in ids]
    assert {e.webhook_id for e in events} == {a.webhook.id, b.webhook.id}
    for event in events:
        assert event.state == "pending" and event.event_type == "cmb" and event.attempts_made == 0
        assert json.loads(event.body)["event_id"] == str(event.id)  # the envelope holds this event's own id
    assert await queued_jobs(db, "webhooks.deliver") == 2


# --- a delivery -----------------------------------------------------------------------------------------


async def test_delivery_is_signed_and_logged(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    [event_id] = await emit(db, tenant.account_id, "user_feedback")
    assert await runner.run_until_idle() == 1

    [request] = receiver.requests
    assert (request.method, request.target) == ("POST", "/hook?key=s3cret")  # called exactly as stored
    event = await event_row(db, event_id)
    assert request.body == event.body.encode()
    assert json.loads(request.body)["event_type"] == "user_feedback"
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == settings.webhook_user_agent
    assert headers["webhook-id"] == str(event_id)
    assert headers["webhook-timestamp"] == str(int(T0.timestamp()))
    # The documented algorithm: HMAC-SHA256 over "id.timestamp.body" with the base64-decoded secret.
    key = base64.b64decode(created.secret.removeprefix("whsec_"))
    signed = f"{event_id}.{int(T0.timestamp())}.".encode() + request.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"

    assert (event.state, event.attempts_made, event.next_attempt_at) == ("success", 1, None)
    [attempt] = await attempts_of(db, event_id)
    assert (attempt.number, attempt.outcome, attempt.status_code, attempt.error) == (0, "success", 200, None)
    assert attempt.started_at == T0 and attempt.duration_ms >= 0 and attempt.url == receiver.url
    assert await queued_jobs(db, "webhooks.deliver") == 0


async def test_signature_verifies_with_standardwebhooks(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    from standardwebhooks.webhooks import Webhook

    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    await emit(db, tenant.account_id, "cmb")
    await runner.run_until_idle()
    [request] = receiver.requests
    verified = Webhook(created.secret).verify(request.body, request.headers)
    assert verified == json.loads(request.body)
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(created.secret).verify(request.body + b" ", request.headers)


# --- retries -------------------------------------------------------------------------------------------


async def test_retries_follow_the_spec_schedule_then_fail_and_mail_admins(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    assert service.retry_schedule(settings) == SPEC_DELAYS
    receiver.status = 500
    await make_webhook(db, settings, tenant.account_id, receiver.url, name="Flowers")
    clock.freeze(T0)
    [event_id] = await emit(db, tenant.account_id, "cmb")
    await runner.run_until_idle()
    expected_start = T0
    for number, delay in enumerate(SPEC_DELAYS, start=1):
        event = await event_row(db, event_id)
        assert (event.state, event.attempts_made) == ("rescheduled", number)
        assert event.next_attempt_at == expected_start + delay
        clock.advance(delay - timedelta(seconds=1))
        assert await runner.run_until_idle() == 0  # not a second early
        assert len(receiver.requests) == number
        clock.advance(timedelta(seconds=1))
        # the last failed attempt also queues the failure notice, which runs at once
        assert await runner.run_until_idle() == (2 if number == len(SPEC_DELAYS) else 1)
        assert len(receiver.requests) == number + 1
        expected_start += delay

    attempts = await attempts_of(db, event_id)
    assert [a.number for a in attempts] == list(range(8))
    offsets = [a.started_at - T0 for a in attempts]
    assert offsets == [
        timedelta(0),
        timedelta(minutes=2),
        timedelta(minutes=8),
        timedelta(minutes=38),
        timedelta(hours=1, minutes=38),
        timedelta(hours=6, minutes=38),
        timedelta(days=1, hours=6, minutes=38),
        timedelta(days=3, hours=6, minutes=38),
    ]
    assert {(a.outcome, a.status_code, a.error) for a in attempts} == {("http_error", 500, "HTTP 500")}
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1  # same event id across retries
    event = await event_row(db, event_id)
    assert (event.state, event.attempts_made, event.next_attempt_at) == ("failed", 8, None)

    clock.advance(timedelta(days=10))
    assert await runner.run_until_idle() == 0
    [notice] = await outbox(db)
    assert notice.recipients == [tenant.admin_email]
    assert notice.subject == "Webhook Flowers failed to deliver a cmb event"
    assert str(event_id) in notice.body and "Last error: HTTP 500" in notice.body and "Flowers" in notice.body
    assert notice.status == "outbox"  # no SMTP configured: kept for the console
    assert len(receiver.requests) == 8


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": True, "webhook_retry_schedule": "1s,1s"}])
async def test_schedule_is_a_setting(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.status = 503
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    [event_id] = await emit(db, tenant.account_id)
    for _ in range(3):
        await runner.run_until_idle()
        clock.advance(1)
    await runner.run_until_idle()
    event = await event_row(db, event_id)
    assert (event.state, event.attempts_made) == ("failed", 3)
    assert len(receiver.requests) == 3


async def test_recovers_on_a_retry(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.status = 500
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    receiver.status = 200
    clock.advance(timedelta(minutes=2))
    await runner.run_until_idle()
    event = await event_row(db, event_id)
    assert (event.state, event.attempts_made) == ("success", 2)
    assert [(a.number, a.outcome, a.status_code) for a in await attempts_of(db, event_id)] == [
        (0, "http_error", 500),
        (1, "success", 200),
    ]
    assert await outbox(db) == []


async def test_next_retry_uses_the_updated_url(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.status = 500
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    second = await Receiver().start()
    try:
        async with db.transaction() as session:
            await service.update_webhook(
                session, settings, account_id=tenant.account_id, webhook_id=created.webhook.id, url=second.url
            )
        clock.advance(timedelta(minutes=2))
        await runner.run_until_idle()
        assert len(second.requests) == 1 and len(receiver.requests) == 1
        assert second.requests[0].headers["webhook-id"] == str(event_id)
    finally:
        await second.stop()
    assert [a.url for a in await attempts_of(db, event_id)] == [receiver.url, second.url]
    assert (await event_row(db, event_id)).state == "success"


async def test_deleted_webhook_ends_event_without_sending(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    [event_id] = await emit(db, tenant.account_id)
    async with db.transaction() as session:
        await service.delete_webhook(session, account_id=tenant.account_id, webhook_id=created.webhook.id)
    await runner.run_until_idle()
    assert receiver.requests == []
    event = await event_row(db, event_id)
    assert (event.state, event.attempts_made, event.next_attempt_at) == ("webhook_deleted", 1, None)
    [attempt] = await attempts_of(db, event_id)
    assert (attempt.number, attempt.outcome, attempt.status_code) == (0, "webhook_not_found", None)
    clock.advance(timedelta(days=4))
    assert await runner.run_until_idle() == 0
    assert await outbox(db) == []


async def test_deleted_between_retries(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.status = 500
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    async with db.transaction() as session:
        await service.delete_webhook(session, account_id=tenant.account_id, webhook_id=created.webhook.id)
    clock.advance(timedelta(minutes=2))
    await runner.run_until_idle()
    assert len(receiver.requests) == 1
    assert [(a.number, a.outcome) for a in await attempts_of(db, event_id)] == [
        (0, "http_error"),
        (1, "webhook_not_found"),
    ]
    assert (await event_row(db, event_id)).state == "webhook_deleted"


# --- outcomes ------------------------------------------------------------------------------------------


async def test_redirect_is_a_failure_and_not_followed(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.status = 302
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    [attempt] = await attempts_of(db, event_id)
    assert (attempt.outcome, attempt.status_code, attempt.error) == ("http_error", 302, "HTTP 302")
    assert len(receiver.requests) == 1


async def test_204_fails_by_default(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.status = 204
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    assert (await event_row(db, event_id)).state == "rescheduled"


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": True, "webhook_accept_any_2xx": True}])
async def test_any_2xx_when_configured(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.status = 204
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    assert (await event_row(db, event_id)).state == "success"


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": True, "webhook_read_timeout_seconds": 0.3}])
async def test_read_timeout(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.hang = True
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    [attempt] = await attempts_of(db, event_id)
    assert (attempt.outcome, attempt.status_code, attempt.error) == ("timeout", None, "no data within 0.3 s")
    assert 250 <= attempt.duration_ms < 5000
    assert (await event_row(db, event_id)).state == "rescheduled"


@pytest.mark.parametrize(
    "settings_overrides",
    [{"webhook_allow_private": True, "webhook_read_timeout_seconds": 5, "webhook_total_timeout_seconds": 0.3}],
)
async def test_whole_call_timeout(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.hang = True
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    [attempt] = await attempts_of(db, event_id)
    assert (attempt.outcome, attempt.error) == ("timeout", "no answer within 0.3 s")


async def test_connection_refused(db: Database, settings: Settings, tenant: Tenant, runner: JobRunner) -> None:
    closed = await Receiver().start()
    await closed.stop()  # nothing listens on this port any more
    await make_webhook(db, settings, tenant.account_id, closed.url)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    [attempt] = await attempts_of(db, event_id)
    assert attempt.outcome == "connection_error" and attempt.status_code is None and attempt.error


async def test_private_address_refused_at_send_time(
    db: Database,
    settings: Settings,
    tenant: Tenant,
    receiver: Receiver,
    runtime_with: Callable[[Settings], Runtime],
) -> None:
    # Created while the operator allowed private addresses, sent after they stopped allowing them.
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    [event_id] = await emit(db, tenant.account_id)
    strict = settings.model_copy(update={"webhook_allow_private": False})
    await JobRunner(runtime_with(strict)).run_until_idle()
    assert receiver.requests == []
    [attempt] = await attempts_of(db, event_id)
    assert attempt.outcome == "connection_error"
    assert attempt.error == "refused: url host 127.0.0.1 is a loopback address; webhooks may only call public addresses"


@pytest.mark.parametrize(
    "settings_overrides", [{"webhook_allow_private": True, "webhook_max_concurrency_per_webhook": 2}]
)
async def test_concurrency_is_bounded_per_webhook(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.delay = 0.05
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    for _ in range(6):
        await emit(db, tenant.account_id)
    assert await runner.run_until_idle() == 6
    assert len(receiver.requests) == 6
    assert receiver.peak == 2


# --- test events, retention ------------------------------------------------------------------------------


async def test_test_event_is_one_synchronous_attempt(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver, runtime: Runtime
) -> None:
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    sent = await service.send_test_event(runtime, account_id=tenant.account_id, webhook_id=created.webhook.id)
    assert (sent.state, sent.attempt.outcome, sent.attempt.status_code) == ("success", "success", 200)
    payload = json.loads(receiver.requests[0].body)
    assert list(payload) == ["event_id", "client_account_id", "event_type", "created_at", "cmb_payload"]
    assert payload["event_id"] == str(sent.event.id) and payload["client_account_id"] == str(tenant.account_id)
    assert payload["cmb_payload"]["cmb_config_name"] == "CMBName"

    receiver.status = 500
    failed = await service.send_test_event(
        runtime,
        account_id=tenant.account_id,
        webhook_id=created.webhook.id,
        event_type="user_feedback",
    )
    assert (failed.state, failed.attempt.outcome, failed.attempt.status_code) == ("failed", "http_error", 500)
    assert "survey_payload" in json.loads(receiver.requests[1].body)
    event = await event_row(db, failed.event.id)
    assert (event.is_test, event.state, event.attempts_made) == (True, "failed", 1)
    clock.advance(timedelta(days=5))
    assert await runner.run_until_idle() == 0  # no retries for a test
    assert await outbox(db) == []  # and no failure mail
    with pytest.raises(service.NotFound):
        await service.send_test_event(runtime, account_id=tenant.account_id, webhook_id=uuid.uuid4())
    with pytest.raises(service.WebhooksError, match=r"^event type must be cmb or user_feedback$"):
        await service.send_test_event(
            runtime,
            account_id=tenant.account_id,
            webhook_id=created.webhook.id,
            event_type="sms",
        )
    assert len(receiver.requests) == 2


async def test_logs_older_than_30_days_are_purged(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    [old] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    clock.advance(timedelta(days=1))
    [recent] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    clock.advance(timedelta(days=29, seconds=1))  # old is 30 days + 1 s old, recent 29 days + 1 s
    assert (await purge(db, settings, service.LOG_PURGES)).deleted["webhook_events"] == 1
    async with db.session() as session:
        assert await session.get(WebhookEvent, old) is None
        assert await session.get(WebhookEvent, recent) is not None
    assert await attempts_of(db, old) == []
    assert len(await attempts_of(db, recent)) == 1


async def test_event_details_show_planned_retries(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.status = 500
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    async with db.session() as session:
        details = await service.get_event(session, settings, account_id=tenant.account_id, event_id=event_id)
        events, total = await service.list_events(session, account_id=tenant.account_id)
    assert [e.id for e in events] == [event_id] and total == 1
    assert [(a.number, a.outcome) for a in details.attempts] == [(0, "http_error")]
    expected = []
    at = T0
    for delay in SPEC_DELAYS:
        at += delay
        expected.append(at)
    assert details.planned_retries == expected


@pytest.mark.parametrize(
    "settings_overrides",
    [{"webhook_allow_private": True, "webhook_max_concurrency_per_webhook": 1, "webhook_read_timeout_seconds": 0.5}],
)
async def test_busy_webhook_gives_its_runner_slot_back(
    db: Database,
    settings: Settings,
    tenant: Tenant,
    runner: JobRunner,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(attempts, "BUSY_WAIT_SECONDS", 0.1)
    receiver.hang = True
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    first, second = await emit(db, tenant.account_id), await emit(db, tenant.account_id)
    assert await runner.run_until_idle() == 2
    assert len(receiver.requests) == 1  # one in flight at a time; the other job went back to the queue
    states = {e: (await event_row(db, e)).state for e in (*first, *second)}
    assert sorted(states.values()) == ["pending", "rescheduled"]
    [waiting] = [e for e, state in states.items() if state == "pending"]
    assert await attempts_of(db, waiting) == []  # no attempt was spent
    async with db.session() as session:
        dues = sorted((await session.scalars(select(Job.due_at).where(Job.kind == "webhooks.deliver"))).all())
    assert dues == [T0 + timedelta(seconds=1), T0 + timedelta(minutes=2)]
    receiver.hang = False
    clock.advance(timedelta(seconds=1))
    assert await runner.run_until_idle() == 1
    assert (await event_row(db, waiting)).state == "success"


async def test_attempt_writes_skip_vanished_and_duplicate_events(
    db: Database, settings: Settings, tenant: Tenant, receiver: Receiver
) -> None:
    from callerid.webhooks.delivery import AttemptResult

    await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    kept, vanished = await emit(db, tenant.account_id), await emit(db, tenant.account_id)
    kept_event, vanished_event = await event_row(db, kept[0]), await event_row(db, vanished[0])
    async with db.transaction() as session:
        await session.delete(await session.get(WebhookEvent, vanished[0]))
    ok = AttemptResult("success", 200, None, T0, 5)
    records = [
        service.plan_attempt(settings, kept_event, 0, receiver.url, ok, retries=True),
        service.plan_attempt(settings, vanished_event, 0, receiver.url, ok, retries=True),
    ]
    async with db.transaction() as session:
        await service.write_attempts(session, records)
    async with db.transaction() as session:  # the same attempt written again by a second runner
        await service.write_attempts(session, records[:1])
    assert [(a.number, a.outcome) for a in await attempts_of(db, kept[0])] == [(0, "success")]
    assert (await event_row(db, kept[0])).state == "success"
    assert await attempts_of(db, vanished[0]) == []


async def test_the_delivery_store_writes_like_write_attempts(
    db: Database, settings: Settings, tenant: Tenant, receiver: Receiver
) -> None:
    """The batched writer's own paths (SQLite's loop-thread writer, PostgreSQL's one statement) keep the rules of
    ``write_attempts``: the first of duplicates counts, vanished events are skipped, a second runner's copy of an
    attempt is not logged, and each event moves to its own next state."""
    from callerid.webhooks.delivery import AttemptResult

    await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    ok, failed = AttemptResult("success", 200, None, T0, 5), AttemptResult("http_error", 500, "HTTP 500", T0, 7)
    kept, retried, vanished = [(await emit(db, tenant.account_id))[0] for _ in range(3)]
    events = {event_id: await event_row(db, event_id) for event_id in (kept, retried, vanished)}
    async with db.transaction() as session:
        await session.delete(await session.get(WebhookEvent, vanished))
    records = [
        service.plan_attempt(settings, events[kept], 0, receiver.url, ok, retries=True),
        service.plan_attempt(settings, events[retried], 0, receiver.url, failed, retries=True),
        service.plan_attempt(settings, events[vanished], 0, receiver.url, ok, retries=True),
        service.plan_attempt(settings, events[kept], 0, receiver.url, failed, retries=True),  # a duplicate
    ]
    store = service.DeliveryStore(db)
    assert await asyncio.gather(*(store.writes.submit(record) for record in records)) == [None] * 4  # one batch
    await store.writes.submit(records[0])  # the same attempt written again by a second runner
    assert [(a.number, a.outcome, a.status_code) for a in await attempts_of(db, kept)] == [(0, "success", 200)]
    assert [(a.number, a.outcome, a.error) for a in await attempts_of(db, retried)] == [(0, "http_error", "HTTP 500")]
    assert await attempts_of(db, vanished) == []
    kept_event, retried_event = await event_row(db, kept), await event_row(db, retried)
    assert (kept_event.state, kept_event.attempts_made, kept_event.next_attempt_at) == ("success", 1, None)
    assert (retried_event.state, retried_event.attempts_made, retried_event.next_attempt_at) == (
        "rescheduled",
        1,
        T0 + timedelta(minutes=2),
    )
    assert (await store.loads.submit(vanished)) is None
    loaded = await store.loads.submit(kept)
    assert loaded is not None and loaded[0].state == "success" and loaded[1] is not None
    assert loaded[1].url == receiver.url
