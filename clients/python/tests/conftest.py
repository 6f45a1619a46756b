"""A real ``callerid serve`` for the client's end-to-end tests (SQLite; PostgreSQL too when it is reachable).

The account, its API key, a label, the organisation tree and a feature set are made with the server's own CLI,
run in this process (``typer.testing``) so that set-up costs one Python start-up: the server's. Phones register
over HTTP (``CALLERID_DEVICE_VERIFIER=none``): ``ANDROID`` receivers are app users, ``IOS`` ones are not on
Android, ``OLD_APP`` ones run an app version below the minimum, ``UNREACHABLE`` ones are Android phones not
connected to their push stream; any other receiver is not an app user. ``ANDROID`` phones stay connected (a
WebSocket each, read by a thread) for the whole session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

CALLERID = Path(sys.executable).parent / "callerid"
PG_ADMIN_URL = os.environ.get("CALLERID_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
STARTUP_SECONDS = 60

ANDROID = [f"9170000000{i:02d}" for i in range(4)]
UNREACHABLE = ["917000000100", "917000000101"]
IOS = ["917100000000", "917100000001"]
OLD_APP = ["917200000000"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    """``callerid <args> --json`` in this process, with ``env`` as the environment."""
    from typer.testing import CliRunner

    from callerid.cli.main import app

    done = CliRunner().invoke(app, [*args, "--json"], env=env, catch_exceptions=False)
    assert done.exit_code == 0, f"callerid {' '.join(args)}: exit {done.exit_code}\n{done.output}"
    value: dict[str, Any] = json.loads(done.stdout)
    return value


@dataclass
class Served:
    """A running server and what was made on it."""

    base: str
    env: dict[str, str]
    folder: Path
    account_id: str = ""
    key_id: str = ""
    api_key: str = ""
    label_id: str = ""
    feature_set_id: str = ""
    process: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def client_args(self) -> tuple[str, str, str, str]:
        return self.base, self.account_id, self.key_id, self.api_key

    def start(self) -> None:
        log = (self.folder / "serve.log").open("ab")
        self.process = subprocess.Popen(
            [str(CALLERID), "serve"], cwd=self.folder, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve exited early:\n{self.log()}"
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # another process's start-up
        raise AssertionError(f"serve did not become ready:\n{self.log()}")

    def log(self) -> str:
        path = self.folder / "serve.log"
        return path.read_text()[-5000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _pg_database(name: str, drop: bool = False) -> str | None:
    """Creates (or drops) database ``name`` on the test PostgreSQL; None when it is not reachable."""
    try:
        import asyncpg
    except ImportError:
        return None

    async def run() -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
        try:
            await connection.execute(f"{'DROP' if drop else 'CREATE'} DATABASE {name}")
        finally:
            await connection.close()

    try:
        asyncio.run(run())
    except Exception:
        return None
    url = httpx.URL(PG_ADMIN_URL)
    return f"postgresql+asyncpg://{url.userinfo.decode()}@{url.host}:{url.port or 5432}/{name}"


def make_server(folder: Path, backend: str, **settings: str) -> Served:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CALLERID_DATA_DIR": str(folder / "data"),
        "CALLERID_HOST": "127.0.0.1",
        "CALLERID_PORT": str(port),
        "CALLERID_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "CALLERID_LOG_LEVEL": "WARNING",
        "CALLERID_DEVICE_VERIFIER": "none",
        "CALLERID_WEBHOOK_ALLOW_PRIVATE": "true",
        "CALLERID_NUMBER_JOB_DELAY_SECONDS": "0.2",
        **settings,
    }
    if backend == "sqlite":
        env["CALLERID_DATABASE_URL"] = f"sqlite+aiosqlite:///{folder / 'callerid.db'}"
    else:
        name = f"callerid_client_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        url = _pg_database(name)
        if url is None:
            pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
        env["CALLERID_DATABASE_URL"] = url
        env["CALLERID_SECRET_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
        env["CALLERID_TEST_PG_DATABASE"] = name
    return Served(base=f"http://127.0.0.1:{port}", env=env, folder=folder)


def set_up(served: Served, *, tree: bool) -> None:
    """The demo account (key + label) and, with ``tree``, a feature set with Call Me Back and a survey."""
    env = served.env
    demo = server_cli(env, "demo")
    served.account_id, served.key_id, served.api_key = demo["client_account_id"], demo["key_id"], demo["api_key"]
    served.label_id = demo["label_id"]
    if not tree:
        return
    account = served.account_id
    department = server_cli(env, "departments", "create", "--account", account, "--name", "Sales")["id"]
    operation = server_cli(
        env, "operations", "create", "--account", account, "--department", department, "--name", "Outbound",
        "--calling-operation", "Sales",
    )["id"]  # fmt: skip
    process = server_cli(env, "processes", "create", "--account", account, "--operation", operation, "--name", "P1")
    feature_set = server_cli(
        env, "feature-sets", "create", "--account", account, "--process", process["id"], "--name", "Renewals",
        "--label", served.label_id, "--call-me-back", "--survey",
    )  # fmt: skip
    served.feature_set_id = feature_set["id"]
    served.extra.update(department_id=department, operation_id=operation, process_id=process["id"])


def register_phones(base: str) -> contextlib.ExitStack:
    """Registers every test phone; connects the ``ANDROID`` ones (their sockets, to close at the end)."""
    from websockets.sync.client import connect

    sockets = contextlib.ExitStack()
    with httpx.Client(base_url=base, timeout=30) as http:
        groups = ((ANDROID, "android", "99.0.0"), (UNREACHABLE, "android", "99.0.0"), (IOS, "ios", "99.0.0"),
                  (OLD_APP, "android", "0.0.1"))  # fmt: skip
        for numbers, platform, version in groups:
            for number in numbers:
                answer = http.post(
                    "/app/v1/devices", json={"phone_number": number, "platform": platform, "app_version": version}
                )
                assert answer.status_code in (200, 201), answer.text
                if numbers is ANDROID:
                    socket_ = sockets.enter_context(
                        connect(
                            base.replace("http", "ws") + "/app/v1/stream",
                            additional_headers={"Authorization": f"Bearer {answer.json()['device_token']}"},
                        )
                    )
                    assert json.loads(socket_.recv(timeout=30))["type"] == "connected"
                    threading.Thread(target=_drain, args=(socket_,), daemon=True).start()
    return sockets


def _drain(socket_: Any) -> None:
    """Reads a phone's pushes until its socket closes (a phone that reads nothing would stop getting them)."""
    try:
        for _ in socket_:
            pass
    except Exception:
        pass


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The server most tests share, on each database; its account's tokens are shared through ``tokens``."""
    backend: str = request.param
    running = make_server(tmp_path_factory.mktemp(f"client-{backend}"), backend)
    try:
        set_up(running, tree=True)
        running.start()
        with register_phones(running.base):
            yield running
    finally:
        running.stop()
        if backend == "postgres":
            _pg_database(running.env["CALLERID_TEST_PG_DATABASE"], drop=True)


@pytest.fixture(scope="session")
def tokens(served: Served) -> Any:
    """One token store per server: every client of the tests reuses one token (the account mints 10 per 30 min)."""
    from callerid_client import TokenStore

    return TokenStore(3600, 120)
