# ruff: noqa: E402 - the imports must follow the sys.path fix below
"""Benchmark: the real-time path (R2) while the retention purge deletes a million expired call records.

For each backend (``--backend sqlite`` = the embedded default, ``postgres`` = PostgreSQL + Redis, or ``both``):

1. Sets up ``--accounts`` accounts (API key, dynamic label; real CLI), starts ``callerid serve`` with default
   settings (so its retention jobs run in the process, as shipped) and mints 10 tokens per account.
2. Bulk-inserts ``--records`` call records (batches of 500) whose window ended 40 days ago, straight in SQL
   (a recursive CTE on SQLite, generate_series on PostgreSQL): 30 days past the default retention.
3. R2 with no purge running: ``POST /v2/clients/{id}/dynamic_call_record`` with ``wrk`` for ``--seconds``.
4. Makes the server's ``personalisation.purge`` job due now (as when its hourly period comes round) and runs the same
   R2 load for ``--seconds`` while it deletes (the purge must outlast the load: the records left then are printed).
5. Waits for the purge to finish (its job is then due again an hour later): rows/s and total time of the purge.

Load generator: ``wrk`` (Debian package ``wrk``), as in bench/personalisation.py, whose helpers this reuses. Client,
server and database share the machine, so every figure is a floor; compare the two R2 lines of one run.

Run: ``.venv/bin/python bench/retention.py`` (``--help`` for the knobs).
"""

from __future__ import annotations

import os.path
import sys

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
# bench/numbers.py shadows the standard library's ``numbers`` when this folder comes first on sys.path: move it last.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _BENCH_DIR] + [_BENCH_DIR]

import argparse
import base64
import io
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from benchkit import CALLERID, free_port, wait_ready
from PIL import Image

from callerid.config import Settings
from callerid.personalisation.models import GROUP_SPAN
from personalisation import (
    TOKENS_PER_ACCOUNT,
    make_tenant,
    r2_targets,
    report,
    run_wrk,
    wrk_script_plain,
    wrk_script_r2,
)

BATCH = 500
INSERT_CHUNK = 100_000  # records per INSERT transaction (SQLite)
PURGE_KIND = "personalisation.purge"
AGE = timedelta(days=40)  # the records' windows ended this long ago (default retention: 30 days)


