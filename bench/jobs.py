"""Job runner overhead: N no-op jobs queued, one in-process runner started, time until the queue is empty.

Measures what the runner itself costs per job (claim, lease, heartbeat, outcome write), without any
domain's handler work: jobs/s and CPU ms per job of this process (the runner plus its SQLite thread).

    .venv/bin/python bench/jobs.py                          # 10,000 jobs, SQLite, default settings
    .venv/bin/python bench/jobs.py --concurrency 16 --database-url postgresql+asyncpg://.../db
"""

# ruff: noqa: E402  (sys.path is fixed before the imports)
from __future__ import annotations

import sys
from pathlib import Path

# Running this file puts bench/ first on sys.path, where other benchmarks' names (numbers.py) would
# shadow standard-library modules; drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import json
import os
import tempfile
import time
from typing import Any

KIND = "bench.noop"
ENQUEUE_CHUNK = 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import func, select

    from callerid.config import Settings
    from callerid.db import Database
    from callerid.db.migrate import upgrade_async
    from callerid.jobs import JobContext, enqueue_many
    from callerid.jobs.models import Job
    from callerid.jobs.registry import Registry
    from callerid.jobs.runner import JobRunner
    from callerid.runtime import Runtime

    folder = Path(tempfile.mkdtemp(prefix="callerid-bench-jobs-"))
    url = args.database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
    overrides: dict[str, Any] = {"database_url": url, "data_dir": folder}
    if args.concurrency:
        overrides["job_concurrency"] = args.concurrency
    settings = Settings(**overrides)
    await upgrade_async(url)
    db = Database(url)
    registry = Registry()

    @registry.handler(KIND)
    async def noop(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # one suspension, like any handler that does I/O

    async def left() -> int:
        async with db.session() as session:
            return int(await session.scalar(select(func.count()).select_from(Job).where(Job.kind == KIND)) or 0)

    try:
        for start in range(0, args.jobs, ENQUEUE_CHUNK):
            async with db.transaction() as session:
                count = min(ENQUEUE_CHUNK, args.jobs - start)
                await enqueue_many(session, KIND, [{"n": n} for n in range(start, start + count)])
        runner = JobRunner(Runtime.build(settings, db), registry=registry)
        began, cpu_began = time.perf_counter(), time.process_time()
        await runner.start()
        while await left() > 0:  # noqa: ASYNC110 - done means the rows are deleted: poll the table
            await asyncio.sleep(0.1)
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu_began
        await runner.stop()
    finally:
        await db.dispose()
    return {
        "database": url.split(":", 1)[0],
        "job_concurrency": settings.job_concurrency,
        "jobs": args.jobs,
        "seconds": round(seconds, 2),
        "jobs_per_second": round(args.jobs / seconds),
        "cpu_ms_per_job": round(cpu / args.jobs * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=0, help="0: the setting's default")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
