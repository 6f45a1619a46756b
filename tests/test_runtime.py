"""``Runtime.open``/``close``: the one way ``serve`` and ``worker`` make, start and stop the objects of a process.

The order is watched by wrapping the real methods (each still runs); what they do is checked on the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from callerid.accounts.ratelimit import RateLimiter
from callerid.config import Settings
from callerid.db import Database
from callerid.delivery.hub import LocalHub
from callerid.identity.models import SigningKey
from callerid.identity.signer import Signer
from callerid.jobs import JobContext, enqueue, handler
from callerid.jobs.runner import JobRunner
from callerid.runtime import Runtime
from callerid.webhooks.delivery import Deliverer
from tests.conftest import empty_all_tables

PROBE_JOB = "test.runtime_probe"
WAIT = 10.0
probed: list[Runtime] = []  # the runtime each probe job was handed


@handler(PROBE_JOB)
async def probe(ctx: JobContext, _payload: dict[str, Any]) -> None:
    probed.append(ctx.runtime)


WATCHED: dict[str, tuple[type, str]] = {
    "hub.start": (LocalHub, "start"),
    "signer.prepare": (Signer, "prepare"),
    "runner.start": (JobRunner, "start"),
    "runner.stop": (JobRunner, "stop"),
    "hub.stop": (LocalHub, "stop"),
    "signer.stop": (Signer, "stop"),
    "deliverer.close": (Deliverer, "aclose"),
    "limiter.close": (RateLimiter, "close"),
    "db.dispose": (Database, "dispose"),
}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The watched methods in the order they were called (each still does its work)."""
    made: list[str] = []

    def watch(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        async def watched(*args: Any, **kwargs: Any) -> Any:
            made.append(name)
            return await real(*args, **kwargs)

        return watched

    for name, (cls, method) in WATCHED.items():
        monkeypatch.setattr(cls, method, watch(name, getattr(cls, method)))
    yield made


@pytest.fixture
async def empty_database(settings: Settings) -> Settings:
    """No signing key and no job yet: whatever the runtime makes is its own."""
    db = Database(settings.database_url)
    try:
        await empty_all_tables(db)
    finally:
        await db.dispose()
    return settings


async def active_keys(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).where(SigningKey.retired_at.is_(None))) or 0)


async def test_a_worker_runtime_starts_the_hub_and_signer_before_jobs_and_stops_in_reverse(
    empty_database: Settings, calls: list[str]
) -> None:
    probed.clear()
    runtime = await Runtime.open(empty_database, run_jobs=True)
    try:
        assert calls == ["hub.start", "signer.prepare", "runner.start"]
        assert runtime.job_runner is not None
        assert await active_keys(runtime.db) == 1  # the signer was prepared: the first signing key exists
        # Job handlers get this very runtime.
        async with runtime.db.transaction() as session:
            await enqueue(session, PROBE_JOB, {})
        async with asyncio.timeout(WAIT):
            while not probed:  # noqa: ASYNC110 - the runner works in the background: wait for its job
                await asyncio.sleep(0.02)
        assert probed == [runtime]
    finally:
        await runtime.close()
    assert calls[3:] == ["runner.stop", "hub.stop", "signer.stop", "deliverer.close", "limiter.close", "db.dispose"]
    assert runtime.job_runner is None


async def test_a_serving_runtime_without_jobs_prepares_the_signer_too(
    empty_database: Settings, calls: list[str]
) -> None:
    runtime = await Runtime.open(empty_database, run_jobs=False)
    try:
        assert calls == ["hub.start", "signer.prepare"]
        assert runtime.job_runner is None
        assert await active_keys(runtime.db) == 1
    finally:
        await runtime.close()
    assert calls[2:] == ["hub.stop", "signer.stop", "deliverer.close", "limiter.close", "db.dispose"]


async def test_a_failed_open_releases_what_it_had_started(
    settings: Settings, calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_database(_signer: Signer) -> str:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(Signer, "prepare", no_database)
    with pytest.raises(ConnectionError, match="database unreachable"):
        await Runtime.open(settings, run_jobs=True)
    assert calls == ["hub.start", "hub.stop", "signer.stop", "deliverer.close", "limiter.close", "db.dispose"]


async def test_a_built_runtime_starts_nothing_and_leaves_the_database_to_its_owner(
    db: Database, settings: Settings, calls: list[str]
) -> None:
    """What the CLI and benches use: the same objects over their own database, nothing started."""
    runtime = Runtime.build(settings, db)
    assert runtime.db is db and runtime.job_runner is None
    assert runtime.webhook_store.db is db
    await runtime.close()
    assert calls == ["hub.stop", "signer.stop", "deliverer.close", "limiter.close"]  # the database stays open
    async with db.session() as session:
        assert await session.scalar(select(1)) == 1
