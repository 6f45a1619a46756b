"""Services the web console builds on: secret rotation, test answers, resends, "retry all failed since",
log filters; and their ``callerid webhooks`` commands."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.models import Job
from callerid.jobs.purge import purge
from callerid.jobs.runner import JobRunner
from callerid.runtime import Runtime
from callerid.webhooks import secrets_at_rest, service, signing
from callerid.webhooks.delivery import Deliverer
from callerid.webhooks.models import EVENT_STATES, OutboxMail, RetryRun, WebhookConfig, WebhookEvent
from tests.conftest import Tenant, create_tenant
from tests.webhooks.conftest import emit, make_webhook
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_delivery import attempts_of, event_row, outbox

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)
FAIL_AT_ONCE = {"webhook_allow_private": True, "webhook_retry_schedule": ""}


async def deliver_jobs(db: Database) -> list[dict[str, Any]]:
    async with db.session() as session:
        return list((await session.scalars(select(Job.payload).where(Job.kind == service.DELIVER_JOB))).all())


async def set_state(db: Database, event_id: uuid.UUID, state: str) -> None:
    async with db.transaction() as session:
        await session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(state=state))


async def resend(db: Database, tenant: Tenant, event_id: uuid.UUID) -> None:
    async with db.transaction() as session:
        await service.resend_event(session, account_id=tenant.account_id, event_id=event_id)


def signatures(headers: dict[str, str]) -> list[str]:
    return headers["webhook-signature"].split(" ")


@pytest.fixture
def receiver_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """standardwebhooks refuses timestamps 5 minutes away from its own clock: give it ours."""
    import standardwebhooks.webhooks as standard

    class ClockDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> ClockDatetime:
            now = clock.now() if tz is None else clock.now().astimezone(tz)
            return cls.fromtimestamp(now.timestamp(), now.tzinfo)

    monkeypatch.setattr(standard, "datetime", ClockDatetime)


# --- secret rotation --------------------------------------------------------------------------------------


async def test_rotation_signs_with_both_secrets_until_the_overlap_ends(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver, receiver_clock: None
) -> None:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    assert settings.webhook_secret_overlap_hours == 24
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    old = created.secret
    clock.freeze(T0)
    async with db.transaction() as session:
        rotated = await service.rotate_secret(
            session, settings, account_id=tenant.account_id, webhook_id=created.webhook.id
        )
    new = rotated.secret
    assert new.startswith("whsec_") and new != old and rotated.webhook.id == created.webhook.id
    async with db.session() as session:
        row = await session.get(WebhookConfig, created.webhook.id)
    assert row is not None
    assert row.previous_secret is not None  # stored encrypted (see test_secrets_at_rest)
    opened = [secrets_at_rest.unseal(settings, row.id, value) for value in (row.secret, row.previous_secret)]
    assert opened == [new, old]
    assert (row.previous_secret_expires_at, row.secret_rotated_at) == (T0 + timedelta(hours=24), T0)

    await emit(db, tenant.account_id)
    await runner.run_until_idle()
    [request] = receiver.requests
    assert len(signatures(request.headers)) == 2
    assert (
        signing.sign([new, old], request.headers["webhook-id"], int(T0.timestamp()), request.body)
        == (request.headers["webhook-signature"])
    )
    for secret in (old, new):  # a receiver holding either secret accepts the delivery
        assert Webhook(secret).verify(request.body, request.headers) == json.loads(request.body)

    clock.advance(timedelta(hours=23, minutes=59))
    sample = await service.send_test_event(runner.runtime, account_id=tenant.account_id, webhook_id=created.webhook.id)
    assert sample.state == "success"
    assert len(signatures(receiver.requests[1].headers)) == 2  # test sends sign with both too
    Webhook(old).verify(receiver.requests[1].body, receiver.requests[1].headers)

    clock.advance(timedelta(minutes=1))  # the overlap has ended
    await emit(db, tenant.account_id)
    await runner.run_until_idle()
    late = receiver.requests[2]
    assert len(signatures(late.headers)) == 1
    assert Webhook(new).verify(late.body, late.headers) == json.loads(late.body)
    with pytest.raises(WebhookVerificationError, match="No matching signature found"):
        Webhook(old).verify(late.body, late.headers)


async def test_second_rotation_within_the_overlap_keeps_only_the_last_secret(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver, receiver_clock: None
) -> None:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    rotations = []
    for _ in range(2):
        async with db.transaction() as session:
            rotations.append(
                await service.rotate_secret(
                    session, settings, account_id=tenant.account_id, webhook_id=created.webhook.id
                )
            )
        clock.advance(timedelta(hours=1))
    first, second = (r.secret for r in rotations)
    kept = rotations[1].webhook.previous_secret
    assert kept is not None and secrets_at_rest.unseal(settings, created.webhook.id, kept) == first
    assert rotations[1].webhook.previous_secret_expires_at == T0 + timedelta(hours=25)
    await emit(db, tenant.account_id)
    await runner.run_until_idle()
    [request] = receiver.requests
    assert len(signatures(request.headers)) == 2
    Webhook(second).verify(request.body, request.headers)
    Webhook(first).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(created.secret).verify(request.body, request.headers)  # the original secret is gone


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": True, "webhook_secret_overlap_hours": 0}])
async def test_rotation_without_overlap(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    async with db.transaction() as session:
        rotated = await service.rotate_secret(
            session, settings, account_id=tenant.account_id, webhook_id=created.webhook.id
        )
    assert rotated.webhook.previous_secret is None
    await emit(db, tenant.account_id)
    await runner.run_until_idle()
    [request] = receiver.requests
    assert request.headers["webhook-signature"] == signing.sign(
        rotated.secret, request.headers["webhook-id"], int(request.headers["webhook-timestamp"]), request.body
    )


async def test_rotation_of_another_accounts_webhook_is_not_found(
    db: Database, settings: Settings, tenant: Tenant
) -> None:
    other = await create_tenant(db, settings, name="Other")
    created = await make_webhook(db, settings, other.account_id, "http://127.0.0.1:9/x")
    for webhook_id in (created.webhook.id, uuid.uuid4()):
        with pytest.raises(service.NotFound, match=r"^webhook .* not found$"):
            async with db.transaction() as session:
                await service.rotate_secret(session, settings, account_id=tenant.account_id, webhook_id=webhook_id)
    async with db.session() as session:
        row = await session.get(WebhookConfig, created.webhook.id)
    assert row is not None and row.previous_secret is None
    assert secrets_at_rest.unseal(settings, row.id, row.secret) == created.secret


def test_signing_accepts_one_or_several_secrets() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    one = signing.sign(new, "e1", 1_753_945_760, b"{}")
    both = signing.headers([new, old], "e1", 1_753_945_760, b"{}")["webhook-signature"]
    assert both.split(" ")[0] == one and len(both.split(" ")) == 2
    assert signing.verify(old, "e1", "1753945760", b"{}", both)
    assert signing.active_secrets(new, old, T0, T0 - timedelta(seconds=1)) == [new, old]
    assert signing.active_secrets(new, old, T0, T0) == [new]
    assert signing.active_secrets(new, None, None, T0) == [new]


# --- the answer of a test send ------------------------------------------------------------------------------


class Answering:
    """A one-answer-fits-all HTTP server: the given status, body and headers."""

    def __init__(self, body: bytes, *, status: int = 200, headers: dict[str, str] | None = None):
        self.body, self.status, self.headers = body, status, headers or {}
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Answering:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
            head = f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(self.body)}\r\nConnection: close\r\n{extra}\r\n"
            writer.write(head.encode() + self.body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


@pytest.fixture
async def answering() -> AsyncIterator[list[Answering]]:
    servers: list[Answering] = []
    yield servers
    for server in servers:
        await server.stop()


async def test_test_send_returns_the_start_of_the_answer(
    db: Database, settings: Settings, tenant: Tenant, runtime: Runtime, receiver: Receiver, answering: list[Answering]
) -> None:
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)

    async def sample(url: str) -> service.SampleDelivery:
        async with db.transaction() as session:
            await service.update_webhook(
                session, settings, account_id=tenant.account_id, webhook_id=created.webhook.id, url=url
            )
        return await service.send_test_event(runtime, account_id=tenant.account_id, webhook_id=created.webhook.id)

    sent = await sample(receiver.url)
    assert (sent.state, sent.attempt.status_code, sent.attempt.response_excerpt) == ("success", 200, "ok")
    assert sent.attempt.started_at is not None and sent.attempt.duration_ms >= 0

    cases: list[tuple[Answering, str, str]] = [
        (Answering("é".encode() * 600, status=500), "failed", "é" * 500),  # 500 characters, not bytes
        (Answering(b"bad \xff\xfe bytes"), "success", "bad \ufffd\ufffd bytes"),
        (Answering(gzip.compress(b"x" * 100_000), headers={"Content-Encoding": "gzip"}), "success", "x" * 500),
        (Answering(b"", status=404), "failed", ""),
    ]
    for server, state, excerpt in cases:
        answering.append(await server.start())
        sent = await sample(server.url)
        assert (sent.state, sent.attempt.status_code, sent.attempt.response_excerpt) == (state, server.status, excerpt)

    closed = await Answering(b"").start()
    await closed.stop()
    sent = await sample(closed.url)
    assert (sent.attempt.outcome, sent.attempt.response_excerpt) == ("connection_error", None)


async def test_deliveries_do_not_keep_the_answer(settings: Settings, receiver: Receiver) -> None:
    deliverer = Deliverer(settings)
    try:
        result = await deliverer.send(
            webhook_id=uuid.uuid4(), url=receiver.url, secrets=signing.new_secret(), event_id=uuid.uuid4(), body=b"{}"
        )
    finally:
        await deliverer.aclose()
    assert (result.outcome, result.response_excerpt) == ("success", None)
    assert len(signatures(receiver.requests[0].headers)) == 1  # a single secret still works


# --- resending one event --------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": True, "webhook_retry_schedule": "2m"}])
async def test_resend_of_a_failed_event_is_one_attempt_without_mail(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.status = 500
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    clock.advance(timedelta(minutes=2))
    assert await runner.run_until_idle() == 2  # the retry, then the failure notice
    assert (await event_row(db, event_id)).state == "failed"
    assert len(await outbox(db)) == 1

    clock.advance(timedelta(hours=1))
    await resend(db, tenant, event_id)
    event = await event_row(db, event_id)
    assert (event.state, event.next_attempt_at, event.attempts_made) == ("pending", clock.now(), 2)
    assert await deliver_jobs(db) == [{"event_id": str(event_id), "manual": True}]
    assert await runner.run_until_idle() == 1  # one attempt, no notice
    event = await event_row(db, event_id)
    assert (event.state, event.attempts_made, event.next_attempt_at) == ("failed", 3, None)
    attempts = await attempts_of(db, event_id)
    assert [(a.number, a.outcome, a.status_code) for a in attempts] == [
        (0, "http_error", 500),
        (1, "http_error", 500),
        (2, "http_error", 500),
    ]
    assert attempts[2].started_at == T0 + timedelta(minutes=2, hours=1)
    clock.advance(timedelta(days=5))
    assert await runner.run_until_idle() == 0  # no retries of a manual attempt
    assert len(await outbox(db)) == 1 and len(receiver.requests) == 3
    assert {r.headers["webhook-id"] for r in receiver.requests} == {str(event_id)}

    receiver.status = 200
    await resend(db, tenant, event_id)
    await runner.run_until_idle()
    event = await event_row(db, event_id)
    assert (event.state, event.attempts_made) == ("success", 4)
    assert [a.outcome for a in await attempts_of(db, event_id)][-1] == "success"
    assert len(await outbox(db)) == 1


async def test_resend_of_delivered_and_test_events(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    await resend(db, tenant, event_id)
    await runner.run_until_idle()
    assert ((await event_row(db, event_id)).state, (await event_row(db, event_id)).attempts_made) == ("success", 2)
    assert [r.body for r in receiver.requests] == [(await event_row(db, event_id)).body.encode()] * 2

    receiver.status = 500
    sample = await service.send_test_event(runner.runtime, account_id=tenant.account_id, webhook_id=created.webhook.id)
    assert sample.state == "failed"
    receiver.status = 200
    await resend(db, tenant, sample.event.id)
    await runner.run_until_idle()
    event = await event_row(db, sample.event.id)
    assert (event.is_test, event.state, event.attempts_made) == (True, "success", 2)


async def test_resend_refusals(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.status = 500
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    [event_id] = await emit(db, tenant.account_id)
    with pytest.raises(service.WebhooksError, match=r"^the event is still being delivered; its next attempt is at "):
        await resend(db, tenant, event_id)  # pending
    await runner.run_until_idle()
    expected = "the event is still being delivered; its next attempt is at 2026-03-01T09:02:00.0Z"
    with pytest.raises(service.WebhooksError) as refused:
        await resend(db, tenant, event_id)  # rescheduled
    assert str(refused.value) == expected and not isinstance(refused.value, service.NotFound)

    async with db.transaction() as session:
        await service.delete_webhook(session, account_id=tenant.account_id, webhook_id=created.webhook.id)
    clock.advance(timedelta(minutes=2))
    await runner.run_until_idle()
    assert (await event_row(db, event_id)).state == "webhook_deleted"
    with pytest.raises(service.WebhooksError, match=r"^the webhook was deleted$"):
        await resend(db, tenant, event_id)

    other = await create_tenant(db, settings, name="Other")
    for account_id, unknown in ((other.account_id, event_id), (tenant.account_id, uuid.uuid4())):
        with pytest.raises(service.NotFound, match=r"^event .* not found$"):
            async with db.transaction() as session:
                await service.resend_event(session, account_id=account_id, event_id=unknown)
    assert await deliver_jobs(db) == []


async def test_resend_after_the_webhook_was_deleted(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    async with db.transaction() as session:
        await service.delete_webhook(session, account_id=tenant.account_id, webhook_id=created.webhook.id)
    await resend(db, tenant, event_id)
    await runner.run_until_idle()
    event = await event_row(db, event_id)
    assert (event.state, event.attempts_made) == ("webhook_deleted", 2)
    assert [(a.number, a.outcome) for a in await attempts_of(db, event_id)] == [
        (0, "success"),
        (1, "webhook_not_found"),
    ]
    assert len(receiver.requests) == 1 and await outbox(db) == []


async def test_resend_signs_with_both_secrets_during_the_overlap(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    async with db.transaction() as session:
        rotated = await service.rotate_secret(
            session, settings, account_id=tenant.account_id, webhook_id=created.webhook.id
        )
    await resend(db, tenant, event_id)
    await runner.run_until_idle()
    request = receiver.requests[1]
    timestamp = int(request.headers["webhook-timestamp"])
    expected = signing.sign([rotated.secret, created.secret], str(event_id), timestamp, request.body)
    assert request.headers["webhook-signature"] == expected


# --- retry all failed since -------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [FAIL_AT_ONCE])
async def test_retry_failed_since(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.status = 500
    second = await Receiver(status=500).start()
    try:
        a = await make_webhook(db, settings, tenant.account_id, receiver.url, name="A")
        b = await make_webhook(db, settings, tenant.account_id, second.url, name="B")
        gone = await make_webhook(db, settings, tenant.account_id, receiver.url, name="Gone")
        other = await create_tenant(db, settings, name="Other")
        await make_webhook(db, settings, other.account_id, receiver.url)
        clock.freeze(T0)
        early = await emit(db, tenant.account_id)  # before `since`
        clock.advance(timedelta(hours=1))
        since = clock.now()
        middle = await emit(db, tenant.account_id)
        await emit(db, other.account_id)
        clock.advance(timedelta(hours=1))
        late = await emit(db, tenant.account_id)
        delivered = await emit(db, tenant.account_id, "user_feedback")
        await runner.run_until_idle()
        for event_id in delivered:
            await set_state(db, event_id, "success")  # not failed: left alone
        await service.send_test_event(
            runner.runtime, account_id=tenant.account_id, webhook_id=a.webhook.id
        )  # a failed test event: left alone
        async with db.transaction() as session:
            await service.delete_webhook(session, account_id=tenant.account_id, webhook_id=gone.webhook.id)
        by_webhook = {e: (await event_row(db, e)).webhook_id for e in early + middle + late}
        mails_before = len(await outbox(db))

        async with db.session() as session:
            assert await service.count_failed_since(session, account_id=tenant.account_id, since=since) == 4
            assert await service.count_failed_since(session, account_id=tenant.account_id, since=T0) == 6
            count_b = await service.count_failed_since(
                session, account_id=tenant.account_id, since=since, webhook_id=b.webhook.id
            )
            assert count_b == 2

        clock.advance(timedelta(minutes=5))
        async with db.transaction() as session:
            run = await service.retry_failed_since(
                session, settings, account_id=tenant.account_id, since=since, created_by_email="boss@acme.test"
            )
        expected = {e for e in middle + late if by_webhook[e] != gone.webhook.id}
        assert {uuid.UUID(e) for e in run.event_ids} == expected and len(run.event_ids) == 4
        assert (run.since, run.created_by_email, run.created_at) == (since, "boss@acme.test", clock.now())
        for event_id in expected:
            event = await event_row(db, event_id)
            assert (event.state, event.next_attempt_at) == ("pending", clock.now())
        jobs = await deliver_jobs(db)
        assert sorted(j["event_id"] for j in jobs) == sorted(run.event_ids) and {j["manual"] for j in jobs} == {True}

        async with db.session() as session:
            progress = await service.retry_run_progress(session, account_id=tenant.account_id, run_id=run.id)
        assert (progress.total, progress.in_progress, progress.delivered, progress.failed, progress.done) == (
            4,
            4,
            0,
            0,
            False,
        )

        receiver.status = 200  # webhook A answers now, B still fails
        [purged] = [e for e in late if by_webhook[e] == a.webhook.id]
        async with db.transaction() as session:
            await session.delete(await session.get(WebhookEvent, purged))
        assert await runner.run_until_idle() == 4  # the purged event's job finds nothing
        async with db.session() as session:
            progress = await service.retry_run_progress(session, account_id=tenant.account_id, run_id=run.id)
        assert progress.run.id == run.id
        assert (progress.total, progress.delivered, progress.failed, progress.in_progress, progress.purged) == (
            4,
            1,
            2,
            0,
            1,
        )
        assert progress.done
        assert len(await outbox(db)) == mails_before  # manual attempts send no failure mail
        for event_id in expected - {purged}:
            assert (await event_row(db, event_id)).attempts_made == 2
        assert (await event_row(db, early[0])).state == "failed"
        assert await runner.run_until_idle() == 0

        with pytest.raises(service.NotFound, match=r"^retry run .* not found$"):
            async with db.session() as session:
                await service.retry_run_progress(session, account_id=other.account_id, run_id=run.id)
        with pytest.raises(service.WebhooksError, match=r"^there are no failed events since .* to retry$"):
            async with db.transaction() as session:
                await service.retry_failed_since(
                    session,
                    settings,
                    account_id=tenant.account_id,
                    since=since,
                    created_by_email="",
                    webhook_id=a.webhook.id,
                )
    finally:
        await second.stop()


@pytest.mark.parametrize("settings_overrides", [{**FAIL_AT_ONCE, "webhook_retry_all_max_events": 2}])
async def test_retry_failed_since_takes_the_newest_up_to_the_limit(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver
) -> None:
    receiver.status = 500
    created = await make_webhook(db, settings, tenant.account_id, receiver.url)
    clock.freeze(T0)
    emitted = []
    for _ in range(4):
        emitted += await emit(db, tenant.account_id)
        clock.advance(timedelta(minutes=1))
    await runner.run_until_idle()
    async with db.transaction() as session:
        run = await service.retry_failed_since(
            session, settings, account_id=tenant.account_id, since=T0, created_by_email=""
        )
    assert {uuid.UUID(e) for e in run.event_ids} == set(emitted[2:])
    async with db.transaction() as session:
        run = await service.retry_failed_since(
            session, settings, account_id=tenant.account_id, since=T0, created_by_email="", limit=1
        )
    assert [uuid.UUID(e) for e in run.event_ids] == [emitted[1]]
    async with db.transaction() as session:
        run = await service.retry_failed_since(
            session,
            settings,
            account_id=tenant.account_id,
            since=T0,
            created_by_email="",
            webhook_id=created.webhook.id,
        )
    assert [uuid.UUID(e) for e in run.event_ids] == [emitted[0]]


async def test_old_retry_runs_are_purged(db: Database, settings: Settings, tenant: Tenant) -> None:
    clock.freeze(T0)
    async with db.transaction() as session:
        for age in (31, 29):
            session.add(
                RetryRun(
                    account_id=tenant.account_id,
                    since=T0 - timedelta(days=age + 1),
                    event_ids=[],
                    created_at=T0 - timedelta(days=age),
                )
            )
    await purge(db, settings, service.LOG_PURGES)
    async with db.session() as session:
        kept = list((await session.scalars(select(RetryRun.created_at))).all())
    assert kept == [T0 - timedelta(days=29)]


# --- event log filters ----------------------------------------------------------------------------------


async def test_event_log_filters(db: Database, settings: Settings, tenant: Tenant) -> None:
    assert EVENT_STATES == ("pending", "success", "rescheduled", "webhook_deleted", "failed")
    a = await make_webhook(db, settings, tenant.account_id, "http://127.0.0.1:9/a", name="A")
    await make_webhook(db, settings, tenant.account_id, "http://127.0.0.1:9/b", name="B", events="cmb")
    clock.freeze(T0)
    cmb_1 = await emit(db, tenant.account_id, "cmb")  # T0: A and B
    clock.advance(timedelta(hours=1))
    feedback = await emit(db, tenant.account_id, "user_feedback")  # T0+1h: A
    clock.advance(timedelta(hours=1))
    cmb_2 = await emit(db, tenant.account_id, "cmb")  # T0+2h: A and B
    for event_id in cmb_1:
        await set_state(db, event_id, "failed")
    await set_state(db, feedback[0], "success")

    async def ids(**filters: Any) -> tuple[set[uuid.UUID], int]:
        async with db.session() as session:
            rows, total = await service.list_events(session, account_id=tenant.account_id, **filters)
        assert [r.created_at for r in rows] == sorted((r.created_at for r in rows), reverse=True)
        return {r.id for r in rows}, total

    assert await ids() == (set(cmb_1 + feedback + cmb_2), 5)
    assert await ids(event_type="user_feedback") == (set(feedback), 1)
    assert await ids(event_type="cmb", state="pending") == (set(cmb_2), 2)
    assert await ids(state="failed") == (set(cmb_1), 2)
    assert await ids(created_from=T0 + timedelta(hours=1)) == (set(feedback + cmb_2), 3)
    assert await ids(created_to=T0 + timedelta(hours=1)) == (set(cmb_1), 2)  # exclusive
    window = {"created_from": T0 + timedelta(hours=1), "created_to": T0 + timedelta(hours=2)}
    assert await ids(**window) == (set(feedback), 1)
    both = await ids(webhook_id=a.webhook.id, event_type="cmb", created_from=T0)
    assert both[1] == 2 and both[0] < set(cmb_1 + cmb_2)
    async with db.session() as session:
        rows, total = await service.list_events(session, account_id=tenant.account_id, event_type="cmb", limit=1)
    assert total == 4 and len(rows) == 1 and rows[0].id in cmb_2
    async with db.session() as session:
        assert await service.list_events(session, account_id=tenant.account_id, state="rescheduled") == ([], 0)


# --- the commands -------------------------------------------------------------------------------------------


async def test_console_commands(tmp_path: Path, receiver: Receiver) -> None:
    from tests.webhooks.test_processes import Cli

    cli = Cli(tmp_path)
    account = (await cli.json("accounts", "create", "--name", "Acme", "--admin-email", "boss@acme.test"))[
        "client_account_id"
    ]
    created = await cli.json(
        "webhooks", "create", "--account", account, "--name", "Orders", "--url", receiver.url, "--events", "cmb"
    )
    rotated = await cli.json("webhooks", "rotate-secret", "--account", account, "--id", created["id"])
    assert rotated["id"] == created["id"] and rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"] and rotated["previous_secret_expires_at"].endswith("Z")
    assert "not found" in await cli.fails("webhooks", "rotate-secret", "--account", account, "--id", str(uuid.uuid4()))

    receiver.status = 500
    tested = await cli.json("webhooks", "test", "--account", account, "--id", created["id"])
    assert (tested["state"], tested["response_excerpt"]) == ("failed", "ok")
    assert len(signatures(receiver.requests[0].headers)) == 2
    assert await cli.json("webhooks", "resend", "--account", account, "--event", tested["event_id"]) == {
        "event_id": tested["event_id"],
        "state": "pending",
        "queued": True,
    }
    stderr = await cli.fails("webhooks", "resend", "--account", account, "--event", tested["event_id"])
    assert "the event is still being delivered; its next attempt is at" in stderr

    db = Database(cli.url)
    try:
        account_id = uuid.UUID(account)
        [event_id] = await emit(db, account_id)
        await set_state(db, event_id, "failed")
        since = "2000-01-01T00:00:00Z"
        dry = await cli.json("webhooks", "retry-failed", "--account", account, "--since", since, "--dry-run")
        assert dry == {"since": "2000-01-01T00:00:00.0Z", "failed_events": 1, "would_retry": 1}
        assert (await event_row(db, event_id)).state == "failed"
        done = await cli.json("webhooks", "retry-failed", "--account", account, "--since", since, "--id", created["id"])
        assert (done["failed_events"], done["queued"], done["limit"]) == (1, 1, 10_000)
        assert (await event_row(db, event_id)).state == "pending"
        async with db.session() as session:
            [run] = (await session.scalars(select(RetryRun))).all()
        assert str(run.id) == done["run_id"] and run.event_ids == [str(event_id)]
        assert {"event_id": str(event_id), "manual": True} in await deliver_jobs(db)
        stderr = await cli.fails("webhooks", "retry-failed", "--account", account, "--since", since)
        assert "there are no failed events since" in stderr
        assert "not an ISO 8601 time" in await cli.fails(
            "webhooks", "retry-failed", "--account", account, "--since", "yesterday"
        )
        async with db.session() as session:
            assert list((await session.scalars(select(OutboxMail))).all()) == []
    finally:
        await db.dispose()
