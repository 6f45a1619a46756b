"""What the benchmarks share: the CLI, a free port, waiting for ``callerid serve``, percentiles."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

CALLERID = Path(sys.executable).parent / "callerid"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    """``callerid <args> --json`` and its one JSON object; exits the benchmark when the command fails."""
    done = subprocess.run([str(CALLERID), *args, "--json"], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"callerid {' '.join(args)} failed:\n{done.stderr}")
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("callerid serve exited early")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("callerid serve did not become ready")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
