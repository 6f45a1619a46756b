# ruff: noqa: E402 - the imports must follow the sys.path fix below
"""Benchmark: what call records cost on disk, and how large SQLite's WAL grows, under a sustained B2 load.

For each backend (``--backend sqlite`` = the embedded default, ``postgres`` = PostgreSQL + Redis, or ``both``):

1. Sets up ``--accounts`` accounts (API key, dynamic label; real CLI), starts ``callerid serve`` with default settings
   and mints 10 tokens per account; registers ``--phones`` phones, for the lookups below.
2. Sustains B2 for ``--seconds`` (default 5 minutes): batches of 500 records at ``--rate`` records per minute
   (default 300,000, the reference's own rate: SPEC §4; 0 = as fast as the server takes them), each record to a
   random receiver, from one of a few callers and call reasons per account (as a business's traffic looks). Readers
   run meanwhile, because readers are what keeps SQLite from checkpointing: caller-ID lookups and S2 polls of
   recent batches.
3. SQLite: samples the size of the WAL file every ``--sample-ms`` during the load; prints its largest and final size
   against the 64 MB bound (issue 15).
4. Waits until every batch is delivered (its outcomes written: the layout a record keeps), then prints the bytes a
   record costs on disk including its indexes, against the 300-byte bound: SQLite from the ``dbstat`` virtual
   table (pages of the personalisation tables and their indexes, as allocated), PostgreSQL from
   ``pg_total_relation_size`` (heap, indexes, TOAST, free-space and visibility maps), both divided by the number of
   records. Batches and the tables a record refers to are counted with the records; so is what a table holds
   that is not a live row (free space, dead tuples not vacuumed yet): that is what the disk holds.

Client and server share the machine: with other work running, the load may fall short of ``--rate`` (printed).
PostgreSQL: a fresh database ``callerid_bench_storage_<pid>`` on ``--postgres``, dropped afterwards; Redis: flushes
database ``--redis-db`` of ``--redis`` before and after (use a database nothing else uses).

Run: ``.venv/bin/python bench/storage.py`` (``--help`` for the knobs; ``--seconds 60`` for a quick look).
"""

from __future__ import annotations

import os.path
import sys

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
# bench/numbers.py shadows the standard library's ``numbers`` when this folder comes first on sys.path: move it last.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _BENCH_DIR] + [_BENCH_DIR]

import argparse
import asyncio
import base64
import os
import random
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from benchkit import CALLERID, free_port, wait_ready

from personalisation import BATCH_SIZE, make_tenants, prepare

MB = 1024 * 1024
RECORD_BYTES_LIMIT = 300
WAL_BYTES_LIMIT = 64 * MB
# The tables a call record lives in (those of an older layout that do not exist are skipped).
TABLES = ("call_records", "call_batches", "call_batch_texts")
DELIVER_JOB = "personalisation.deliver_batch"
REASONS = ("Flower Delivery", "Your parcel is on its way", "Appointment reminder", "Calling about your order")


def batch_body(label_id: str, callers: list[str], now_ms: int, rng: random.Random) -> bytes:
    """500 records to random receivers, from the account's callers, with one of a few call reasons."""
    records = [
        {
            "label_id": label_id,
            "caller_number": rng.choice(callers),
            "receiver_number": f"91{rng.randrange(6_000_000_000, 9_999_999_999)}",
            "dynamic_call_reason": rng.choice(REASONS),
            "starts_at": now_ms,
            "ends_at": now_ms + 3_600_000,
        }
        for _ in range(BATCH_SIZE)
    ]
    return orjson.dumps({"call_records": records})


class WalSampler(threading.Thread):
    """The size of SQLite's WAL file every ``interval`` seconds (0 while there is none)."""

    def __init__(self, database: Path, interval: float):
        super().__init__(daemon=True)
        self.wal = Path(f"{database}-wal")
        self.interval = interval
        self.sizes: list[int] = []
        self.stopped = threading.Event()

    def size(self) -> int:
        try:
            return self.wal.stat().st_size
        except FileNotFoundError:
            return 0

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sizes.append(self.size())


