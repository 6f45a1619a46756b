"""Cross-process fan-out: a record accepted by one ``callerid serve`` reaches a phone connected to another.

Two real server processes on one PostgreSQL database and one Redis; the phone holds a WebSocket
(``websockets`` client) on process A while the business sends R2 to process B.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.labels import service as labels
from tests.conftest import (
    REDIS_URL,
    create_tenant,
    fresh_postgresql_database,
    make_settings,
    requires_postgres,
    requires_redis,
)
from tests.labels.images import image_bytes

pytestmark = [pytest.mark.slow, requires_postgres, requires_redis]

CALLERID = Path(sys.executable).parent / "callerid"
CALLER = "911234567898"
RECEIVER = "919234567898"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def shared_database() -> Iterator[str]:
    with fresh_postgresql_database("callerid_fanout", migrate=True) as url:
        yield url


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]


def start_server(database_url: str, data_dir: Path, log: Path) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERID_")}
    env.update(
        CALLERID_DATABASE_URL=database_url,
        CALLERID_REDIS_URL=REDIS_URL,
        CALLERID_DATA_DIR=str(data_dir),
        CALLERID_PORT=str(port),
        CALLERID_PUBLIC_BASE_URL="http://callerid.test",
        CALLERID_MIN_APP_VERSION="1.10.0",
        CALLERID_SECRET_KEY=base64.b64encode(b"k" * 32).decode(),  # required with PostgreSQL (see test_secretbox)
        # Phones register without proof here (PostgreSQL with otp would need an SMS gateway to start).
        CALLERID_DEVICE_VERIFIER="none",
    )
    with log.open("wb") as out:
        process = subprocess.Popen([str(CALLERID), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(f"http://127.0.0.1:{port}", process)


def wait_ready(server: Server, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a starting process (not waiting on business time)
    raise AssertionError(f"server did not become ready:\n{log.read_text()}")


@pytest.fixture
def servers(shared_database: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    data_dir = tmp_path / "data"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    started = [start_server(shared_database, data_dir, log) for log in logs]
    try:
        for server, log in zip(started, logs, strict=True):
            wait_ready(server, log)
        yield started[0], started[1]
    finally:
        for server in started:
            server.process.terminate()
        for server in started:
            try:
                server.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.process.kill()


@dataclass
class Business:
    account_id: uuid.UUID
    label_id: uuid.UUID
    credentials: dict[str, str]


@pytest.fixture
async def business(shared_database: str, tmp_path: Path) -> AsyncIterator[Business]:
    settings: Settings = make_settings(shared_database, tmp_path / "data", public_base_url="http://callerid.test")
    db = Database(shared_database, null_pool=True)
    try:
        tenant = await create_tenant(db, settings)
        async with db.transaction() as session:
            label = await labels.create_label(
                session, settings, account_id=tenant.account_id, name="FlowerEra", logo=image_bytes()
            )
        yield Business(tenant.account_id, label.id, tenant.credentials)
    finally:
        await db.dispose()


def record(business: Business) -> dict[str, Any]:
    now_ms = clock.now_ms()
    return {
        "label_id": str(business.label_id),
        "dynamic_label_name": "Flower rasm",
        "dynamic_call_reason": "Flower Delivery",
        "caller_number": CALLER,
        "receiver_number": RECEIVER,
        "starts_at": now_ms,
        "ends_at": now_ms + 3_600_000,
    }


async def test_push_accepted_by_one_process_reaches_a_phone_on_another(
    servers: tuple[Server, Server], business: Business
) -> None:
    process_a, process_b = servers
    async with httpx.AsyncClient(timeout=10) as http:
        registered = await http.post(
            f"{process_a.base_url}/app/v1/devices",
            json={"phone_number": RECEIVER, "platform": "android", "app_version": "1.10.0"},
        )
        assert registered.status_code == 201, registered.text
        device = registered.json()
        minted = await http.post(
            f"{process_b.base_url}/clients/{business.account_id}/token",
            json=business.credentials,
            headers={"X-Public-Access": "allow"},
        )
        assert minted.status_code == 200, minted.text
        auth = {"Authorization": f"Bearer {minted.json()['token']}"}
        r2 = f"{process_b.base_url}/v2/clients/{business.account_id}/dynamic_call_record"

        ws_url = process_a.base_url.replace("http://", "ws://") + "/app/v1/stream"
        async with websockets.connect(
            ws_url, additional_headers={"Authorization": f"Bearer {device['device_token']}"}
        ) as phone:
            hello = json.loads(await asyncio.wait_for(phone.recv(), timeout=10))
            assert hello == {"type": "connected", "device_id": device["device_id"], "phone_number": RECEIVER}

            sent = record(business)
            accepted = await http.post(r2, json=sent, headers=auth)
            assert accepted.status_code == 200, accepted.text
            assert accepted.json() == {"status_info": {"status": "success", "message": "Record processed successfully"}}

            pushed = json.loads(await asyncio.wait_for(phone.recv(), timeout=10))
            record_id = pushed.pop("record_id")
            uuid.UUID(record_id)
            assert pushed["logo_url"].startswith("http://callerid.test/logos/")
            pushed.pop("logo_url")
            assert pushed == {
                "type": "call_personalisation",
                "caller": CALLER,
                "receiver": RECEIVER,
                "label_id": str(business.label_id),
                "label_name": "Flower rasm",
                "call_reason": "Flower Delivery",
                "starts_at": sent["starts_at"],
                "ends_at": sent["ends_at"],
            }

        # The phone hung up: process A unsubscribes, and process B's next push finds no live connection.
        deadline = time.monotonic() + 10
        while True:
            after = await http.post(r2, json=record(business), headers=auth)
            body = after.json()
            if body["status_info"].get("reason") == "failed_to_push" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)  # the unsubscribe reaches Redis asynchronously after the socket closes
        assert after.status_code == 200
        assert body == {"status_info": {"status": "error", "reason": "failed_to_push", "message": "Failed to push"}}
