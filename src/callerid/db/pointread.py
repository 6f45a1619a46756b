"""Point reads for the hot paths (token check, label and device look-ups, caller-ID lookup).

On SQLite the async driver (aiosqlite) runs every call in a helper thread: one small indexed SELECT through an
async session takes about 1.5 ms of CPU in thread hand-offs (BEGIN, cursor, execute, fetch, close, rollback,
each a round trip through the event loop), while the query itself takes a few tens of microseconds. So on
SQLite ``db.point_session()`` runs the statements synchronously on the event-loop thread, on one read-only
autocommit connection (stdlib sqlite3 through SQLAlchemy, so the same statements and column types): each
statement sees everything committed before it, exactly like a fresh read session. WAL readers do not wait
for the writer, so this does not block the loop on a write.

Only for a few small indexed queries per block: a long scan here would stall every other request. On
PostgreSQL it runs them on a pooled connection in autocommit (one round trip per statement, no BEGIN and
ROLLBACK around it); elsewhere (in-memory SQLite) it is an ordinary ``db.session()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.pool import StaticPool

from callerid.db.driverpool import DriverPool
from callerid.db.rawsql import RawResult, RawStatementCache
from callerid.db.sqlitewriter import SQLITE_BUSY_TIMEOUT_MS


class _SyncReadSession:
    """The part of AsyncSession that read-only service functions use: ``await execute(statement)``. Also its own
    async context manager (nothing to open or close), cheaper than a generator-based one on every request."""

    def __init__(self, reader: _SqliteReader):
        self._reader = reader

    async def __aenter__(self) -> _SyncReadSession:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def execute(self, statement: Any, params: Any = None) -> Result[Any] | RawResult:
        return self._reader.execute(statement, params)


class _SqliteReader:
    """One connection, kept open (autocommit: it holds no transaction and no snapshot between statements).

    Plain SELECTs run on the DBAPI cursor with their compiled form cached (``db.rawsql``); anything else goes
    through SQLAlchemy. Results are fetched whole: an unread result would keep its statement, and so a WAL
    snapshot, open.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._connection: Connection | None = None
        self._raw = RawStatementCache(engine.dialect)
        self._session = _SyncReadSession(self)

    def execute(self, statement: Any, params: Any) -> Result[Any] | RawResult:
        if self._connection is None:
            self._connection = self.engine.connect()
        try:
            raw = self._raw.get(statement)
            if raw is not None and raw.row_type is not None:
                driver: Any = self._connection.connection.driver_connection
                cursor = driver.execute(raw.sql, raw.parameters(params))
                try:
                    return RawResult(raw.rows(cursor.fetchall()))
                finally:
                    cursor.close()
            return self._connection.execute(statement, params).freeze()()
        except Exception:
            self.close()  # the next statement starts from a fresh connection
            raise

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        return cast(AbstractAsyncContextManager[AsyncSession], self._session)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        self.engine.dispose()


def _read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def sqlite_point_reader(path: str) -> _SqliteReader:
    """The point reader of a SQLite database file."""
    engine = create_engine(
        f"sqlite:///{path}",
        poolclass=StaticPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine, "connect", _read_only)
    return _SqliteReader(engine)


class _AutocommitReadSession:
    """PostgreSQL: statements on a pooled connection in autocommit, so a point read is one round trip
    (an ORM session adds BEGIN before and ROLLBACK after it). Plain SELECTs go to asyncpg directly with their
    compiled form cached (``db.rawsql``): SQLAlchemy's execution path cost more CPU than the round trip; the
    connection, its type codecs and asyncpg's prepared-statement cache are SQLAlchemy's own."""

    def __init__(self, connection: AsyncConnection, raw: RawStatementCache):
        self._connection = connection
        self._raw = raw
        self._driver: Any = None

    async def execute(self, statement: Any, params: Any = None) -> Result[Any] | RawResult:
        raw = self._raw.get(statement)
        if raw is None or raw.row_type is None:
            result = await self._connection.execute(statement, params)
            return result.freeze()()
        if self._driver is None:
            self._driver = (await self._connection.get_raw_connection()).driver_connection
        records = await self._driver.fetch(raw.sql, *raw.parameters(params))
        return RawResult(raw.rows([tuple(record) for record in records]))


class _DriverReadSession:
    """PostgreSQL: statements on one of asyncpg's pooled connections (``db.driverpool``), each its own implicit
    transaction, so a point read is one round trip (an ORM session adds BEGIN before and ROLLBACK after it). Plain
    SELECTs run with their compiled form cached (``db.rawsql``); anything else goes through SQLAlchemy."""

    __slots__ = ("_driver", "_engine", "_raw")

    def __init__(self, driver: Any, raw: RawStatementCache, engine: AsyncEngine):
        self._driver = driver
        self._raw = raw
        self._engine = engine

    async def execute(self, statement: Any, params: Any = None) -> Result[Any] | RawResult:
        raw = self._raw.get(statement)
        if raw is None or raw.row_type is None:
            async with self._engine.connect() as connection:
                result = await connection.execute(statement, params)
                return result.freeze()()
        records = await self._driver.fetch(raw.sql, *raw.parameters(params))
        return RawResult(raw.rows([tuple(record) for record in records]))


class PostgresPointReader:
    """PostgreSQL: point reads on asyncpg's pool (``db.driverpool``), or, where there is none (short-lived CLI
    processes), on SQLAlchemy's pooled connections in autocommit."""

    def __init__(self, engine: AsyncEngine, driver_pool: DriverPool | None):
        # Same pool as the engine's; the option only changes how checked-out connections run statements.
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.raw = RawStatementCache(engine.dialect)
        self._driver_pool = driver_pool

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        if self._driver_pool is not None:
            async with self._driver_pool.connection() as driver:
                yield cast(AsyncSession, _DriverReadSession(driver, self.raw, self.engine))
            return
        async with self.engine.connect() as connection:
            yield cast(AsyncSession, _AutocommitReadSession(connection, self.raw))

    def close(self) -> None:
        return None


class SessionPointReader:
    """Elsewhere (an in-memory SQLite database): ordinary read sessions."""

    def __init__(self, sessions: Callable[[], AbstractAsyncContextManager[AsyncSession]]):
        self._sessions = sessions

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        return self._sessions()

    def close(self) -> None:
        return None


PointReader = _SqliteReader | PostgresPointReader | SessionPointReader
