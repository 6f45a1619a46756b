# ruff: noqa: E402 - the imports must follow the sys.path fix below
"""Benchmark: pushes to a connected phone (R2) and caller-ID lookups, against a real ``callerid serve``.

Sets up an account, API key and dynamic label with the real CLI, starts ``callerid serve`` (embedded SQLite by
default; pass CALLERID_DATABASE_URL / CALLERID_REDIS_URL / CALLERID_WORKERS in the environment to measure
PostgreSQL + Redis with several processes), registers a phone and holds its WebSocket open, then:

1. sends ``--pushes`` R2 records one after another and reports latency percentiles; every one must come back
   ``success`` and arrive on the WebSocket;
2. runs ``--concurrency`` clients calling ``GET /app/v1/caller-id`` for ``--seconds`` and reports lookups/s and
   latency percentiles (each answer is a verified identity with a freshly signed assertion).

Run: ``.venv/bin/python bench/phones.py`` (``--help`` for the knobs). Client and server share the machine, so
the figures are a floor; the lookup rate here is bounded by this Python client (it needs about as much CPU per
request as the server): the lookup throughput of record is ``bench/personalisation.py``, which drives it with wrk.
"""

from __future__ import annotations

import os.path
import sys

# Run as a script, this folder comes first on sys.path, and bench/numbers.py would shadow the standard
# library's ``numbers`` module for every later import: drop the folder.
_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
# ... so move it to the end: the standard library wins, and bench/benchkit.py stays importable.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _BENCH_DIR] + [_BENCH_DIR]

import argparse
import asyncio
import io
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets
from benchkit import CALLERID, cli, free_port, percentile, wait_ready
from PIL import Image

CALLER = "911234567898"
RECEIVER = "919234567898"


async def run(base: str, account_id: str, key: dict[str, Any], label_id: str, args: argparse.Namespace) -> None:
    limits = httpx.Limits(max_connections=args.concurrency + 4, max_keepalive_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        minted = await http.post(
            f"/clients/{account_id}/token",
            json={"key_id": key["key_id"], "api_key": key["api_key"]},
            headers={"X-Public-Access": "allow"},
        )
        minted.raise_for_status()
        auth = {"Authorization": f"Bearer {minted.json()['token']}"}
        device = await http.post(
            "/app/v1/devices", json={"phone_number": RECEIVER, "platform": "android", "app_version": "99.0.0"}
        )
        device.raise_for_status()
        phone_auth = {"Authorization": f"Bearer {device.json()['device_token']}"}

        ws_url = base.replace("http://", "ws://") + "/app/v1/stream"
        async with websockets.connect(ws_url, additional_headers=phone_auth) as phone:
            assert json.loads(await phone.recv())["type"] == "connected"
            latencies: list[float] = []
            for index in range(args.pushes):
                now_ms = int(time.time() * 1000)
                record = {
                    "label_id": label_id,
                    "dynamic_label_name": "Bench Parcels",
                    "dynamic_call_reason": "Your parcel is on its way",
                    "caller_number": CALLER,
                    "receiver_number": RECEIVER,
                    "starts_at": now_ms,
                    "ends_at": now_ms + 3_600_000,
                }
                started = time.perf_counter()
                answer = await http.post(f"/v2/clients/{account_id}/dynamic_call_record", json=record, headers=auth)
                latencies.append(time.perf_counter() - started)
                status = answer.json()["status_info"]
                if status["status"] != "success":
                    raise SystemExit(f"push {index} was not delivered: {status}")
                pushed = json.loads(await asyncio.wait_for(phone.recv(), timeout=10))
                assert pushed["type"] == "call_personalisation", pushed
        print(f"R2 pushes to a connected phone: {args.pushes} sequential, all delivered")
        print(
            f"  latency p50 {percentile(latencies, 0.5) * 1000:.2f} ms, p99 {percentile(latencies, 0.99) * 1000:.2f} ms"
        )

        lookups: list[float] = []
        stop_at = time.perf_counter() + args.seconds

        async def looker() -> None:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                found = await http.get("/app/v1/caller-id", params={"caller": CALLER}, headers=phone_auth)
                lookups.append(time.perf_counter() - started)
                if found.status_code != 200 or found.json().get("verified") is not True:
                    raise SystemExit(f"lookup failed: {found.status_code} {found.text}")

        began = time.perf_counter()
        await asyncio.gather(*(looker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - began
        print(f"caller-ID lookups: {len(lookups)} in {elapsed:.1f} s with {args.concurrency} clients")
        print(f"  {len(lookups) / elapsed:,.0f} lookups/s, p50 {percentile(lookups, 0.5) * 1000:.2f} ms, "
              f"p99 {percentile(lookups, 0.99) * 1000:.2f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="callerid-bench-phones-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k.startswith("CALLERID_") or not k.startswith("CALLERID")}
    env.setdefault("CALLERID_DATABASE_URL", f"sqlite+aiosqlite:///{folder}/bench.db")
    env.setdefault("CALLERID_DATA_DIR", str(folder / "data"))
    env.setdefault("CALLERID_LOG_LEVEL", "WARNING")
    env["CALLERID_PORT"] = str(port)
    # The bench's own token makes many requests: lift the per-token limit so it measures the service, not §4.
    env.setdefault("CALLERID_RATE_LIMIT_GENERAL", "1000000/second")
    # The bench measures pushes, not the proof of a phone's number: its phone registers without an SMS code.
    env.setdefault("CALLERID_DEVICE_VERIFIER", "none")

    account = cli(env, "accounts", "create", "--name", "Bench Co", "--admin-email", f"bench{port}@bench.test")
    account_id = account["client_account_id"]
    key = cli(env, "api-keys", "create", "--account", account_id, "--name", "bench")
    logo = folder / "logo.png"
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), (20, 90, 200)).save(buffer, format="PNG")
    logo.write_bytes(buffer.getvalue())
    label = cli(env, "labels", "create", "--account", account_id, "--name", "Bench Parcels", "--logo", str(logo))

    server = subprocess.Popen([str(CALLERID), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        asyncio.run(run(base, account_id, key, label["id"], args))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
