"""Shared fixtures. Every test that touches the database runs on SQLite and on PostgreSQL.

PostgreSQL and Redis are expected on 127.0.0.1 (override with CALLERID_TEST_PG_URL /
CALLERID_TEST_REDIS_URL); where they are not reachable their tests are skipped with the reason.
Each test session gets its own PostgreSQL database, migrated once; tables are emptied between tests.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, text

from callerid import clock
from callerid.accounts import service as accounts
from callerid.app import create_app
from callerid.config import Settings
from callerid.db import Base, Database
from callerid.db.migrate import upgrade
from callerid.db.models import import_all_models
from callerid.jobs.runner import JobRunner
from callerid.runtime import Runtime

PG_ADMIN_URL = os.environ.get("CALLERID_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CALLERID_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _pg_reachable() -> str | None:
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc!r}"
    return None


def _redis_reachable() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"Redis not reachable at {REDIS_URL}: {exc!r}"
    return None


PG_SKIP_REASON = _pg_reachable()
REDIS_SKIP_REASON = _redis_reachable()
requires_postgres = pytest.mark.skipif(PG_SKIP_REASON is not None, reason=PG_SKIP_REASON or "")
requires_redis = pytest.mark.skipif(REDIS_SKIP_REASON is not None, reason=REDIS_SKIP_REASON or "")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Locally a missing PostgreSQL, Redis or Chromium skips its tests with the reason; under ``CI=true`` the run
    fails at once instead, so that CI can never pass with a quarter of the suite silently skipped."""
    if not in_ci():
        return
    from tests.e2e.serving import SKIP_REASON as BROWSER_SKIP_REASON

    missing = [reason for reason in (PG_SKIP_REASON, REDIS_SKIP_REASON, BROWSER_SKIP_REASON) if reason]
    if missing:
        lines = "\n".join(f"  - {reason}" for reason in missing)
        pytest.exit(f"CI=true, but these tests cannot run (CI must run every test):\n{lines}", returncode=3)


# --- databases -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "callerid-test.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    return url


@contextmanager
def fresh_postgresql_database(prefix: str = "callerid_test", *, migrate: bool = False) -> Iterator[str]:
    """A new, uniquely named PostgreSQL database (skipping the test if PostgreSQL is not reachable),
    dropped afterwards. Without ``migrate`` it is empty, for tests where the code must create the schema."""
    if PG_SKIP_REASON is not None:
        pytest.skip(PG_SKIP_REASON)
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    url = f"{base}/{name}"
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    with fresh_postgresql_database(migrate=True) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


# Reference data the migrations seed (the default label catalogue): kept between tests like a real deployment
# keeps it; tests that change it restore it.
SEEDED_TABLES = frozenset({"label_categories", "label_sub_categories"})


async def empty_all_tables(db: Database) -> None:
    import_all_models()
    async with db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in SEEDED_TABLES:
                await session.execute(delete(table))
        if db.is_postgres:
            await session.execute(text("SELECT 1"))


# --- settings, app, client ----------------------------------------------------------------------------


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "redis_url": None,
        "run_jobs_in_process": False,
        "public_base_url": "http://testserver",
        "log_json": True,
        "job_poll_seconds": 0.05,
        # Most tests register phones directly; the proof of ownership (otp, trusted_backend) has its own tests
        # (tests/delivery/test_device_verification.py), which set the verifier they test.
        "device_verifier": "none",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or with indirect parametrisation) to change settings."""
    return {}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(database_url, tmp_path / "data", **settings_overrides)


@pytest.fixture(autouse=True)
def _real_clock() -> Iterator[None]:
    clock.reset()
    yield
    clock.reset()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        await empty_all_tables(application.state.runtime.db)
        yield application


@pytest.fixture
def runtime(app: Any) -> Runtime:
    opened: Runtime = app.state.runtime
    return opened


@pytest.fixture
def db(runtime: Runtime) -> Database:
    return runtime.db


@pytest.fixture
async def runtime_with(db: Database) -> AsyncIterator[Callable[[Settings], Runtime]]:
    """Runtimes over the test's database with other settings (as a process configured otherwise has), none
    started; closed at the end of the test."""
    made: list[Runtime] = []

    def build(settings: Settings) -> Runtime:
        made.append(Runtime.build(settings, db))
        return made[-1]

    yield build
    for runtime in made:
        await runtime.close()


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def runner(runtime: Runtime) -> JobRunner:
    """A job runner the test drives by hand (``await runner.run_until_idle()``)."""
    return JobRunner(runtime)


# --- accounts and tokens ------------------------------------------------------------------------------


@dataclass
class Tenant:
    account_id: uuid.UUID
    admin_email: str
    key_id: uuid.UUID
    api_key: str

    @property
    def credentials(self) -> dict[str, str]:
        return {"key_id": str(self.key_id), "api_key": self.api_key}


async def create_tenant(
    db: Database, settings: Settings, *, name: str = "Acme Flowers", access: dict[str, str] | None = None
) -> Tenant:
    async with db.transaction() as session:
        created = await accounts.create_account(session, name=name, admin_email=f"admin@{uuid.uuid4().hex[:8]}.test")
        issued = await accounts.create_api_key(
            session, settings, account_id=created.account.id, name="test key", access=access
        )
    return Tenant(created.account.id, created.admin_email, issued.key.key_id, issued.secret)


async def mint(client: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await client.post(
        f"/clients/{tenant.account_id}/token", json=tenant.credentials, headers={"X-Public-Access": "allow"}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


@pytest.fixture
async def tenant(db: Database, settings: Settings) -> Tenant:
    return await create_tenant(db, settings)


@pytest.fixture
async def token(client: httpx.AsyncClient, tenant: Tenant) -> str:
    return await mint(client, tenant)


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
