# ruff: noqa: E402 - the imports must follow the sys.path fix below
"""Benchmark: the analytics API (issue 13 §4) over 90 days of an account with 10 million call records.

What it builds, per backend (``--backend postgres`` (default), ``sqlite`` or ``both``), in a fresh database:

1. One account (migrations, the accounts and numbers services): an API key with the ``analytics`` access level,
   ``--labels`` labels (20), an organisation tree with ``--feature-sets`` feature sets (30) and ``--numbers``
   business numbers (200), each number in one feature set and calling under ``--labels-per-number`` (4) of the labels.
2. The account's ``daily_figures`` as the tally leaves them after ``--records`` (10 million) call records over
   ``--days`` (90) days, not the records themselves: the API reads only the figures, and writing 10 M records through
   R2 would take hours here. Records are spread over the days (weekdays busier than weekends), the numbers (a few
   busy ones, a long tail) and each number's labels, with every day x number x label key present: 90 x 200 x 4 =
   72,000 rows, ~139 records each. Their outcomes and signals follow fixed shares (delivered 72 %, not an app user
   18 %, ...; shown 92 % of delivered; answered / missed / rejected 58 / 27 / 15 %; talk 95 s on average; blocked,
   Call Me Back, surveys and ratings a few %), plus the account's webhook row and delay histogram per day. The
   rows are inserted with plain INSERTs (each key once, as the tally's upserts leave it), then ``ANALYZE`` (what
   autovacuum does on a live database).
3. ``GET /clients/{id}/analytics?from=&to=`` for the 90 days, through the real app (``create_app``, httpx's ASGI
   transport, token from ``POST .../token``): for each ``group_by`` as JSON and as CSV, ``--requests`` sequential
   requests after ``--warmup`` ones, and prints p50 / p99 / max in ms against the 300 ms ceiling, with the CPU one
   request cost: this process (app and client; on SQLite the query too) and PostgreSQL's backend (its parallel
   workers not counted). On a busy machine the CPU figures say what the wall-clock ones would be on an idle one.

The client, the app and the database share the machine: every figure is a ceiling of what the server alone costs.

Run: ``.venv/bin/python bench/analytics.py`` (``--help`` for the knobs).
"""

from __future__ import annotations

import os.path
import sys

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
# bench/numbers.py shadows the standard library's ``numbers`` when this folder comes first on sys.path: move it last.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _BENCH_DIR] + [_BENCH_DIR]

import argparse
import asyncio
import random
import shutil
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from benchkit import cpu_seconds, percentile
from sqlalchemy import insert, text

from callerid import clock
from callerid.accounts import service as accounts
from callerid.analytics import queries
from callerid.analytics.models import (
    COUNTERS,
    NO_ID,
    NO_NUMBER,
    RECORD_COUNTERS,
    DailyFigures,
    DailyWebhookDelays,
)
from callerid.analytics.tally import DELAY_BUCKETS_MS, day_in
from callerid.app import create_app
from callerid.config import Settings
from callerid.db import Database
from callerid.db.migrate import upgrade_async
from callerid.labels.models import Label
from callerid.numbers import service as numbers

CEILING_MS = 300.0
INSERT_BATCH = 5_000
TIMEZONE = "Asia/Kolkata"
# Webhook deliveries per delay bucket (tally.DELAY_BUCKETS_MS, the last one open): most within a second.
DELAY_SHARES = [40.0, 30.0, 15.0, 8.0, 4.0, 2.0, 1.0] + [0.0] * (len(DELAY_BUCKETS_MS) + 1 - 7)


