"""Engines and sessions.

SQLite (the embedded default) runs in WAL mode with one writer connection per process and
``BEGIN IMMEDIATE`` for writes: SQLite allows one writer at a time anyway, and taking the write lock
up front avoids the "database is locked" errors a deferred transaction gets when it upgrades from
read to write. Reads use a separate pool and never wait for writers. On PostgreSQL both roles share
one engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver so SQLAlchemy's "begin" event below decides how transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives process crashes (only an OS crash/power loss can lose the last commits).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _make_sqlite_engine(url: str, *, immediate: bool, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=60,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)

    begin_sql = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin_sql)

    return engine


class Database:
    """The process's database handle: a read session factory and a write-transaction factory."""

    def __init__(self, url: str, *, pool_size: int = 10, null_pool: bool = False):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        if self.is_sqlite:
            self.engine = _make_sqlite_engine(url, immediate=False, pool_size=pool_size)
            self.write_engine = _make_sqlite_engine(url, immediate=True, pool_size=1)
        else:
            # No pool_pre_ping: it costs a round trip on every checkout (it doubled the lookup's cost).
            # Connections are recycled instead, and a dropped one fails one request, not all of them.
            kwargs: dict[str, Any] = {"pool_recycle": 1800}
            if null_pool:
                kwargs["poolclass"] = NullPool
            else:
                kwargs.update(pool_size=pool_size, max_overflow=pool_size)
            self.engine = create_async_engine(url, **kwargs)
            self.write_engine = self.engine
        # SQLite: this process's write transactions, of every path (sessions here, db.sqlitewriter), take turns
        # here rather than in SQLite's busy handler, which sleeps in steps of milliseconds while the lock is held.
        self.write_lock = asyncio.Lock()
        self._read = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads. Do not write through it on SQLite; use ``transaction()``."""
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        if self.is_sqlite:
            async with self.write_lock, self._write() as session, session.begin():
                yield session
            return
        async with self._write() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        from callerid.db.pointread import dispose_point_reads  # these import this module
        from callerid.db.sqlitewriter import close_sqlite_writer

        dispose_point_reads(self)
        close_sqlite_writer(self)
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
