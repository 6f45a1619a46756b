"""Point reads for the hot paths (token check, label and device look-ups, caller-ID lookup).

On SQLite the async driver (aiosqlite) runs every call in a helper thread: one small indexed SELECT through an
async session takes about 1.5 ms of CPU in thread hand-offs (BEGIN, cursor, execute, fetch, close, rollback,
each a round trip through the event loop), while the query itself takes a few tens of microseconds. So on
SQLite ``point_session(db)`` runs the statements synchronously on the event-loop thread, on one read-only
autocommit connection (stdlib sqlite3 through SQLAlchemy, so the same statements and column types): each
statement sees everything committed before it, exactly like a fresh read session. WAL readers do not wait
for the writer, so this does not block the loop on a write.

Only for a few small indexed queries per block: a long scan here would stall every other request. Elsewhere
(PostgreSQL, in-memory SQLite) it is an ordinary ``db.session()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Result, make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import StaticPool

from callerid.db.engine import SQLITE_BUSY_TIMEOUT_MS, Database

_ENGINE_ATTRIBUTE = "_point_read_engine"


class _SyncReadSession:
    """The part of AsyncSession that read-only service functions use: ``await execute(statement)``."""

    def __init__(self, engine: Engine):
        self._engine = engine

    async def execute(self, statement: Any, params: Any = None) -> Result[Any]:
        with self._engine.connect() as connection:
            # Buffered, so the rows outlive the connection (the caller may await before reading them).
            return connection.execute(statement, params).freeze()()


def _read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _engine_for(db: Database) -> Engine | None:
    if not db.is_sqlite:
        return None
    engine: Engine | None = db.__dict__.get(_ENGINE_ATTRIBUTE)
    if engine is None:
        path = make_url(db.url).database
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        engine = create_engine(
            f"sqlite:///{path}",
            poolclass=StaticPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _read_only)
        db.__dict__[_ENGINE_ATTRIBUTE] = engine
    return engine


@asynccontextmanager
async def point_session(db: Database) -> AsyncIterator[AsyncSession]:
    """A read session for a few small indexed queries (see the module docstring)."""
    engine = _engine_for(db)
    if engine is None:
        async with db.session() as session:
            yield session
        return
    yield cast(AsyncSession, _SyncReadSession(engine))


def dispose_point_reads(db: Database) -> None:
    engine: Engine | None = db.__dict__.pop(_ENGINE_ATTRIBUTE, None)
    if engine is not None:
        engine.dispose()
