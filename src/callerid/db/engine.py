"""Engines and sessions.

SQLite (the embedded default) runs in WAL mode with one writer connection per process and
``BEGIN IMMEDIATE`` for writes: SQLite allows one writer at a time anyway, and taking the write lock
up front avoids the "database is locked" errors a deferred transaction gets when it upgrades from
read to write. Reads use a separate pool and never wait for writers. On PostgreSQL both roles share
one engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from callerid.db.driverpool import DriverPool
from callerid.db.keyedreads import KeyedQuery, KeyedReads
from callerid.db.pointread import PointReader, PostgresPointReader, SessionPointReader, sqlite_point_reader
from callerid.db.sqlitewriter import SQLITE_BUSY_TIMEOUT_MS, WAL_RESTART_BYTES, SqliteWriter
from callerid.db.write import (
    JOBS_CHANNEL,
    Step,
    Work,
    WriteTx,
    lock_session,
    wake_local_runners,
)
from callerid.db.writers import PostgresWrites, SessionWrites, SqliteWrites, Writes

T = TypeVar("T")
log = structlog.get_logger("callerid.db")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver so SQLAlchemy's "begin" event below decides how transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives process crashes (only an OS crash/power loss can lose the last commits).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # A connection that starts the WAL over trims it to this size (db.sqlitewriter keeps it bounded).
    cursor.execute(f"PRAGMA journal_size_limit={WAL_RESTART_BYTES}")
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
    """The process's database handle, and the only code that knows which database it is.

    - ``session()``: read sessions (SQLAlchemy ORM); ``transaction()``: a write transaction in a session.
    - ``point_session()``: a few small indexed reads on the hot paths (``reader``, see ``db.pointread``);
      ``read_keyed(...)``: rows by a list of keys, concurrent reads sharing a round trip (``db.keyedreads``).
    - ``write(steps)`` / ``transact(work)``: write transactions written once for both databases (``writer``,
      see ``db.write``); ``lock(session, key)`` serialises transactions on a key.
    - ``listen_for_jobs(callback)``: other processes' enqueues (PostgreSQL NOTIFY).
    """

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
        # SQLite: this process's write transactions, of every path (sessions here, the writer), take turns here
        # rather than in SQLite's busy handler, which sleeps in steps of milliseconds while the lock is held.
        self.write_lock = asyncio.Lock()
        self._read = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False, autoflush=False)
        # Whether write transactions of this process can run side by side (PostgreSQL), or take turns (SQLite).
        self.concurrent_writes = self.is_postgres
        path = _sqlite_file(url)
        driver_pool: DriverPool | None = None
        self.reader: PointReader
        self.writer: Writes
        if path is not None:
            self.reader = sqlite_point_reader(path)
            self.writer = SqliteWrites(SqliteWriter(path, SQLITE_BUSY_TIMEOUT_MS, self.write_lock))
        elif self.is_postgres:
            # Short-lived processes (null_pool: the CLI) keep no pool of their own either.
            driver_pool = None if null_pool else DriverPool(url, pool_size)
            self.reader = PostgresPointReader(self.engine, driver_pool)
            self.writer = PostgresWrites(self.reader.engine, self.reader.raw, driver_pool)
        else:  # an in-memory SQLite database (tests): every connection of the pool is the same database
            self.reader = SessionPointReader(self.session)
            self.writer = SessionWrites(self.transaction)
        self.keyed_reads = KeyedReads(self.point_session, coalesce=driver_pool is not None)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads. Do not write through it on SQLite; use ``transaction()``."""
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block ends, rolled back if it raises. Jobs enqueued in it wake
        this process's runners once it commits."""
        if self.is_sqlite:
            async with self.write_lock, self._write() as session, session.begin():
                yield session
            return
        async with self._write() as session, session.begin():
            yield session

    def point_session(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """A read session for a few small indexed queries (see ``db.pointread``)."""
        return self.reader.session()

    async def read_keyed(self, query: KeyedQuery, keys: Sequence[Hashable]) -> list[Any]:
        """The rows of ``query`` for ``keys``. Reads of one query that arrive together share a round trip where a
        read costs one (see ``db.keyedreads``)."""
        return await self.keyed_reads.read(query, keys)

    async def write(self, steps: Sequence[Step], *, together: bool = False) -> list[Any]:
        """Run ``steps`` in one transaction; per step its rows (``returning``) or the count of rows it changed.

        ``together``: the steps only insert new rows, and a step reads an earlier step's table only for rows that
        step inserted (a child finding its new parent by id). Then, where the database allows, the write is sent as
        one statement (PostgreSQL: one round trip instead of BEGIN, a statement per step and COMMIT)."""
        return await self.writer.write(steps, together=together)

    async def transact(self, work: Work[T], *, bulk: bool = False) -> T:
        """Run ``await work(tx)`` in one write transaction and return its result. ``bulk``: a long write that is not
        urgent (a retention purge), kept off the event loop where the database allows it."""
        return await self.writer.transact(work, bulk=bulk)

    async def lock(self, session: AsyncSession, key: str) -> None:
        """Within ``session``'s write transaction, wait until no other transaction holds ``key`` (until commit).

        PostgreSQL: a transaction-level advisory lock. SQLite: nothing to do, it has one writer at a time.
        """
        await lock_session(session, key)

    async def listen_for_jobs(self, callback: Callable[[], None]) -> Callable[[], Any] | None:
        """Call ``callback`` when another process enqueues work (PostgreSQL NOTIFY); returns an async closer, or
        None where there is nothing to listen to (SQLite: runners poll)."""
        if not self.is_postgres:
            return None

        def on_notify(*_args: Any) -> None:
            callback()

        connection: AsyncConnection = await self.engine.connect()
        try:
            driver: Any = (await connection.get_raw_connection()).driver_connection
            await driver.add_listener(JOBS_CHANNEL, on_notify)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise

        async def close() -> None:
            try:
                await driver.remove_listener(JOBS_CHANNEL, on_notify)
            except Exception:
                log.warning("job_unlisten_failed", exc_info=True)
            finally:
                with contextlib.suppress(Exception):
                    await connection.close()

        return close

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.keyed_reads.idle()
        self.reader.close()
        await self.writer.close()
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite database URL; None for anything else (PostgreSQL, an in-memory database)."""
    if not url.startswith("sqlite"):
        return None
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


__all__ = ["Database", "Step", "WriteTx", "wake_local_runners"]
