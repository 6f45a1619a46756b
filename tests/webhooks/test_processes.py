"""``callerid webhooks create|update|delete|list|test|events|event`` (run in this process: tests/in_process.py),
and deliveries that survive a SIGKILL of a real ``callerid serve``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from callerid import clock
from callerid.db import Database
from callerid.webhooks import service
from callerid.webhooks.models import WebhookEvent
from tests.in_process import run_cli
from tests.webhooks.receiver import Receiver

CALLERID = Path(sys.executable).parent / "callerid"
DEADLINE_SECONDS = 30


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        assert self.returncode == 0, self.stderr
        value: dict[str, Any] = json.loads(self.stdout)
        return value


class Cli:
    def __init__(self, folder: Path, **settings: str):
        self.folder = folder
        self.url = f"sqlite+aiosqlite:///{folder}/callerid.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERID_")}
        self.env.update(
            CALLERID_DATABASE_URL=self.url,
            CALLERID_DATA_DIR=str(folder / "data"),
            CALLERID_WEBHOOK_ALLOW_PRIVATE="true",
            **settings,
        )

    async def run(self, *args: str) -> Result:
        # On another thread (the command runs its own event loop) so that the receiver, which runs in this test's
        # event loop, can answer meanwhile.
        done = await asyncio.wait_for(asyncio.to_thread(run_cli, args, dict(self.env), self.folder), 120)
        return Result(done.returncode, done.stdout, done.stderr)

    async def json(self, *args: str) -> dict[str, Any]:
        return (await self.run(*args, "--json")).json()

    async def fails(self, *args: str) -> str:
        done = await self.run(*args, "--json")
        assert done.returncode != 0 and done.stdout == "", done.stdout
        assert done.stderr.strip()
        return done.stderr


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(DEADLINE_SECONDS * 10):
        if await check():
            return
        await asyncio.sleep(0.1)  # polling another process, not waiting for business time
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


async def test_webhooks_cli(tmp_path: Path, receiver: Receiver) -> None:
    cli = Cli(tmp_path)
    account = (await cli.json("accounts", "create", "--name", "Acme", "--admin-email", "boss@acme.test"))[
        "client_account_id"
    ]
    created = await cli.json(
        "webhooks", "create", "--account", account, "--name", "Orders", "--url", receiver.url, "--events", "cmb"
    )
    assert list(created) == ["id", "name", "url", "events", "secret"]
    assert created["name"] == "Orders" and created["url"] == receiver.url and created["events"] == ["cmb"]
    assert created["secret"].startswith("whsec_")

    stderr = await cli.fails(
        "webhooks", "create", "--account", account, "--name", "orders", "--url", receiver.url, "--events", "cmb"
    )
    assert "a webhook named 'orders' already exists" in stderr
    stderr = await cli.fails(
        "webhooks", "create", "--account", account, "--name", "Other", "--url", receiver.url, "--events", "sms"
    )
    assert "events must be one or both of cmb, user_feedback" in stderr

    updated = await cli.json(
        "webhooks", "update", "--account", account, "--id", created["id"], "--events", "cmb,user_feedback"
    )
    assert updated == {"id": created["id"], "name": "Orders", "url": receiver.url, "events": ["cmb", "user_feedback"]}
    listed = await cli.json("webhooks", "list", "--account", account)
    assert [(w["id"], w["name"], "secret" in w) for w in listed["webhooks"]] == [(created["id"], "Orders", False)]

    tested = await cli.json(
        "webhooks", "test", "--account", account, "--id", created["id"], "--event-type", "user_feedback"
    )
    assert (tested["state"], tested["outcome"], tested["status_code"], tested["error"]) == (
        "success",
        "success",
        200,
        None,
    )
    [request] = receiver.requests
    assert request.headers["webhook-id"] == tested["event_id"]
    assert json.loads(request.body)["event_type"] == "user_feedback"
    receiver.status = 500
    tested = await cli.json("webhooks", "test", "--account", account, "--id", created["id"])
    assert (tested["state"], tested["outcome"], tested["status_code"], tested["error"]) == (
        "failed",
        "http_error",
        500,
        "HTTP 500",
    )

    events = await cli.json("webhooks", "events", "--account", account)
    assert events["total"] == 2 and {e["is_test"] for e in events["events"]} == {True}
    detail = await cli.json("webhooks", "event", "--account", account, "--event-id", tested["event_id"])
    assert detail["state"] == "failed" and detail["payload"]["event_type"] == "cmb"
    assert [(a["number"], a["outcome"], a["status_code"]) for a in detail["attempt_log"]] == [(0, "http_error", 500)]

    assert await cli.json("webhooks", "delete", "--account", account, "--id", created["id"]) == {
        "id": created["id"],
        "deleted": True,
    }
    assert "not found" in await cli.fails("webhooks", "test", "--account", account, "--id", created["id"])
    assert (await cli.json("webhooks", "list", "--account", account)) == {"webhooks": []}


async def test_private_url_refused_by_cli_without_operator_permission(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    cli.env["CALLERID_WEBHOOK_ALLOW_PRIVATE"] = "false"
    account = (await cli.json("accounts", "create", "--name", "Acme", "--admin-email", "boss@acme.test"))[
        "client_account_id"
    ]
    stderr = await cli.fails(
        "webhooks",
        "create",
        "--account",
        account,
        "--name",
        "Meta",
        "--url",
        "http://169.254.169.254/",
        "--events",
        "cmb",
    )
    assert "169.254.169.254 is a cloud metadata address" in stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Serve:
    def __init__(self, cli: Cli, port: int):
        self.cli, self.port = cli, port
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            str(CALLERID), "serve", "--port", str(self.port), "--json",
            cwd=self.cli.folder, env=self.cli.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=open(self.cli.folder / "serve.log", "ab"),  # noqa: ASYNC230, SIM115
        )  # fmt: skip

        async def healthy() -> bool:
            assert self.process is not None and self.process.returncode is None, "serve exited"
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(healthy, "serve to start")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert await self.process.wait() == -signal.SIGKILL

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 20)


@pytest.mark.slow
async def test_deliveries_survive_sigkill(tmp_path: Path, receiver: Receiver) -> None:
    cli = Cli(tmp_path, CALLERID_JOB_LEASE_SECONDS="2", CALLERID_WEBHOOK_READ_TIMEOUT_SECONDS="60")
    account = uuid.UUID(
        (await cli.json("accounts", "create", "--name", "Acme", "--admin-email", "boss@acme.test"))["client_account_id"]
    )
    await cli.json(
        "webhooks", "create", "--account", str(account), "--name", "Orders", "--url", receiver.url, "--events", "cmb"
    )
    db = Database(cli.url)

    async def emit() -> uuid.UUID:
        body = {"business_number": "910987654321"}
        async with db.transaction() as session:
            [event_id] = await service.emit_event(
                session, account_id=account, event_type="cmb", created_at=clock.now(), body=body
            )
        return event_id

    async def state(event_id: uuid.UUID) -> str:
        async with db.session() as session:
            event = await session.get(WebhookEvent, event_id)
        assert event is not None
        return event.state

    serve = Serve(cli, free_port())
    try:
        receiver.hang = True  # the first delivery is in flight when serve dies
        await serve.start()
        in_flight = await emit()

        async def arrived() -> bool:
            return len(receiver.requests) == 1

        await eventually(arrived, "the first delivery to reach the receiver")
        await serve.kill()
        assert await state(in_flight) == "pending"
        queued_while_down = await emit()  # acknowledged while no process runs

        receiver.hang = False
        await serve.start()

        async def delivered() -> bool:
            return await state(in_flight) == "success" and await state(queued_while_down) == "success"

        await eventually(delivered, "both events to be delivered after the restart")
    finally:
        await serve.stop()
        await db.dispose()
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    # At least once: the interrupted delivery is sent again with the same id; nothing is lost.
    assert sorted(set(ids)) == sorted({str(in_flight), str(queued_while_down)})
    assert ids.count(str(in_flight)) == 2 and ids.count(str(queued_while_down)) == 1
