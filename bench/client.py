# ruff: noqa: E402 - the imports must follow the sys.path fix below
"""Benchmark: the Python client's ``personalise_many`` against plain concurrent httpx posting B2 batches.

Starts a real ``callerid serve`` (SQLite, or ``--database-url``) with a demo account, then, ``--rounds`` times and
in turn so that the machine's ups and downs hit both alike:

1. **raw B2**: ``--records`` records (default 100,000) as pre-serialised batches of 500, posted by ``--concurrency``
   tasks sharing one ``httpx.AsyncClient`` and one token; records/min accepted (all batch ids back), then polls S2
   (the last batch first, then the others) until every record is final: records/min fully processed.
2. **client**: the same number of records (as dicts) through ``AsyncClient.personalise_many`` with the same
   concurrency: local validation (rules and the label), batching, idempotency keys, retries and pacing, then waiting
   for every outcome via S2. Once with ``wait=False`` (accepted) and once with ``wait=True`` (processed).

Also, as diagnostics: raw B2 with an ``Idempotency-Key`` on each request (what the client sends, so that the server
does the same work) and the client without keys (``RetryPolicy(idempotency_keys=False)``), which separate the
client's own cost from the server's cost of idempotency.

Prints each figure and the client's share of the raw one (target: at least 80 %). The server's per-token limits
(60 batches/min, 100 requests/s) would cap both at 30,000 records/min per token, which measures the limit rather than
the client: the bench raises them on the server and tells the client the same (``batches_per_minute=None``).

Run: ``.venv/bin/python bench/client.py [--records 100000] [--rounds 2] [--concurrency 8]``.
"""

from __future__ import annotations

import os.path
import sys

# bench/numbers.py is named like the standard library's ``numbers``: keep this folder last on sys.path.
_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _BENCH_DIR] + [_BENCH_DIR]

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from benchkit import CALLERID, cli, free_port, wait_ready
from callerid_client import AsyncClient, RetryPolicy

BATCH_SIZE = 500
CALLER = "911234567890"


def records(label_id: str, count: int, first_receiver: int) -> list[dict[str, Any]]:
    now_ms = int(time.time() * 1000)
    return [
        {
            "label_id": label_id,
            "caller_number": CALLER,
            "receiver_number": f"91{first_receiver + i}",
            "dynamic_call_reason": "Flower Delivery",
            "starts_at": now_ms,
            "ends_at": now_ms + 3_600_000,
        }
        for i in range(count)
    ]