def sqlite_time(value: datetime) -> str:
    """How SQLAlchemy stores a UtcDateTime on SQLite (naive UTC text)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class Store:
    """The benchmark's own SQL against the server's database (bulk insert, the purge job, counts)."""

    def __init__(self, backend: str, sqlite_path: Path | None, psql_url: str | None):
        self.backend = backend
        self.sqlite_path = sqlite_path
        self.psql_url = psql_url

    def psql(self, sql: str) -> str:
        done = subprocess.run(["psql", str(self.psql_url), "-qAtc", sql], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def insert_expired(self, account_id: str, label_id: str, records: int) -> None:
        """``records`` (rounded up to whole batches) delivered long ago, in the layout of
        ``callerid.personalisation.models``: a batch row with its outcomes and one text, and the records of each."""
        ended = datetime.now(UTC) - AGE
        ends_ms = int(ended.timestamp() * 1000)
        batches = (records + BATCH - 1) // BATCH
        outcomes = f'[["not_app_user", "Not an app user", [0, {BATCH}]]]'
        if self.backend == "postgres":
            created = f"now() - interval '{AGE.days + 1} days'"
            self.psql(
                "INSERT INTO call_batches (id, account_id, version, record_count, created_at, outcomes) "
                f"SELECT md5('b' || g)::uuid, '{account_id}', 'v2', {BATCH}, {created}, '{outcomes}' "
                f"FROM generate_series(0, {batches - 1}) g"
            )
            self.psql(
                "INSERT INTO call_batch_texts (batch_key, number, label_id, label_name) "
                f"SELECT key, 0, '{label_id}', 'Bench' FROM call_batches WHERE account_id = '{account_id}'"
            )
            self.psql(
                "INSERT INTO call_records (id, caller, receiver, starts_at, ends_at, display, state) "
                f"SELECT b.key * {GROUP_SPAN} + p, 911234567890, 918000000000 + b.key * {BATCH} + p, "
                f"{ends_ms - 3_600_000}, {ends_ms}, 0, 0 FROM call_batches b, generate_series(0, {BATCH - 1}) p "
                f"WHERE b.account_id = '{account_id}'"
            )
            self.psql("ANALYZE call_records; ANALYZE call_batches; ANALYZE call_batch_texts")
            return
        account, label = uuid.UUID(account_id).hex, uuid.UUID(label_id).hex  # SQLite stores UUIDs as 32 hex digits
        created = sqlite_time(ended - timedelta(days=1))
        with sqlite3.connect(str(self.sqlite_path), timeout=60, isolation_level=None) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1) "
                "INSERT INTO call_batches (id, account_id, version, record_count, created_at, outcomes) "
                "SELECT printf('deadbeef%024x', i), ?, 'v2', ?, ?, ? FROM n",
                (batches, account, BATCH, created, outcomes),
            )
            db.execute(
                "INSERT INTO call_batch_texts (batch_key, number, label_id, label_name) "
                "SELECT key, 0, ?, 'Bench' FROM call_batches WHERE account_id = ?",
                (label, account),
            )
            db.execute("COMMIT")
            keys = [key for (key,) in db.execute("SELECT key FROM call_batches WHERE account_id = ?", (account,))]
            for start in range(0, len(keys), INSERT_CHUNK // BATCH):
                chunk = keys[start : start + INSERT_CHUNK // BATCH]
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "WITH RECURSIVE p(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM p WHERE i < ? - 1) "
                    "INSERT INTO call_records (id, caller, receiver, starts_at, ends_at, display, state) "
                    "SELECT b.key * ? + p.i, 911234567890, 918000000000 + b.key * ? + p.i, ?, ?, 0, 0 "
                    "FROM call_batches b, p WHERE b.key BETWEEN ? AND ? ORDER BY b.key, p.i",
                    (BATCH, GROUP_SPAN, BATCH, ends_ms - 3_600_000, ends_ms, chunk[0], chunk[-1]),
                )
                db.execute("COMMIT")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def expired_left(self) -> int:
        cutoff_ms = int((datetime.now(UTC) - timedelta(days=30)).timestamp() * 1000)
        sql = f"SELECT count(*) FROM call_records WHERE ends_at < {cutoff_ms}"
        if self.backend == "postgres":
            return int(self.psql(sql))
        with sqlite3.connect(str(self.sqlite_path), timeout=60) as db:
            return int(db.execute(sql).fetchone()[0])

    def batches(self) -> int:
        """Batches older than the retention (the R2 load's groups are not)."""
        cutoff = datetime.now(UTC) - timedelta(days=30)
        if self.backend == "postgres":
            return int(self.psql(f"SELECT count(*) FROM call_batches WHERE created_at < '{cutoff.isoformat()}'"))
        with sqlite3.connect(str(self.sqlite_path), timeout=60) as db:
            sql = "SELECT count(*) FROM call_batches WHERE created_at < ?"
            return int(db.execute(sql, (sqlite_time(cutoff),)).fetchone()[0])

    def purge_due_in(self) -> float | None:
        """Seconds until the purge job is due (negative: due or running), None while no row exists."""
        if self.backend == "postgres":
            out = self.psql(f"SELECT extract(epoch FROM due_at) FROM jobs WHERE kind = '{PURGE_KIND}'")
            return float(out) - time.time() if out else None
        with sqlite3.connect(str(self.sqlite_path), timeout=60) as db:
            row = db.execute("SELECT due_at FROM jobs WHERE kind = ?", (PURGE_KIND,)).fetchone()
        if row is None:
            return None
        return datetime.fromisoformat(row[0]).replace(tzinfo=UTC).timestamp() - time.time()

    def make_purge_due(self) -> None:
        if self.backend == "postgres":
            self.psql(f"UPDATE jobs SET due_at = now() WHERE kind = '{PURGE_KIND}' AND status = 'queued'")
            return
        with sqlite3.connect(str(self.sqlite_path), timeout=60, isolation_level=None) as db:
            changed = db.execute(
                "UPDATE jobs SET due_at = ? WHERE kind = ? AND status = 'queued'",
                (sqlite_time(datetime.now(UTC)), PURGE_KIND),
            ).rowcount
        if changed != 1:
            raise SystemExit("the purge job is not waiting in the queue")


def mint_tokens(base: str, tenants: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        for tenant in tenants:
            tenant["auths"] = []
            for _ in range(TOKENS_PER_ACCOUNT):
                minted = http.post(
                    f"/clients/{tenant['account_id']}/token",
                    json={"key_id": tenant["key"]["key_id"], "api_key": tenant["key"]["api_key"]},
                    headers={"X-Public-Access": "allow"},
                )
                minted.raise_for_status()
                tenant["auths"].append({"Authorization": f"Bearer {minted.json()['token']}"})


def run_backend(backend: str, args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"callerid-bench-retention-{backend}-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERID_")}
    env.update(
        CALLERID_DATA_DIR=str(folder / "data"),
        CALLERID_PORT=str(port),
        CALLERID_LOG_LEVEL=args.log_level,
        CALLERID_RETENTION_CHUNK_ROWS=str(args.chunk_rows),
        CALLERID_RETENTION_CHUNK_PAUSE_SECONDS=str(args.chunk_pause),
    )
    database = f"callerid_bench_retention_{os.getpid()}"
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
        env["CALLERID_DEVICE_VERIFIER"] = "trusted_backend"  # no phone registers here (no SMS gateway needed)
        psql_url = args.postgres_admin.rsplit("/", 1)[0] + f"/{database}"
        subprocess.run(["redis-cli", "-u", env["CALLERID_REDIS_URL"], "flushdb"], check=True, capture_output=True)
    store = Store(backend, sqlite_path, psql_url)
    server: subprocess.Popen[bytes] | None = None
    try:
        logo = folder / "logo.png"
        buffer = io.BytesIO()
        Image.new("RGB", (200, 200), "teal").save(buffer, format="PNG")
        logo.write_bytes(buffer.getvalue())
        tenants = [make_tenant(env, 0, logo)]  # migrates the database
        with ThreadPoolExecutor(max_workers=4) as pool:
            tenants += list(pool.map(lambda i: make_tenant(env, i, logo), range(1, args.accounts)))

        server_log = open(folder / "serve.log", "wb")  # noqa: SIM115 - closed with the folder
        server = subprocess.Popen([str(CALLERID), "serve"], env=env, stdout=server_log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, server)
        mint_tokens(base, tenants)
        deadline = time.monotonic() + 30
        while (due := store.purge_due_in()) is None or due < 60:  # its first run (empty tables) is over
            if time.monotonic() > deadline:
                raise SystemExit("the purge job never ran its first (empty) round")
            time.sleep(0.2)

        started = time.perf_counter()
        store.insert_expired(tenants[0]["account_id"], tenants[0]["label_id"], args.records)
        inserted = store.expired_left()
        print(
            f"{backend}: callerid serve, 1 process, {os.cpu_count()} CPUs; {inserted:,} expired call records in "
            f"{store.batches():,} batches inserted in {time.perf_counter() - started:.1f} s; retention chunk "
            f"{args.chunk_rows} rows, pause {args.chunk_pause * 1000:.0f} ms; wrk -t{args.threads} "
            f"-c{args.connections} -d{args.seconds}s"
        )
        ceiling = run_wrk(base, wrk_script_plain("/healthz"), args, folder, "healthz")
        print(f"  ceiling GET /healthz: {ceiling['per_second']:,.0f} requests/s")
        targets = r2_targets(tenants)
        script = wrk_script_r2(targets, int(time.time() * 1000))
        report("R2, no purge running", "records", run_wrk(base, script, args, folder, "r2-idle"), ceiling)

        store.make_purge_due()
        purge_started = time.perf_counter()
        loaded = run_wrk(base, wrk_script_r2(targets, int(time.time() * 1000)), args, folder, "r2-purge")
        left = store.expired_left()
        loaded_seconds = time.perf_counter() - purge_started
        report("R2, during the purge", "records", loaded, ceiling)
        print(
            f"  purge during that load: {inserted - left:,} records in {loaded_seconds:.1f} s "
            f"({(inserted - left) / loaded_seconds:,.0f} records/s); {left:,} left when the load stopped"
            + ("" if left else " (the purge ended before the load: the line above includes time without it)")
        )
        while (due := store.purge_due_in()) is None or due < 60:  # done: due again a period later
            time.sleep(0.1)
        total = time.perf_counter() - purge_started
        left_after, batches_after = store.expired_left(), store.batches()
        print(
            f"  purge: {inserted - left_after:,} records and their batches in {total:.1f} s "
            f"({(inserted - left_after) / total:,.0f} records/s overall); {left_after} expired records and "
            f"{batches_after} batches left"
        )
    except SystemExit:
        if (folder / "serve.log").exists():
            print((folder / "serve.log").read_text()[-3000:])
        raise
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        if backend == "postgres":
            subprocess.run(["psql", args.postgres_admin, "-qc", f"DROP DATABASE IF EXISTS {database}"], check=False)
            subprocess.run(["redis-cli", "-u", env["CALLERID_REDIS_URL"], "flushdb"], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--records", type=int, default=1_000_000, help="expired call records to purge")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk phase")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (each takes CPU from the server)")
    parser.add_argument("--accounts", type=int, default=8, help="accounts, 10 tokens each")
    defaults = Settings()
    parser.add_argument(
        "--chunk-rows", type=int, default=defaults.retention_chunk_rows, help="CALLERID_RETENTION_CHUNK_ROWS"
    )
    parser.add_argument(
        "--chunk-pause",
        type=float,
        default=defaults.retention_chunk_pause_seconds,
        help="CALLERID_RETENTION_CHUNK_PAUSE_SECONDS",
    )
    parser.add_argument("--log-level", default="INFO", help="CALLERID_LOG_LEVEL of the server")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432")
    parser.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=12)
    args = parser.parse_args()
    if not shutil.which(args.wrk):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        run_backend(backend, args)


if __name__ == "__main__":
    main()