class Shape:
    """How the records and what followed them are spread: fixed shares, with a seeded jitter per row."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.random = random.Random(13)
        self.labels = [uuid.uuid4() for _ in range(args.labels)]
        self.feature_sets: list[uuid.UUID] = []
        self.numbers = [919800000000 + index for index in range(args.numbers)]
        # A few busy numbers and a long tail (Zipf-like weights); each number calls under a few of the labels.
        self.number_weights = [1.0 / (rank + 1) ** 0.8 for rank in range(args.numbers)]
        self.number_labels = [self.random.sample(self.labels, args.labels_per_number) for _ in self.numbers]
        # A number's records under its labels: its first label most, then fewer (1, 1/2, 1/3, ...).
        self.label_weights = [1.0 / (rank + 1) for rank in range(args.labels_per_number)]

    def day_weights(self, days: list[date]) -> list[float]:
        return [0.45 if day.weekday() >= 5 else 1.0 for day in days]

    def figures_of(self, records: int) -> dict[str, int]:
        """The counters of ``records`` call records of one key."""
        jitter = self.random.uniform(0.9, 1.1)
        delivered = round(records * 0.72 * jitter) if records else 0
        delivered = min(delivered, records)
        rest = records - delivered
        not_app = round(rest * 0.64)
        os_not = round(rest * 0.11)
        version = round(rest * 0.07)
        failed = rest - not_app - os_not - version
        shown = round(delivered * 0.92)
        answered = round(shown * 0.58)
        missed = round(shown * 0.27)
        rejected = shown - answered - missed
        surveys = round(answered * 0.06)
        ratings = round(surveys * 0.8)
        return {
            "records_delivered": delivered,
            "records_not_app_user": not_app,
            "records_os_not_supported": os_not,
            "records_app_version_not_supported": version,
            "records_failed_to_push": failed,
            "shown": shown,
            "answered": answered,
            "missed": missed,
            "rejected": rejected,
            "ended": answered,
            "talk_seconds": round(answered * self.random.uniform(80, 110)),
            "blocked": round(records * 0.004),
            "call_me_back_requests": round((missed + rejected) * 0.03),
            "survey_responses": surveys,
            "ratings": ratings,
            "rating_sum": round(ratings * self.random.uniform(3.6, 4.4)),
            "webhooks_succeeded": 0,
            "webhooks_failed": 0,
        }


def split(total: int, weights: list[float]) -> list[int]:
    """``total`` in whole parts proportional to ``weights`` (the remainder to the largest parts)."""
    scale = sum(weights)
    parts = [int(total * weight / scale) for weight in weights]
    order = sorted(range(len(weights)), key=lambda index: -weights[index])
    for index in order[: total - sum(parts)]:
        parts[index] += 1
    return parts


async def build(db: Database, settings: Settings, args: argparse.Namespace) -> tuple[uuid.UUID, dict[str, str], int]:
    """The account, its key (with ``analytics``), labels, tree and figures; returns (account, credentials, rows)."""
    shape = Shape(args)
    now = clock.now()
    async with db.transaction() as session:
        created = await accounts.create_account(
            session, name="Analytics Bench", admin_email="bench@example.com", timezone=TIMEZONE
        )
        account_id = created.account.id
        issued = await accounts.create_api_key(
            session, settings, account_id=account_id, name="bench", access=accounts.parse_access("analytics=read")
        )
        for index, label_id in enumerate(shape.labels):
            session.add(
                Label(
                    id=label_id,
                    account_id=account_id,
                    name=f"Label {index + 1:02d}",
                    label_type="static",
                    logo_key=None,
                    created_by_email="bench@example.com",
                    created_at=now,
                )
            )
        await session.flush()
        department = await numbers.create_department(session, account_id=account_id, name="Bench")
        operation, _ = await numbers.create_operation(
            session, account_id=account_id, department_id=department.id, name="Calls", calling_operation_name="Bench"
        )
        process = await numbers.create_process(session, account_id=account_id, operation_id=operation.id, name="All")
        for index in range(args.feature_sets):
            feature_set = await numbers.create_feature_set(
                session,
                account_id=account_id,
                process_id=process.id,
                label_id=shape.labels[index % len(shape.labels)],
                name=f"Feature set {index + 1:02d}",
            )
            shape.feature_sets.append(feature_set.id)
    credentials = {"key_id": str(issued.key.key_id), "api_key": issued.secret}

    today = day_in(TIMEZONE, now)
    days = [today - timedelta(days=offset) for offset in range(args.days - 1, -1, -1)]
    per_day = split(args.records, shape.day_weights(days))
    rows: list[dict[str, Any]] = []
    delay_rows: list[dict[str, Any]] = []
    for day, day_records in zip(days, per_day, strict=True):
        per_number = split(day_records, shape.number_weights)
        webhooks = 0
        for index, (number, number_records) in enumerate(zip(shape.numbers, per_number, strict=True)):
            feature_set = shape.feature_sets[index % len(shape.feature_sets)]
            labels = shape.number_labels[index]
            for label, records in zip(labels, split(number_records, shape.label_weights), strict=True):
                counts = shape.figures_of(records)
                webhooks += counts["call_me_back_requests"] + counts["survey_responses"]
                rows.append(
                    {
                        "account_id": account_id,
                        "day": day,
                        "label_id": label,
                        "feature_set_id": feature_set,
                        "business_number": number,
                        **counts,
                    }
                )
        failed = round(webhooks * 0.01)
        rows.append(
            {
                "account_id": account_id,
                "day": day,
                "label_id": NO_ID,
                "feature_set_id": NO_ID,
                "business_number": NO_NUMBER,
                **dict.fromkeys(COUNTERS, 0),
                "webhooks_succeeded": webhooks - failed,
                "webhooks_failed": failed,
            }
        )
        for bucket, count in enumerate(split(webhooks, DELAY_SHARES)):
            if count:
                delay_rows.append({"account_id": account_id, "day": day, "bucket": bucket, "count": count})

    for start in range(0, len(rows), INSERT_BATCH):
        async with db.transaction() as session:
            await session.execute(insert(DailyFigures.__table__), rows[start : start + INSERT_BATCH])
    async with db.transaction() as session:
        await session.execute(insert(DailyWebhookDelays.__table__), delay_rows)
    async with db.engine.connect() as connection:
        await (await connection.execution_options(isolation_level="AUTOCOMMIT")).execute(text("ANALYZE"))
    counted = sum(sum(row[name] for name in RECORD_COUNTERS) for row in rows)
    assert counted == args.records, (counted, args.records)
    return account_id, credentials, len(rows)


async def measure(
    app: Any, account_id: uuid.UUID, credentials: dict[str, str], args: argparse.Namespace, database: str | None
) -> bool:
    """Times each request; also the CPU it cost (this process: app and client; PostgreSQL's backends of
    ``database``), which a busy machine inflates much less than the wall-clock time."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as client:
        minted = await client.post(
            f"/clients/{account_id}/token", json=credentials, headers={"X-Public-Access": "allow"}
        )
        minted.raise_for_status()
        headers = {"Authorization": f"Bearer {minted.json()['token']}"}
        end = day_in(TIMEZONE, clock.now())
        start = end - timedelta(days=args.days - 1)
        within = True
        print(
            f"  {'request':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'cpu ms':>8} {'db cpu':>8} {'rows':>6}"
            f"  p99 vs {CEILING_MS:.0f} ms"
        )
        for output in ("json", "csv"):
            for group_by in queries.GROUPS:
                params = {"from": str(start), "to": str(end), "group_by": group_by, "format": output}
                timings = []
                size = 0
                cpu_before: tuple[float, float] = (0.0, 0.0)
                for attempt in range(args.warmup + args.requests):
                    if attempt == args.warmup:
                        cpu_before = cpu_seconds(os.getpid(), database)
                    began = time.perf_counter()
                    response = await client.get(f"/clients/{account_id}/analytics", params=params, headers=headers)
                    elapsed = (time.perf_counter() - began) * 1000
                    if response.status_code != 200:
                        raise SystemExit(f"{response.status_code}: {response.text[:500]}")
                    if attempt >= args.warmup:
                        timings.append(elapsed)
                    size = len(response.json()["rows"]) if output == "json" else response.text.count("\r\n") - 1
                cpu_after = cpu_seconds(os.getpid(), database)
                app_cpu = (cpu_after[0] - cpu_before[0]) * 1000 / args.requests
                db_cpu = (cpu_after[1] - cpu_before[1]) * 1000 / args.requests
                p50, p99 = percentile(timings, 0.50), percentile(timings, 0.99)
                ok = p99 < CEILING_MS
                within &= ok
                label = f"group_by={group_by} format={output}"
                print(
                    f"  {label:<34} {p50:8.1f} {p99:8.1f} {max(timings):8.1f} {app_cpu:8.1f} {db_cpu:8.1f} {size:6d}"
                    f"  {'ok' if ok else 'OVER'}"
                )
    return within


