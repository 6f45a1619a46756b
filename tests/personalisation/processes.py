"""Running the real ``callerid`` command (CLI and ``serve``) for end-to-end tests."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

CALLERID = Path(sys.executable).parent / "callerid"
STARTUP_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


TEST_SECRET_KEY = base64.b64encode(b"k" * 32).decode()


@dataclass
class Deployment:
    """One embedded deployment: a SQLite file and a data folder, shared by every command run against it."""

    root: Path
    database_url: str | None = None  # default: a SQLite file under root
    port: int = field(default_factory=free_port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERID_")}
        env.update(
            CALLERID_DATABASE_URL=self.database_url or f"sqlite+aiosqlite:///{self.root / 'callerid.db'}",
            CALLERID_DATA_DIR=str(self.root / "data"),
            CALLERID_HOST="127.0.0.1",
            CALLERID_PORT=str(self.port),
            CALLERID_LOG_LEVEL="WARNING",
        )
        if self.database_url is not None:  # PostgreSQL requires the key of secrets at rest (see test_secretbox)
            env["CALLERID_SECRET_KEY"] = TEST_SECRET_KEY
            # and, to serve, an SMS gateway for phones' codes unless phones register without proof
            env["CALLERID_DEVICE_VERIFIER"] = "none"
        env.update(extra)
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CALLERID), *args], cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=120
        )

    def cli_json(self, *args: str) -> dict[str, Any]:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, f"{args}: {done.stderr}"
        value: dict[str, Any] = json.loads(done.stdout)
        return value

    @contextmanager
    def serving(self, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
        process = subprocess.Popen(
            [str(CALLERID), "serve", "--json"],
            cwd=self.root,
            env=self.env(**extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            self._wait_until_healthy(process)
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stderr is not None:
                process.stderr.close()

    def _wait_until_healthy(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise AssertionError(f"serve exited early: {stderr}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # waiting for another process to start, not for business time
        raise AssertionError("serve did not become healthy")
