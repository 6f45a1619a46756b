"""Webhooks through the console: create (secret once), test with the receiver's answer, the event log and its
filters and CSV, an event's attempts, resend, secret rotation, retry all failed with progress, delete."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update
from standardwebhooks import Webhook

from callerid import clock
from callerid.db import Database
from callerid.jobs.models import Job
from callerid.jobs.runner import JobRunner
from callerid.webhooks.models import FAILED, WebhookConfig, WebhookEvent
from tests.console.conftest import ConsoleAccount, csrf_of, page_csrf
from tests.webhooks.conftest import emit
from tests.webhooks.receiver import Receiver

EVENT_LINK = re.compile(r'href="/console/webhooks/events/[0-9a-f-]{36}"')


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


async def create_webhook(admin: httpx.AsyncClient, url: str, name: str = "Orders", **fields: str) -> httpx.Response:
    csrf = await page_csrf(admin, "/console/webhooks/new")
    data = {"csrf_token": csrf, "name": name, "url": url, "event_cmb": "on", "event_user_feedback": "on"}
    data.update(fields)
    return await admin.post("/console/webhooks", data={k: v for k, v in data.items() if v != ""})


def secret_on(page: str) -> str:
    found = re.search(r"<code class=\"mono\">(whsec_[A-Za-z0-9+/=]+)</code>", page)
    assert found is not None, "no secret shown"
    return found.group(1)


async def webhook_id(db: Database, name: str) -> uuid.UUID:
    async with db.session() as session:
        found = await session.scalar(select(WebhookConfig.id).where(WebhookConfig.name == name))
    assert found is not None
    return found


async def test_create_test_and_read_the_log_of_a_webhook(
    admin: httpx.AsyncClient, db: Database, receiver: Receiver, console_account: ConsoleAccount
) -> None:
    created = await create_webhook(admin, receiver.url)
    assert created.status_code == 200
    secret = secret_on(created.text)
    assert "It will not be shown again" in created.text
    hook = await webhook_id(db, "Orders")
    page = await admin.get(f"/console/webhooks/{hook}")
    assert secret not in page.text

    # Test webhook (as htmx sends it): the receiver's status, time and answer, and the event in the log.
    csrf = csrf_of(page.text)
    tested = await admin.post(
        f"/console/webhooks/{hook}/test",
        data={"csrf_token": csrf, "event_type": "user_feedback"},
        headers={"HX-Request": "true"},
    )
    assert tested.status_code == 200
    assert "<!doctype html>" not in tested.text  # a fragment for the swap
    # ... and the recent events, refreshed out of band.
    assert '<section class="card" id="recent-events" aria-labelledby="events-title" hx-swap-oob="true">' in tested.text
    assert "User feedback (test)</a>" in tested.text
    assert "Delivered" in tested.text and "HTTP 200" in tested.text and '<code class="mono">ok</code>' in tested.text
    [request] = receiver.requests
    assert request.target == "/hook?key=s3cret"
    Webhook(secret).verify(request.body, request.headers)  # signed with the secret shown once
    event_id = re.search(r'href="/console/webhooks/events/([0-9a-f-]{36})"', tested.text)
    assert event_id is not None

    # Without JavaScript the same form answers with the whole page.
    receiver.status = 500
    full = await admin.post(f"/console/webhooks/{hook}/test", data={"csrf_token": csrf, "event_type": "cmb"})
    assert "<!doctype html>" in full.text and "Failed" in full.text and "HTTP 500" in full.text

    log = await admin.get("/console/webhooks/events")
    assert len(EVENT_LINK.findall(log.text)) == 2
    failed = await admin.get("/console/webhooks/events?state=failed&type=cmb")
    assert len(EVENT_LINK.findall(failed.text)) == 1
    assert "1 event ·" not in failed.text and ">1 event<" in failed.text
    none = await admin.get(f"/console/webhooks/events?webhook={uuid.uuid4()}")
    assert "No event matches these filters" in none.text
    bad = await admin.get("/console/webhooks/events?state=lost&from=yesterday")
    assert bad.status_code == 400
    assert '<p class="error" id="state-error">choose a state from the list</p>' in bad.text
    assert '<p class="error" id="from-error">from must be a date (YYYY-MM-DD)</p>' in bad.text
    csv = await admin.get("/console/webhooks/events/export.csv?state=failed")
    assert csv.headers["content-disposition"] == 'attachment; filename="webhook-events.csv"'
    rows = csv.text.splitlines()
    assert rows[0] == "event_id,webhook,event_type,state,test,attempts,next_attempt_at,created_at"
    assert len(rows) == 2 and ",Orders,cmb,failed,yes,1,," in rows[1]

    # The event page: payload, every attempt, and Resend.
    event = await admin.get(f"/console/webhooks/events/{event_id.group(1)}")
    assert "Flower Quality Check" in event.text  # the sample payload
    assert "HTTP 200" in event.text and receiver.url.replace("&", "&amp;") in event.text
    receiver.status = 200
    resent = await admin.post(
        f"/console/webhooks/events/{event_id.group(1)}/resend", data={"csrf_token": csrf_of(event.text)}
    )
    assert resent.status_code == 303
    async with db.session() as session:
        state = await session.scalar(select(WebhookEvent.state).where(WebhookEvent.id == uuid.UUID(event_id.group(1))))
    assert state == "pending"


async def test_bad_webhook_input_is_shown_next_to_its_field(admin: httpx.AsyncClient, receiver: Receiver) -> None:
    cases = [
        ({"name": ""}, "name", "name is required"),
        ({"name": "x" * 51}, "name", "name must be at most 50 characters"),
        ({"url": "ftp://example.com/hook"}, "url", "url must be an absolute http or https URL"),
        ({"event_cmb": "", "event_user_feedback": ""}, "events", "events must be one or both of cmb, user_feedback"),
    ]
    for fields, field, message in cases:
        response = await create_webhook(admin, fields.pop("url", receiver.url), **fields)
        assert response.status_code == 400, fields
        assert f'<p class="error" id="{field}-error">{message}</p>' in response.text
    assert (await create_webhook(admin, receiver.url)).status_code == 200
    duplicate = await create_webhook(admin, receiver.url, name="ORDERS")
    assert '<p class="error" id="name-error">a webhook named &#39;ORDERS&#39; already exists</p>' in duplicate.text


async def test_rotating_the_secret_keeps_the_old_one_signing_for_a_day(
    admin: httpx.AsyncClient, db: Database, receiver: Receiver, settings: Any
) -> None:
    old_secret = secret_on((await create_webhook(admin, receiver.url)).text)
    hook = await webhook_id(db, "Orders")
    confirm = await admin.get(f"/console/webhooks/{hook}/rotate-secret")
    assert "For 24 hours every delivery is signed with both" in confirm.text
    rotated = await admin.post(f"/console/webhooks/{hook}/rotate-secret", data={"csrf_token": csrf_of(confirm.text)})
    new_secret = secret_on(rotated.text)
    assert new_secret != old_secret
    page = await admin.get(f"/console/webhooks/{hook}")
    assert "The previous secret also signs deliveries until" in page.text
    await admin.post(f"/console/webhooks/{hook}/test", data={"csrf_token": csrf_of(page.text), "event_type": "cmb"})
    request = receiver.requests[-1]
    Webhook(old_secret).verify(request.body, request.headers)
    Webhook(new_secret).verify(request.body, request.headers)
    clock.advance(timedelta(hours=settings.webhook_secret_overlap_hours, seconds=1))
    page = await admin.get(f"/console/webhooks/{hook}")
    assert "The previous secret also signs" not in page.text


async def test_retry_all_failed_shows_a_preview_then_progress_until_done(
    admin: httpx.AsyncClient,
    db: Database,
    receiver: Receiver,
    console_account: ConsoleAccount,
    runner: JobRunner,
) -> None:
    await create_webhook(admin, receiver.url)
    emitted = [event for _ in range(3) for event in await emit(db, console_account.account_id)]
    async with db.transaction() as session:
        # As if every attempt had been made long ago: failed for good, no delivery job left.
        await session.execute(
            update(WebhookEvent).where(WebhookEvent.id.in_(emitted)).values(state=FAILED, attempts_made=8)
        )
        await session.execute(delete(Job))
    preview = await admin.get("/console/webhooks/events/retry-failed")
    assert "<strong>3</strong> failed events would be sent again" in preview.text
    since = re.search(r'name="since" value="([^"]+)"', preview.text)
    assert since is not None
    started = await admin.post(
        "/console/webhooks/events/retry-failed",
        data={"csrf_token": csrf_of(preview.text), "since": since.group(1), "webhook": ""},
    )
    assert started.status_code == 303
    run_page = await admin.get(started.headers["location"])
    assert 'hx-trigger="every 2s"' in run_page.text  # polls while work is left
    assert "0 delivered, 0 failed again, 3 in progress" in run_page.text
    await runner.run_until_idle()
    progress = await admin.get(started.headers["location"] + "/progress")
    assert "Done: 3 delivered, 0 failed again, 0 in progress (of 3)" in progress.text
    assert "hx-trigger" not in progress.text  # polling stops
    assert len(receiver.requests) == 3


async def test_deleting_a_webhook_asks_first_and_keeps_its_log(
    admin: httpx.AsyncClient, db: Database, receiver: Receiver
) -> None:
    await create_webhook(admin, receiver.url)
    hook = await webhook_id(db, "Orders")
    confirm = await admin.get(f"/console/webhooks/{hook}/delete")
    assert "Delete Orders?" in confirm.text and 'class="button danger"' in confirm.text
    deleted = await admin.post(f"/console/webhooks/{hook}/delete", data={"csrf_token": csrf_of(confirm.text)})
    assert deleted.status_code == 303
    assert (await admin.get(f"/console/webhooks/{hook}")).status_code == 404
    assert "No webhooks yet" in (await admin.get("/console/webhooks")).text
