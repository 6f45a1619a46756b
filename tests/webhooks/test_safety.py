"""The connect-time guard: connections go to the address that was checked, so DNS rebinding fails."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.runner import JobRunner
from callerid.webhooks import safety
from callerid.webhooks.models import WebhookAttempt
from tests.conftest import Tenant
from tests.webhooks.conftest import emit, make_webhook
from tests.webhooks.receiver import Receiver

LOOPBACK = ipaddress.ip_address("127.0.0.1")
PRIVATE = ipaddress.ip_address("10.0.0.1")
STRICT = [{"webhook_allow_private": False}]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """``hook.example`` resolves to the next answer in the list (the last one repeats). 127.0.0.1 is
    treated as public here so that a real local receiver can stand in for a public server."""
    answers: list[list[Any]] = [[LOOPBACK]]
    real_resolve, real_reason = safety.resolve, safety.forbidden_reason

    async def resolve(host: str, port: int) -> list[Any]:
        if host != "hook.example":
            return await real_resolve(host, port)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def forbidden_reason(address: Any) -> str | None:
        return None if address == LOOPBACK else real_reason(address)

    monkeypatch.setattr(safety, "resolve", resolve)
    monkeypatch.setattr(safety, "forbidden_reason", forbidden_reason)
    return answers


async def attempts_of(db: Database, event_id: uuid.UUID) -> list[WebhookAttempt]:
    async with db.session() as session:
        return list((await session.scalars(select(WebhookAttempt).where(WebhookAttempt.event_id == event_id))).all())


@pytest.mark.parametrize("settings_overrides", STRICT)
async def test_connects_to_the_checked_address(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver, fake_dns: Any
) -> None:
    url = f"http://hook.example:{receiver.port}/hook?key=s3cret"
    await make_webhook(db, settings, tenant.account_id, url)
    [event_id] = await emit(db, tenant.account_id)
    await runner.run_until_idle()
    # hook.example exists in no real DNS: the request can only have arrived through the pinned address.
    [request] = receiver.requests
    assert request.headers["host"] == f"hook.example:{receiver.port}"
    assert request.target == "/hook?key=s3cret"
    [attempt] = await attempts_of(db, event_id)
    assert attempt.outcome == "success"


@pytest.mark.parametrize("settings_overrides", STRICT)
async def test_dns_rebinding_is_refused_at_connect(
    db: Database, settings: Settings, tenant: Tenant, runner: JobRunner, receiver: Receiver, fake_dns: Any
) -> None:
    url = f"http://hook.example:{receiver.port}/hook"
    await make_webhook(db, settings, tenant.account_id, url)  # checked: public
    [event_id] = await emit(db, tenant.account_id)
    fake_dns[:] = [[PRIVATE]]  # the name now points somewhere private (the check at creation saw a public answer)
    await runner.run_until_idle()
    assert receiver.requests == []
    [attempt] = await attempts_of(db, event_id)
    assert attempt.outcome == "connection_error"
    assert attempt.error is not None and "hook.example (10.0.0.1) is a private address" in attempt.error


@pytest.mark.parametrize("settings_overrides", STRICT)
async def test_any_private_answer_refuses(db: Database, settings: Settings, tenant: Tenant, fake_dns: Any) -> None:
    fake_dns[:] = [[LOOPBACK, PRIVATE]]
    with pytest.raises(Exception, match=r"hook.example \(10.0.0.1\) is a private address"):
        await make_webhook(db, settings, tenant.account_id, "https://hook.example/x")


async def test_unresolvable_host_refused() -> None:
    with pytest.raises(safety.UnsafeUrl, match="does not resolve"):
        await safety.check_destination("https://no-such-host.invalid/x", allow_private=False)
