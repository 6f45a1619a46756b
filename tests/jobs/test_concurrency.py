"""Several runners on one queue: exactly once when nothing crashes, at least once when a runner is killed.

Runners use separate ``Database`` objects (their own connections) and separate OS processes
(tests/jobs/worker_process.py), on PostgreSQL (SKIP LOCKED) and on SQLite (file lock). The handler inserts
``(n, owner, attempt)`` into a table the test creates, so duplicates and losses are visible.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import func, select, text

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs import enqueue_many
from callerid.jobs.models import RUNNING, Job
from callerid.jobs.registry import Registry
from callerid.jobs.runner import JobRunner
from callerid.runtime import Runtime
from tests.jobs.worker_process import KIND, queue_length, record_handler

REPO_ROOT = Path(__file__).resolve().parents[2]
ITEMS = 300
CRASH_ITEMS = 100  # the crash case is about the leased items, not volume
WAIT = 60.0


@pytest.fixture
async def record_table(db: Database) -> AsyncIterator[str]:
    name = f"jobs_test_done_{uuid.uuid4().hex[:10]}"
    async with db.transaction() as session:
        await session.execute(
            text(f"CREATE TABLE {name} (n INTEGER NOT NULL, owner VARCHAR(100) NOT NULL, attempt INTEGER NOT NULL)")
        )
    yield name
    async with db.transaction() as session:
        await session.execute(text(f"DROP TABLE {name}"))


async def recorded(db: Database, table: str) -> list[tuple[int, str, int]]:
    async with db.session() as session:
        rows = await session.execute(text(f"SELECT n, owner, attempt FROM {table}"))
        return [(r.n, r.owner, r.attempt) for r in rows]


async def fill_queue(db: Database, count: int) -> None:
    async with db.transaction() as session:
        await enqueue_many(session, KIND, [{"n": n} for n in range(count)])


async def wait_for_empty_queue(db: Database) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while await queue_length(db) > 0:
        assert loop.time() < deadline, "queue did not drain"
        await asyncio.sleep(0.05)


def assert_exactly_once(rows: list[tuple[int, str, int]], owners: set[str]) -> None:
    counts = Counter(n for n, _, _ in rows)
    assert sorted(counts) == list(range(ITEMS)), "items lost"
    assert [n for n, c in counts.items() if c != 1] == [], "items processed more than once"
    assert {attempt for _, _, attempt in rows} == {1}
    per_owner = Counter(owner for _, owner, _ in rows)
    assert set(per_owner) == owners, f"not every runner did work: {per_owner}"


async def test_two_runners_with_separate_connections_process_each_item_exactly_once(
    db: Database, settings: Settings, record_table: str
) -> None:
    await fill_queue(db, ITEMS)
    settings = settings.model_copy(update={"job_concurrency": 4})
    databases = [Database(settings.database_url) for _ in range(2)]
    runners = []
    for i, database in enumerate(databases):
        registry = Registry()
        registry.handler(KIND)(record_handler(record_table, f"runner-{i}", None))
        runners.append(JobRunner(Runtime.build(settings, database), registry=registry, owner=f"runner-{i}"))
    try:
        await asyncio.gather(*(runner.start() for runner in runners))
        await wait_for_empty_queue(db)
    finally:
        await asyncio.gather(*(runner.stop() for runner in runners))
        await asyncio.gather(*(database.dispose() for database in databases))
    assert_exactly_once(await recorded(db, record_table), {"runner-0", "runner-1"})


# --- separate OS processes ------------------------------------------------------------------------------


class WorkerProcess:
    """tests/jobs/worker_process.py running as a child process."""

    def __init__(self, process: asyncio.subprocess.Process, log: IO[bytes]):
        self.process = process
        self.log = log

    @classmethod
    async def spawn(cls, url: str, table: str, owner: str, log_dir: Path, *extra: str) -> WorkerProcess:
        log = (log_dir / f"{owner}.stderr").open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.jobs.worker_process",
            "--url",
            url,
            "--table",
            table,
            "--owner",
            owner,
            *extra,
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env={**os.environ, "CALLERID_LOG_JSON": "true"},
        )
        return cls(process, log)

    async def expect(self, prefix: str) -> str:
        """Read stdout until a line starts with ``prefix`` (other lines are logs)."""
        assert self.process.stdout is not None

        async def read() -> str:
            while True:
                line = (await self.process.stdout.readline()).decode()  # type: ignore[union-attr]
                if not line:
                    raise AssertionError(f"worker exited before printing {prefix!r}; see {self.log.name}")
                if line.startswith(prefix):
                    return line.strip()

        return await asyncio.wait_for(read(), WAIT)

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")

    async def finish(self) -> int:
        return await asyncio.wait_for(self.process.wait(), WAIT)

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self.log.close()


@pytest.fixture
async def spawn(database_url: str, record_table: str, tmp_path: Path) -> AsyncIterator[Any]:
    workers: list[WorkerProcess] = []

    async def start(owner: str, *extra: str) -> WorkerProcess:
        worker = await WorkerProcess.spawn(database_url, record_table, owner, tmp_path, *extra)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        await worker.close()


@pytest.mark.slow
async def test_two_runner_processes_process_each_item_exactly_once(db: Database, record_table: str, spawn: Any) -> None:
    await fill_queue(db, ITEMS)
    workers = [await spawn("process-a"), await spawn("process-b")]
    for worker in workers:
        await worker.expect("ready")
    for worker in workers:
        worker.go()
    for worker in workers:
        await worker.expect("done")
        assert await worker.finish() == 0
    assert_exactly_once(await recorded(db, record_table), {"process-a", "process-b"})


@pytest.mark.slow
async def test_killed_runner_loses_nothing(db: Database, settings: Settings, record_table: str, spawn: Any) -> None:
    blocker = 7
    lease = 30.0  # long enough not to run out in real time before the test moves the clock past it
    await fill_queue(db, CRASH_ITEMS)
    worker = await spawn("doomed", "--block-n", str(blocker), "--lease", str(lease))
    await worker.expect("ready")
    worker.go()
    await worker.expect(f"blocked {blocker}")
    worker.process.send_signal(signal.SIGKILL)
    assert await worker.finish() == -signal.SIGKILL

    async with db.session() as session:
        leased = (await session.scalars(select(Job).where(Job.status == RUNNING))).all()
    assert leased, "the killed runner held no lease"
    assert {job.lease_owner for job in leased} == {"doomed"}
    assert blocker in {job.payload["n"] for job in leased}

    survivor_db = Database(settings.database_url)
    registry = Registry()
    registry.handler(KIND)(record_handler(record_table, "survivor", None))
    survivor = JobRunner(Runtime.build(settings, survivor_db), registry=registry, owner="survivor")
    try:
        await survivor.run_until_idle()
        async with db.session() as session:  # the dead runner's jobs wait for their lease to expire
            still_leased = (await session.scalars(select(Job).where(Job.status == RUNNING))).all()
        assert {job.id for job in still_leased} == {job.id for job in leased}

        clock.advance(timedelta(seconds=lease + 1))
        assert await survivor.run_until_idle() == len(leased)
    finally:
        await survivor_db.dispose()

    async with db.session() as session:
        assert (await session.execute(select(func.count()).select_from(Job))).scalar_one() == 0
    rows = await recorded(db, table=record_table)
    counts = Counter(n for n, _, _ in rows)
    assert sorted(counts) == list(range(CRASH_ITEMS)), "items lost"
    assert ("doomed", 1) in {(owner, attempt) for n, owner, attempt in rows if n == blocker}
    assert ("survivor", 2) in {(owner, attempt) for n, owner, attempt in rows if n == blocker}