async def raw_b2(
    base: str, account: str, token: str, bodies: list[bytes], concurrency: int, keys: bool = False
) -> tuple[float, float]:
    """Seconds until every batch is accepted, and until every record is final (``keys``: each request with an
    ``Idempotency-Key``, as the client sends them)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    path = f"/v2/clients/{account}/dynamic_call_records"
    queue = iter(bodies)
    accepted: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=300) as http:

        async def post_loop() -> None:
            for body in queue:
                key = {"Idempotency-Key": str(uuid.uuid4())} if keys else {}
                response = await http.post(path, content=body, headers={**headers, **key})
                if response.status_code != 200:
                    raise SystemExit(f"B2 answered {response.status_code}: {response.text[:300]}")
                accepted.append(response.json()["batch_id"])

        started = time.perf_counter()
        await asyncio.gather(*(post_loop() for _ in range(concurrency)))
        accept_seconds = time.perf_counter() - started
        for batch_id in [accepted[-1], *accepted[:-1]]:
            while True:
                response = await http.get(path, params={"batchId": batch_id}, headers=headers)
                response.raise_for_status()
                rows = response.json()["data"]
                if len(rows) == BATCH_SIZE and all(row["status_info"]["status"] != "pending" for row in rows):
                    break
                await asyncio.sleep(0.25)
        return accept_seconds, time.perf_counter() - started


async def client_run(
    base: str, demo: dict[str, Any], items: list[dict[str, Any]], concurrency: int, wait: bool, keys: bool = True
) -> tuple[float, dict[str, int]]:
    async with AsyncClient(
        base, demo["client_account_id"], demo["key_id"], demo["api_key"], batches_per_minute=None,
        requests_per_second=None, retry=RetryPolicy(idempotency_keys=keys),
    ) as api:  # fmt: skip
        await api.get_token()  # not part of the figure: one mint per process
        started = time.perf_counter()
        result = await api.personalise_many(items, concurrency=concurrency, wait=wait, poll_interval=0.25)
        return time.perf_counter() - started, result.counts()


def per_minute(count: int, seconds: float) -> float:
    return count / seconds * 60


async def bench(base: str, demo: dict[str, Any], args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        minted = await http.post(
            f"/clients/{demo['client_account_id']}/token",
            json={"key_id": demo["key_id"], "api_key": demo["api_key"]},
            headers={"X-Public-Access": "allow"},
        )
        minted.raise_for_status()
        token = minted.json()["token"]
    names = ("raw_acc", "raw_proc", "client_acc", "client_proc", "client_nokeys", "raw_keys")
    figures: dict[str, list[float]] = {name: [] for name in names}
    receiver = 8_000_000_000
    batches = args.records // BATCH_SIZE
    count = batches * BATCH_SIZE
    for round_number in range(1, args.rounds + 1):
        # Raw first in odd rounds, the client first in even ones: the database grows with every run.
        for phase in ("raw", "client") if round_number % 2 else ("client", "raw"):
            if phase == "raw":
                items = records(demo["label_id"], count, receiver)
                receiver += count
                bodies = [
                    json.dumps({"call_records": items[i : i + BATCH_SIZE]}, separators=(",", ":")).encode()
                    for i in range(0, count, BATCH_SIZE)
                ]
                accept, processed = await raw_b2(base, demo["client_account_id"], token, bodies, args.concurrency)
                figures["raw_acc"].append(per_minute(count, accept))
                figures["raw_proc"].append(per_minute(count, processed))
                items = records(demo["label_id"], count, receiver)
                receiver += count
                bodies = [
                    json.dumps({"call_records": items[i : i + BATCH_SIZE]}, separators=(",", ":")).encode()
                    for i in range(0, count, BATCH_SIZE)
                ]
                accept, _ = await raw_b2(base, demo["client_account_id"], token, bodies, args.concurrency, keys=True)
                figures["raw_keys"].append(per_minute(count, accept))
                continue
            items = records(demo["label_id"], count, receiver)
            receiver += count
            seconds, counts = await client_run(base, demo, items, args.concurrency, wait=False)
            assert counts == {"pending": count}, counts
            figures["client_acc"].append(per_minute(count, seconds))
            items = records(demo["label_id"], count, receiver)
            receiver += count
            seconds, counts = await client_run(base, demo, items, args.concurrency, wait=True)
            assert counts == {"not_app_user": count}, counts
            figures["client_proc"].append(per_minute(count, seconds))
            items = records(demo["label_id"], count, receiver)
            receiver += count
            seconds, counts = await client_run(base, demo, items, args.concurrency, wait=False, keys=False)
            figures["client_nokeys"].append(per_minute(count, seconds))
        print(
            f"round {round_number}: raw B2 {figures['raw_acc'][-1]:,.0f} records/min accepted, "
            f"{figures['raw_proc'][-1]:,.0f} processed; client {figures['client_acc'][-1]:,.0f} accepted "
            f"({figures['client_acc'][-1] / figures['raw_acc'][-1]:.0%}), {figures['client_proc'][-1]:,.0f} with every "
            f"outcome ({figures['client_proc'][-1] / figures['raw_proc'][-1]:.0%})",
            flush=True,
        )
    median = {name: statistics.median(values) for name, values in figures.items()}
    print(f"\n{count:,} records per run, {args.concurrency} batches in flight, medians of {args.rounds} round(s):")
    print(f"  raw B2 (plain httpx, pre-built batches): {median['raw_acc']:>12,.0f} records/min accepted")
    print(f"  client personalise_many(wait=False):     {median['client_acc']:>12,.0f} records/min accepted "
          f"= {median['client_acc'] / median['raw_acc']:.1%} of raw")  # fmt: skip
    print(f"  raw B2 with an Idempotency-Key each:     {median['raw_keys']:>12,.0f} records/min accepted; the client "
          f"= {median['client_acc'] / median['raw_keys']:.1%} of it")  # fmt: skip
    print(f"  the client without Idempotency-Key:      {median['client_nokeys']:>12,.0f} records/min accepted "
          f"= {median['client_nokeys'] / median['raw_acc']:.1%} of raw (the gap: server idempotency)")  # fmt: skip
    print(f"  raw B2 + S2 polling until final:         {median['raw_proc']:>12,.0f} records/min processed")
    print(f"  client personalise_many(wait=True):      {median['client_proc']:>12,.0f} records/min processed "
          f"= {median['client_proc'] / median['raw_proc']:.1%} of raw")  # fmt: skip
    worst = min(median["client_acc"] / median["raw_acc"], median["client_proc"] / median["raw_proc"])
    print(f"  target >= 80 %: {'PASS' if worst >= 0.8 else 'FAIL'} (lower ratio {worst:.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="callerid-bench-client-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERID_")}
    env.update(
        CALLERID_DATA_DIR=str(folder / "data"),
        CALLERID_PORT=str(port),
        CALLERID_LOG_LEVEL="WARNING",
        CALLERID_DATABASE_URL=args.database_url or f"sqlite+aiosqlite:///{folder / 'callerid.db'}",
        CALLERID_RATE_LIMIT_GENERAL="1000000/second",
        CALLERID_RATE_LIMIT_BATCH_V2="1000000/minute",
    )
    server: subprocess.Popen[bytes] | None = None
    try:
        demo = cli(env, "demo")
        with open(folder / "serve.log", "wb") as log:
            server = subprocess.Popen([str(CALLERID), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, server)
        asyncio.run(bench(base, demo, args))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
