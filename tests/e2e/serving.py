"""What the browser tests share: ``callerid serve`` as a real process, and Debian's Chromium through Playwright.

Playwright drives /usr/bin/chromium (``python3 dev.py test`` installs it with apt-get) through ``executable_path``;
its own browser downloads are never used. Tests that need these skip with the reason when they are missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = Path("/usr/bin/chromium")
CALLERID = Path(sys.executable).parent / "callerid"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_SECONDS = 90  # a loaded 2-core CI machine has taken over 30 s to migrate and start


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"Debian's chromium is not installed at {CHROMIUM} (`python3 dev.py test` installs it with apt-get)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright Python package is not installed (pip install -e '.[test]')"
    return None


SKIP_REASON = _skip_reason()


# --- the server as a real process ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """``callerid serve`` on a tmp SQLite file; can be stopped and started again on the same port and data."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CALLERID_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'callerid.db'}",
            "CALLERID_DATA_DIR": str(folder / "data"),
            "CALLERID_HOST": "127.0.0.1",
            "CALLERID_PORT": str(self.port),
            "CALLERID_LOG_JSON": "true",
        }
        self.log = folder / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> dict[str, Any]:
        done = subprocess.run(
            [str(CALLERID), *args, "--json"], cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"callerid {' '.join(args)}: exit {done.returncode}\n{done.stderr}"
        value: dict[str, Any] = json.loads(done.stdout)
        return value

    def start(self) -> None:
        # Output to a file, not a pipe: nobody reads a pipe while the test runs, and a full one blocks the server.
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(CALLERID), "serve", "--port", str(self.port)],
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve exited early:\n{self.log.read_text()}"
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # polling another process's start-up, not waiting for business time
        raise AssertionError(f"serve did not become healthy:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