async def sustain_b2(
    base: str, tenants: list[dict[str, Any]], device_tokens: list[str], args: argparse.Namespace
) -> tuple[int, float]:
    """B2 at ``args.rate`` for ``args.seconds``, with lookups and S2 polls alongside; (records accepted, seconds)."""
    rng = random.Random(15)
    for tenant in tenants:
        tenant["callers"] = [f"9180{rng.randrange(10_000_000, 99_999_999)}" for _ in range(3)]
    pairs = [(t, auth) for t in tenants for auth in t["auths"]]
    accepted: list[tuple[str, dict[str, str], str]] = []
    interval = BATCH_SIZE / (args.rate / 60) if args.rate else 0.0
    started = time.perf_counter()
    stop_at = started + args.seconds
    sent = 0

    async def writer(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while True:
            index = sent
            sent += 1
            due = started + index * interval
            if due >= stop_at or time.perf_counter() >= stop_at:
                return
            if due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            tenant, auth = pairs[index % len(pairs)]
            body = batch_body(tenant["label_id"], tenant["callers"], int(time.time() * 1000), rng)
            response = await http.post(
                f"/v2/clients/{tenant['account_id']}/dynamic_call_records",
                content=body,
                headers={**auth, "Content-Type": "application/json"},
            )
            if response.status_code != 200:
                raise SystemExit(f"B2 answered {response.status_code}: {response.text[:300]}")
            accepted.append((tenant["account_id"], auth, response.json()["batch_id"]))

    async def lookups(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at:
            token = rng.choice(device_tokens)
            response = await http.get(
                "/app/v1/caller-id", params={"caller": "911234567890"}, headers={"Authorization": f"Bearer {token}"}
            )
            response.raise_for_status()
            await asyncio.sleep(0.005)

    async def status_polls(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at:
            if accepted:
                account, auth, batch_id = accepted[-1 - rng.randrange(min(len(accepted), 20))]
                response = await http.get(
                    f"/v2/clients/{account}/dynamic_call_records?batchId={batch_id}", headers=auth
                )
                response.raise_for_status()
            await asyncio.sleep(0.1)

    limits = httpx.Limits(max_connections=args.b2_concurrency + 4, max_keepalive_connections=args.b2_concurrency + 4)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=300) as http:
        await asyncio.gather(
            *(writer(http) for _ in range(args.b2_concurrency)),
            *(lookups(http) for _ in range(2)),
            status_polls(http),
        )
    return len(accepted) * BATCH_SIZE, time.perf_counter() - started


class Store:
    """The benchmark's own SQL against the server's database: jobs left, sizes and counts."""

    def __init__(self, backend: str, sqlite_path: Path | None, psql_url: str | None):
        self.backend = backend
        self.sqlite_path = sqlite_path
        self.psql_url = psql_url

    def psql(self, sql: str) -> str:
        done = subprocess.run(["psql", str(self.psql_url), "-qAtc", sql], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def sqlite(self, sql: str, *parameters: Any) -> list[Any]:
        with sqlite3.connect(str(self.sqlite_path), timeout=60) as db:
            return db.execute(sql, parameters).fetchall()

    def scalar(self, sql: str) -> int:
        if self.backend == "postgres":
            return int(self.psql(sql))
        return int(self.sqlite(sql)[0][0])

    def deliveries_left(self) -> int:
        return self.scalar(f"SELECT count(*) FROM jobs WHERE kind = '{DELIVER_JOB}'")

    def sizes(self) -> dict[str, int]:
        """Bytes on disk per table and index of ``TABLES``."""
        if self.backend == "postgres":
            names = ", ".join(f"'{table}'" for table in TABLES)
            out = self.psql(
                "SELECT c.relname, pg_relation_size(c.oid) + coalesce(pg_total_relation_size(c.reltoastrelid), 0) "
                "FROM pg_class c WHERE c.relname IN "
                f"({names}) UNION ALL SELECT i.indexrelid::regclass::text, pg_relation_size(i.indexrelid) "
                f"FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname IN ({names})"
            )
            # The free-space and visibility maps of each table are counted with it (pg_total_relation_size).
            maps = self.psql(
                "SELECT coalesce(sum(pg_relation_size(c.oid, 'fsm') + pg_relation_size(c.oid, 'vm')), 0) "
                f"FROM pg_class c WHERE c.relname IN ({names})"
            )
            sizes = {name: int(size) for name, size in (line.split("|") for line in out.splitlines())}
            sizes["(free-space and visibility maps)"] = int(maps)
            return sizes
        rows = self.sqlite(
            "SELECT s.name, sum(s.pgsize) FROM dbstat s JOIN sqlite_schema m ON m.name = s.name "
            f"WHERE m.tbl_name IN ({', '.join('?' * len(TABLES))}) GROUP BY s.name",
            *TABLES,
        )
        return {name: int(size) for name, size in rows}


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, bool]:
    folder = Path(tempfile.mkdtemp(prefix=f"callerid-bench-storage-{backend}-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERID_")}
    env.update(
        CALLERID_DATA_DIR=str(folder / "data"),
        CALLERID_PORT=str(port),
        CALLERID_LOG_LEVEL=args.log_level,
        CALLERID_DEVICE_VERIFIER="none",  # phones register without proof here (no SMS gateway needed)
    )
    database = f"callerid_bench_storage_{os.getpid()}"
    sqlite_path: Path | None = None
    psql_url: str | None = None
    if backend == "sqlite":
        sqlite_path = folder / "callerid.db"
        env["CALLERID_DATABASE_URL"] = f"sqlite+aiosqlite:///{sqlite_path}"
    else:
        subprocess.run(["psql", args.postgres_admin, "-qc", f"CREATE DATABASE {database}"], check=True)
        env["CALLERID_DATABASE_URL"] = f"{args.postgres}/{database}"
        env["CALLERID_REDIS_URL"] = f"{args.redis}/{args.redis_db}"
        env["CALLERID_SECRET_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()  # required with PostgreSQL
        psql_url = args.postgres_admin.rsplit("/", 1)[0] + f"/{database}"
        subprocess.run(["redis-cli", "-u", env["CALLERID_REDIS_URL"], "flushdb"], check=True, capture_output=True)
    store = Store(backend, sqlite_path, psql_url)
    server: subprocess.Popen[bytes] | None = None
    verdicts: dict[str, bool] = {}
    try:
        tenants = make_tenants(env, folder, args.accounts)
        server_log = open(folder / "serve.log", "wb")  # noqa: SIM115 - closed with the folder
        server = subprocess.Popen([str(CALLERID), "serve"], env=env, stdout=server_log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, server)
        device_tokens = prepare(base, tenants, args.phones)
        with open("/proc/loadavg") as loadavg:
            load = " ".join(loadavg.read().split()[:3])
        rate = f"{args.rate:,} records/min" if args.rate else "as fast as the server takes them"
        print(
            f"{backend}: callerid serve, 1 process, {os.cpu_count()} CPUs, load {load}; {len(tenants)} accounts; "
            f"B2 for {args.seconds} s at {rate}, {args.b2_concurrency} clients, with lookups and S2 polls"
        )
        sampler = WalSampler(sqlite_path, args.sample_ms / 1000) if sqlite_path is not None else None
        if sampler is not None:
            sampler.start()
        records, seconds = asyncio.run(sustain_b2(base, tenants, device_tokens, args))
        print(f"  B2 accepted {records:,} records in {seconds:.1f} s: {records / seconds * 60:,.0f} records/min")
        deadline = time.monotonic() + args.drain_seconds
        while (left := store.deliveries_left()) and time.monotonic() < deadline:
            time.sleep(0.5)
        if left:
            print(f"  {left} batches were still being delivered after {args.drain_seconds} s (sizes include them)")
        if sampler is not None:
            sampler.stopped.set()
            sampler.join()
            largest, final = max(sampler.sizes, default=0), sampler.size()
            verdicts["wal"] = largest <= WAL_BYTES_LIMIT
            print(
                f"  WAL: largest {largest / MB:.1f} MB, at the end {final / MB:.1f} MB "
                f"({len(sampler.sizes):,} samples every {args.sample_ms} ms); bound {WAL_BYTES_LIMIT // MB} MB: "
                f"{'PASS' if verdicts['wal'] else 'FAIL'}"
            )
        stored = store.scalar("SELECT count(*) FROM call_records")
        sizes = store.sizes()
        total = sum(sizes.values())
        per_record = total / max(stored, 1)
        verdicts["record"] = per_record <= RECORD_BYTES_LIMIT
        print(
            f"  {stored:,} records take {total / MB:,.1f} MB with their indexes and batches: {per_record:.0f} bytes "
            f"per record; bound {RECORD_BYTES_LIMIT}: {'PASS' if verdicts['record'] else 'FAIL'}"
        )
        for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
            print(f"    {name}: {size / MB:,.1f} MB, {size / max(stored, 1):.1f} bytes per record")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        if backend == "postgres":
            subprocess.run(["psql", args.postgres_admin, "-qc", f"DROP DATABASE IF EXISTS {database}"], check=False)
            subprocess.run(["redis-cli", "-u", env["CALLERID_REDIS_URL"], "flushdb"], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=int, default=300, help="duration of the sustained B2 load")
    parser.add_argument("--rate", type=int, default=300_000, help="B2 records per minute (0: as fast as possible)")
    parser.add_argument("--b2-concurrency", type=int, default=8, help="B2 requests in flight at most")
    parser.add_argument("--accounts", type=int, default=8, help="accounts, 10 tokens each")
    parser.add_argument("--phones", type=int, default=8, help="phones that look callers up during the load")
    parser.add_argument("--sample-ms", type=int, default=100, help="how often the WAL file's size is sampled")
    parser.add_argument("--drain-seconds", type=int, default=600, help="longest wait for deliveries to finish")
    parser.add_argument("--log-level", default="WARNING", help="CALLERID_LOG_LEVEL of the server")
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432")
    parser.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=12)
    args = parser.parse_args()
    verdicts = {}
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        verdicts[backend] = run_backend(backend, args)
    failed = [f"{backend} {name}" for backend, checks in verdicts.items() for name, ok in checks.items() if not ok]
    print("PASS" if not failed else f"FAIL: {', '.join(failed)}")


if __name__ == "__main__":
    main()
