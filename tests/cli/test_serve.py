"""``callerid serve`` and ``callerid worker`` as real processes: start, answer, stop cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.cli.conftest import CALLERID, Cli
from tests.ops.test_observability import sample

pytestmark = pytest.mark.slow

PUBLIC = {"X-Public-Access": "allow"}
STARTUP_SECONDS = 30
STOP_SECONDS = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def read_json_object(stream: IO[str]) -> dict[str, Any]:
    """The (indented) JSON object a command prints on stdout before it keeps running."""
    lines: list[str] = []
    while True:
        line = stream.readline()
        assert line, f"stdout closed after {lines!r}"
        lines.append(line)
        if line.rstrip() == "}":
            value: dict[str, Any] = json.loads("".join(lines))
            return value


@contextmanager
def running(cli: Cli, *args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [str(CALLERID), *args], cwd=cli.cwd, env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_until_healthy(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited early: {process.communicate()[1]}"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling another process's startup, not waiting for business time
    raise AssertionError("serve did not become healthy")


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM; the process must exit 0 within a few seconds. Returns its stderr."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=STOP_SECONDS)
    assert process.returncode == 0, stderr
    return stderr


def test_serve_end_to_end(cli: Cli) -> None:
    demo = cli.run("demo", "--json").json()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(cli, "serve", "--port", str(port), "--json") as process:
        assert process.stdout is not None
        started = read_json_object(process.stdout)
        assert started["listening"] == base
        assert started["workers"] == 1
        wait_until_healthy(base, process)

        minted = httpx.post(
            f"{base}/clients/{demo['client_account_id']}/token",
            json={"key_id": demo["key_id"], "api_key": demo["api_key"]},
            headers={**PUBLIC, "X-Request-ID": "e2e-mint"},
        )
        assert minted.status_code == 200, minted.text
        assert minted.headers["x-request-id"] == "e2e-mint"
        token = minted.json()["token"]
        ready = httpx.get(f"{base}/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ok", "database": "ok"})
        missing = httpx.get(f"{base}/no/such/thing?token={token}")
        assert (missing.status_code, missing.json()) == (404, {"slug": "not-found", "message": "not found"})

        metrics = httpx.get(f"{base}/metrics").text
        token_route = {"method": "POST", "route": "/clients/{clientAccountId}/token", "status": "200"}
        assert sample(metrics, "callerid_http_requests_total", token_route) == 1
        assert sample(metrics, "callerid_http_requests_total", {"method": "GET", "route": "/readyz", "status": "200"})
        assert "callerid_http_request_duration_seconds_bucket{" in metrics
        stderr = stop(process)

    log_lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]  # all JSON
    access = [e for e in log_lines if e.get("event") == "request"]
    assert any(e["request_id"] == "e2e-mint" and e["status"] == "200" for e in access)
    for secret in (token, demo["api_key"], demo["admin_password"]):
        assert secret not in stderr


def test_serve_with_two_workers_aggregates_metrics(cli: Cli) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(cli, "serve", "--port", str(port), "--workers", "2", "--json") as process:
        assert process.stdout is not None
        assert read_json_object(process.stdout)["workers"] == 2
        wait_until_healthy(base, process)
        # New connections each time, so that both processes get some.
        for _ in range(11):
            assert httpx.get(f"{base}/readyz").status_code == 200
        totals = {
            sample(httpx.get(f"{base}/metrics").text, "callerid_http_requests_total", {
                "method": "GET", "route": "/readyz", "status": "200"
            })
            for _ in range(4)
        }  # fmt: skip
        # Whichever process answers /metrics, it reports every process's requests.
        assert totals == {11.0}
        stop(process)


def test_worker_starts_and_stops_on_sigterm(cli: Cli, tmp_path: Path) -> None:
    with running(cli, "worker", "--json") as process:
        assert process.stdout is not None
        started = read_json_object(process.stdout)
        assert started["status"] == "running"
        assert started["worker"]
        stderr = stop(process)
    for line in stderr.splitlines():
        json.loads(line)
    # It opened the same runtime as a serving process: its signer was prepared (the first start makes the key).
    keys = cli.run("signing-keys", "list", "--json").json()["keys"]
    assert [key["active"] for key in keys] == [True]