async def run_backend(backend: str, args: argparse.Namespace) -> bool:
    work = Path(tempfile.mkdtemp(prefix="callerid-bench-analytics-"))
    database = f"callerid_bench_analytics_{os.getpid()}"
    if backend == "postgres":
        admin = await asyncpg.connect(args.postgres_admin)
        await admin.execute(f'CREATE DATABASE "{database}"')
        await admin.close()
        url = f"{args.postgres}/{database}"
    else:
        url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
    try:
        await upgrade_async(url)
        settings = Settings(
            database_url=url, data_dir=work / "data", redis_url=None, run_jobs_in_process=False, log_level="WARNING"
        )
        db = Database(url)
        began = time.perf_counter()
        try:
            account_id, credentials, row_count = await build(db, settings, args)
        finally:
            await db.dispose()
        print(
            f"{backend}: built {args.records:,} records' figures over {args.days} days as {row_count:,} daily_figures "
            f"rows ({args.labels} labels, {args.feature_sets} feature sets, {args.numbers} numbers x "
            f"{args.labels_per_number} labels) in {time.perf_counter() - began:.1f} s"
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            return await measure(app, account_id, credentials, args, database if backend == "postgres" else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if backend == "postgres":
            admin = await asyncpg.connect(args.postgres_admin)
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="postgres")
    parser.add_argument("--records", type=int, default=10_000_000, help="call records the figures count")
    parser.add_argument("--days", type=int, default=90, help="days of figures, and the range asked for")
    parser.add_argument("--labels", type=int, default=20)
    parser.add_argument("--feature-sets", type=int, default=30)
    parser.add_argument("--numbers", type=int, default=200, help="business numbers (each in one feature set)")
    parser.add_argument("--labels-per-number", type=int, default=4, help="labels each number calls under, daily")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per group_by and format")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first")
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432")
    parser.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    within = True
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        ok = asyncio.run(run_backend(backend, args))
        print(f"{backend}: every p99 under {CEILING_MS:.0f} ms: {'yes' if ok else 'NO'}")
        within &= ok
    raise SystemExit(0 if within else 1)


if __name__ == "__main__":
    main()
