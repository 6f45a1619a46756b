"""The connect-time guard: connections go to the address that was checked, so DNS rebinding fails; inside aiohttp,
a resolver checks every answer for a name and a socket factory checks the address of each connection."""

from __future__ import annotations

import ipaddress
import re
import socket
import uuid
from typing import Any

import aiohttp
import aiohttp.abc
import pytest
from sqlalchemy import select

from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.runner import JobRunner
from callerid.webhooks import safety, signing
from callerid.webhooks.delivery import Deliverer
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


# --- the guard inside aiohttp: a resolver that checks every answer, a socket factory that checks each address ------


def addr_info(host: str, port: int = 443) -> safety.AddrInfo:
    if ":" in host:
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("::1", "a loopback address"),
        ("::ffff:192.168.0.1", "a private address"),
        ("fe80::1", "a link-local address"),
    ],
)
def test_the_socket_factory_refuses_what_is_not_public(host: str, reason: str) -> None:
    with pytest.raises(
        safety.RefusedDestination, match=f"^refused: url host {re.escape(host)}( \\(.*\\))? is {reason};"
    ):
        safety.guarded_socket(addr_info(host))


def test_the_socket_factory_makes_sockets_for_public_addresses() -> None:
    for host in ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"):
        with safety.guarded_socket(addr_info(host)) as made:
            assert made.family == (socket.AF_INET6 if ":" in host else socket.AF_INET)


async def test_the_resolver_refuses_a_name_with_any_private_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    public, v6 = ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    answers = {"ok.example": [public, v6], "mixed.example": [public, PRIVATE]}

    async def resolve(host: str, port: int) -> list[Any]:
        return answers[host]

    monkeypatch.setattr(safety, "resolve", resolve)
    resolver = safety.GuardedResolver()
    found = await resolver.resolve("ok.example", 443)
    assert [(r["host"], r["port"], r["family"]) for r in found] == [
        ("93.184.215.14", 443, socket.AF_INET),
        (str(v6), 443, socket.AF_INET6),
    ]
    assert [r["host"] for r in await resolver.resolve("ok.example", 443, socket.AF_INET6)] == [str(v6)]
    with pytest.raises(safety.RefusedDestination, match=r"mixed.example \(10.0.0.1\) is a private address"):
        await resolver.resolve("mixed.example", 443)


async def test_a_name_that_resolves_to_loopback_is_refused_at_send_time(
    settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def resolve(host: str, port: int) -> list[Any]:
        return [LOOPBACK] if host == "hook.example" else []

    monkeypatch.setattr(safety, "resolve", resolve)
    deliverer = Deliverer(settings.model_copy(update={"webhook_allow_private": False}))
    try:
        result = await deliverer.send(
            webhook_id=uuid.uuid4(),
            url=f"http://hook.example:{receiver.port}/hook",
            secrets=signing.new_secret(),
            event_id=uuid.uuid4(),
            body=b"{}",
        )
    finally:
        await deliverer.aclose()
    assert receiver.requests == []
    assert (result.outcome, result.error) == (
        "connection_error",
        "refused: url host hook.example (127.0.0.1) is a loopback address; webhooks may only call public addresses",
    )


@pytest.mark.parametrize("url", ["http://[::1]:{port}/hook", "http://127.1:{port}/hook", "http://2130706433:{port}/"])
async def test_loopback_in_other_spellings_is_refused_at_send_time(
    settings: Settings, receiver: Receiver, url: str
) -> None:
    deliverer = Deliverer(settings.model_copy(update={"webhook_allow_private": False}))
    try:
        result = await deliverer.send(
            webhook_id=uuid.uuid4(),
            url=url.format(port=receiver.port),
            secrets=signing.new_secret(),
            event_id=uuid.uuid4(),
            body=b"{}",
        )
    finally:
        await deliverer.aclose()
    assert receiver.requests == []
    assert result.outcome == "connection_error" and result.error


async def test_the_address_connected_to_is_checked_even_past_the_resolver(receiver: Receiver) -> None:
    """The socket factory is the last word: a resolver that let a private answer through still cannot connect."""

    class CarelessResolver(aiohttp.abc.AbstractResolver):
        async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[Any]:
            return [
                {"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
            ]

        async def close(self) -> None:
            pass

    connector = aiohttp.TCPConnector(resolver=CarelessResolver(), socket_factory=safety.guarded_socket)
    async with aiohttp.ClientSession(connector=connector) as client:
        with pytest.raises(aiohttp.ClientConnectorError) as refused:
            await client.post(f"http://hook.example:{receiver.port}/hook", data=b"{}")
    assert isinstance(refused.value.os_error, safety.RefusedDestination)
    assert str(refused.value.os_error).startswith("refused: url host 127.0.0.1 is a loopback address")
    assert receiver.requests == []
