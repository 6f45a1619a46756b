"""Failure notices by SMTP (a real local SMTP server, aiosmtpd) when smtp_host is set."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.models import Job
from callerid.jobs.runner import JobRunner
from callerid.runtime import Runtime
from callerid.webhooks.models import OutboxMail
from tests.conftest import Tenant
from tests.webhooks.conftest import emit, make_webhook
from tests.webhooks.receiver import Receiver


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # the name aiosmtpd calls
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def settings_overrides(smtp: tuple[Inbox, int]) -> dict[str, Any]:
    return {
        "webhook_allow_private": True,
        "webhook_retry_schedule": "",  # fail at the first attempt
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp[1],
        "smtp_starttls": False,
        "smtp_from": "alerts@callerid.test",
    }


async def mails(db: Database) -> list[OutboxMail]:
    async with db.session() as session:
        return list((await session.scalars(select(OutboxMail))).all())


async def test_failure_notice_sent_by_smtp(
    db: Database,
    settings: Settings,
    tenant: Tenant,
    runner: JobRunner,
    receiver: Receiver,
    smtp: tuple[Inbox, int],
) -> None:
    receiver.status = 500
    await make_webhook(db, settings, tenant.account_id, receiver.url, name="Orders")
    [event_id] = await emit(db, tenant.account_id, "user_feedback")
    assert await runner.run_until_idle() == 2  # the attempt, then the notice
    inbox, _ = smtp
    [(recipients, raw)] = inbox.messages
    assert recipients == [tenant.admin_email]
    message = message_from_bytes(raw)
    assert message["From"] == "alerts@callerid.test"
    assert message["Subject"] == "Webhook Orders failed to deliver a user_feedback event"
    assert str(event_id) in message.get_payload()
    [row] = await mails(db)
    assert (row.status, row.error) == ("sent", None) and row.sent_at is not None


async def test_smtp_failure_is_retried_and_recorded(
    db: Database, settings: Settings, tenant: Tenant, receiver: Receiver, runtime_with: Callable[[Settings], Runtime]
) -> None:
    receiver.status = 500
    await make_webhook(db, settings, tenant.account_id, receiver.url)
    await emit(db, tenant.account_id)
    broken = settings.model_copy(update={"smtp_port": free_port()})  # nothing listens there
    await JobRunner(runtime_with(broken)).run_until_idle()
    [row] = await mails(db)
    assert row.status == "queued" and row.error is not None and "Connection refused" in row.error
    async with db.session() as session:
        [job] = (await session.scalars(select(Job).where(Job.kind == "webhooks.send_mail"))).all()
    assert job.status == "queued" and job.attempts == 1  # back on the queue with back-off
