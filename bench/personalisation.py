# ruff: noqa: E402 - the imports must follow the sys.path fix below
"""Benchmark: call personalisation on the embedded default (SQLite, jobs inside ``callerid serve``).

Sets up an account, API key and dynamic label with the real CLI, starts ``callerid serve`` on a temporary
SQLite database (rate limits raised so that they do not cap the figures), then:

1. R2: ``--r2`` real-time records from ``--concurrency`` concurrent clients; prints records/s, p50 and p99.
2. B2: ``--batches`` batches of 500 records from ``--concurrency`` concurrent clients; prints how fast they
   were accepted, then polls S2 until every record has a final status and prints records/minute fully
   processed (acceptance + delivery).

Receivers are not app users, so every record is delivered to the point of the "not_app_user" outcome.

Run: ``.venv/bin/python bench/personalisation.py`` (``--help`` for the knobs; ``--workers 2`` for 2 processes).
"""

from __future__ import annotations

import os.path
import sys

# bench/numbers.py is named like the standard library's ``numbers``; run as a script, this folder comes first on
# sys.path and would shadow it, so drop the folder.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

CALLERID = Path(sys.executable).parent / "callerid"
BATCH_SIZE = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run([str(CALLERID), *args, "--json"], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"callerid {' '.join(args)} failed:\n{done.stderr}")
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("callerid serve exited early")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("callerid serve did not become ready")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def record(label_id: str, index: int, now_ms: int) -> dict[str, Any]:
    return {
        "label_id": label_id,
        "caller_number": "911234567890",
        "receiver_number": f"91{9_000_000_000 + index}",
        "dynamic_call_reason": "Flower Delivery",
        "starts_at": now_ms,
        "ends_at": now_ms + 3_600_000,
    }


async def bench_r2(base: str, account: str, auth: dict[str, str], label_id: str, total: int, concurrency: int) -> None:
    latencies: list[float] = []
    next_index = iter(range(total))
    now_ms = int(time.time() * 1000)

    async def client_loop(http: httpx.AsyncClient) -> None:
        for index in next_index:
            started = time.perf_counter()
            response = await http.post(
                f"/v2/clients/{account}/dynamic_call_record", json=record(label_id, index, now_ms), headers=auth
            )
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"R2 answered {response.status_code}: {response.text}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    print(
        f"R2: {total} records, {concurrency} concurrent: {total / elapsed:,.0f} records/s, "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
    )


async def bench_b2(
    base: str, account: str, auth: dict[str, str], label_id: str, batches: int, concurrency: int
) -> None:
    now_ms = int(time.time() * 1000)
    bodies = [
        {"call_records": [record(label_id, b * BATCH_SIZE + i, now_ms) for i in range(BATCH_SIZE)]}
        for b in range(batches)
    ]
    batch_ids: list[str] = []
    queue = iter(bodies)

    async def client_loop(http: httpx.AsyncClient) -> None:
        for body in queue:
            response = await http.post(f"/v2/clients/{account}/dynamic_call_records", json=body, headers=auth)
            if response.status_code != 200:
                raise SystemExit(f"B2 answered {response.status_code}: {response.text}")
            batch_ids.append(response.json()["batch_id"])

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(concurrency)))
        accepted = time.perf_counter() - started
        records = batches * BATCH_SIZE
        print(f"B2: {records:,} records accepted in {accepted:.2f} s: {records / accepted * 60:,.0f} records/min")
        # The last accepted batch is about the last to finish: wait for it (polling S2 of 500 records is not
        # free, so not too often), then confirm every other batch is finished too.
        finished_at = time.perf_counter()
        for index, batch_id in enumerate([batch_ids[-1], *batch_ids[:-1]]):
            waited = index == 0
            while True:
                response = await http.get(
                    f"/v2/clients/{account}/dynamic_call_records?batchId={batch_id}", headers=auth
                )
                if all(row["status_info"]["status"] != "pending" for row in response.json()["data"]):
                    break
                waited = True
                await asyncio.sleep(0.2)
            if waited:  # checking an already finished batch is not processing time
                finished_at = time.perf_counter()
        processed = finished_at - started
    print(f"B2: all {records:,} records processed in {processed:.2f} s: {records / processed * 60:,.0f} records/min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--r2", type=int, default=2000, help="real-time records to send (0 to skip)")
    parser.add_argument("--batches", type=int, default=40, help="B2 batches of 500 records (0 to skip)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="callerid serve processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="callerid-bench-") as folder:
        root = Path(folder)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERID_")}
        env.update(
            CALLERID_DATABASE_URL=f"sqlite+aiosqlite:///{root / 'callerid.db'}",
            CALLERID_DATA_DIR=str(root / "data"),
            CALLERID_PORT=str(port),
            CALLERID_WORKERS=str(args.workers),
            CALLERID_LOG_LEVEL="WARNING",
            CALLERID_RATE_LIMIT_GENERAL="1000000/second",
            CALLERID_RATE_LIMIT_BATCH_V2="1000000/minute",
        )
        account = cli(env, "accounts", "create", "--name", "Bench Co", "--admin-email", "admin@bench.test")
        account_id = account["client_account_id"]
        key = cli(env, "api-keys", "create", "--account", account_id, "--name", "bench")
        logo = root / "logo.png"
        buffer = io.BytesIO()
        Image.new("RGB", (200, 200), "teal").save(buffer, format="PNG")
        logo.write_bytes(buffer.getvalue())
        label = cli(env, "labels", "create", "--account", account_id, "--name", "Bench", "--logo", str(logo))

        server = subprocess.Popen([str(CALLERID), "serve"], env=env, stdout=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, server)
            token = httpx.post(
                f"{base}/clients/{account_id}/token",
                json={"key_id": key["key_id"], "api_key": key["api_key"]},
                headers={"X-Public-Access": "allow"},
            ).json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            print(f"callerid serve, {args.workers} process(es), SQLite, {os.cpu_count()} CPUs")
            if args.r2:
                asyncio.run(bench_r2(base, account_id, auth, label["id"], args.r2, args.concurrency))
            if args.batches:
                asyncio.run(bench_b2(base, account_id, auth, label["id"], args.batches, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
