"""A job runner in its own OS process, for the multi-process tests (``python -m tests.jobs.worker_process``).

It handles ``test.record`` jobs by inserting ``(n, owner, attempt)`` into the test's table. Protocol on
stdout (other lines are logs): ``ready`` once connected, then it waits for ``go`` on stdin; ``blocked <n>``
when the handler reached the item it was told to hang on; ``done`` when the queue of ``test.record`` jobs is
empty. The test SIGKILLs it to simulate a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from sqlalchemy import func, select, text

from callerid.config import Settings
from callerid.db import Database
from callerid.jobs import JobContext
from callerid.jobs.models import Job
from callerid.jobs.registry import Registry
from callerid.jobs.runner import JobRunner
from callerid.runtime import Runtime

KIND = "test.record"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def record_handler(table: str, owner: str, block_n: int | None) -> Any:
    async def record(ctx: JobContext, payload: dict[str, Any]) -> None:
        async with ctx.db.transaction() as session:
            await session.execute(
                text(f"INSERT INTO {table} (n, owner, attempt) VALUES (:n, :owner, :attempt)"),
                {"n": payload["n"], "owner": owner, "attempt": ctx.attempt},
            )
        if payload["n"] == block_n:
            say(f"blocked {block_n}")
            await asyncio.Event().wait()  # hang mid-item until killed

    return record


async def queue_length(db: Database) -> int:
    async with db.session() as session:
        return int((await session.execute(select(func.count()).select_from(Job).where(Job.kind == KIND))).scalar_one())


async def main(args: argparse.Namespace) -> None:
    settings = Settings(
        database_url=args.url,
        job_concurrency=args.concurrency,
        job_lease_seconds=args.lease,
        job_poll_seconds=0.05,
        run_jobs_in_process=False,
    )
    registry = Registry()
    registry.handler(KIND)(record_handler(args.table, args.owner, args.block_n))
    db = Database(args.url)
    runner = JobRunner(Runtime.build(settings, db), registry=registry, owner=args.owner)
    await db.ping()
    say("ready")
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await runner.start()
    while await queue_length(db) > 0:  # noqa: ASYNC110 - other processes drain it too: poll
        await asyncio.sleep(0.05)
    await runner.stop()
    await db.dispose()
    say("done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--owner", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--block-n", type=int, default=None)
    asyncio.run(main(parser.parse_args()))
