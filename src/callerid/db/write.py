"""Write transactions written once for both databases: ``Database.write(steps)`` and ``Database.transact(work)``.

A service describes a write as statements (SQLAlchemy Core, built once at module level) and either hands them over
as a list of ``Step``s or runs them from an ``async def work(tx)`` when later statements depend on earlier results.
The seam runs them where each database is fastest:

- SQLite file: on the event-loop thread's own connection (``db.sqlitewriter``), statements compiled once and run on
  the DBAPI cursor. ``work`` never really suspends there (every ``tx`` call completes at once), so the whole
  transaction runs in one go while this process's write lock is held.
- PostgreSQL: on a pooled connection's asyncpg driver directly, in one driver transaction; statements compiled once,
  prepared and cached by asyncpg; many rows of an INSERT as one statement taking an array per column
  (``db.rawsql``), of anything else by asyncpg's pipelined ``executemany``. A write of new rows marked ``together``
  (a group's row, texts and records) is sent as one statement, without BEGIN and COMMIT (``db.writers``).
- Anything else (an in-memory SQLite database in tests): an ordinary SQLAlchemy session transaction.

Enqueuing a job inside a write (``tx.wake_runners()``, done by ``jobs.service``) is all a caller does: the seam
sends PostgreSQL's NOTIFY inside the transaction and wakes this process's runners after the commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import event, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from callerid.db.rawsql import RawStatementCache, insert_keys
from callerid.db.sqlitewriter import PreparedInsert, WriteTransaction

T = TypeVar("T")

# PostgreSQL channel that enqueues NOTIFY (delivered at commit) so runners in other processes wake at once.
JOBS_CHANNEL = "callerid_jobs"
_ADVISORY_LOCK = "SELECT pg_advisory_xact_lock(hashtext($1))"
_NOTIFY_SQL = f"SELECT pg_notify('{JOBS_CHANNEL}', '')"


class WriteTx(Protocol):
    """One write transaction's statements, whichever database runs them."""

    async def execute(self, statement: Any, values: Mapping[str, Any] | None = None) -> int:
        """One statement (an INSERT's columns are the keys of ``values``); the number of rows it changed."""
        ...

    async def executemany(
        self, statement: Any, rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any] | None = None
    ) -> None:
        """An INSERT or UPDATE once per row (every row has the same keys; ``shared`` values are in every row)."""
        ...

    async def query(self, statement: Any, values: Mapping[str, Any] | None = None) -> list[Any]:
        """A SELECT, or a statement with RETURNING: its named rows."""
        ...

    async def lock(self, key: str) -> None:
        """Serialise the transactions that take the same ``key`` (see ``Database.lock``)."""
        ...

    async def wake_runners(self) -> None:
        """This transaction enqueued jobs: wake the job runners once it commits (here and in other processes)."""
        ...


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a ``Database.write``: with ``values`` (one row), or ``rows`` (many, plus ``shared`` values
    that every row has); ``returning`` for its rows (a SELECT or RETURNING), else the count of rows changed."""

    statement: Any
    values: Mapping[str, Any] | None = None
    rows: Sequence[Mapping[str, Any]] | None = None
    shared: Mapping[str, Any] | None = None
    returning: bool = False
    wakes_runners: bool = False
    # The number of rows the statement must change; any other count rolls the whole write back (``WriteConflict``):
    # a guard, e.g. "this request still holds its idempotency key", checked in the same transaction as the effect.
    expect: int | None = None


class WriteConflict(Exception):
    """A ``Step`` with ``expect`` changed another number of rows: the write was rolled back."""


class SqliteTx:
    """``WriteTx`` over ``db.sqlitewriter``'s synchronous transaction (nothing here suspends)."""

    __slots__ = ("_tx", "woke")

    def __init__(self, tx: WriteTransaction):
        self._tx = tx
        self.woke = False

    async def execute(self, statement: Any, values: Mapping[str, Any] | None = None) -> int:
        return self._tx.execute(statement, values)

    async def executemany(
        self, statement: Any, rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any] | None = None
    ) -> None:
        if shared:
            rows = [{**shared, **row} for row in rows]
        self._tx.executemany(statement, rows)

    async def run(self, prepared: PreparedInsert) -> None:
        self._tx.run(prepared)

    async def query(self, statement: Any, values: Mapping[str, Any] | None = None) -> list[Any]:
        return self._tx.query(statement, values)

    async def lock(self, key: str) -> None:
        return None  # SQLite has one writer: write transactions are serialised already

    async def wake_runners(self) -> None:
        self.woke = True  # SQLite: other processes' runners poll


class PostgresTx:
    """``WriteTx`` on an asyncpg connection inside its own transaction. A statement that cannot be compiled once
    (expanding parameters) goes through SQLAlchemy on the same connection (so in the same transaction) where there
    is one; on asyncpg's own pool, every statement of a write must be plain, as on SQLite's writer."""

    __slots__ = ("_connection", "_driver", "_raw", "woke")

    def __init__(self, connection: AsyncConnection | None, driver: Any, raw: RawStatementCache):
        self._connection = connection
        self._driver = driver
        self._raw = raw
        self.woke = False

    def _sqlalchemy(self, statement: Any) -> AsyncConnection:
        if self._connection is None:
            raise ValueError(f"not a plain statement (expanding or escaped parameters): {statement}")
        return self._connection

    async def execute(self, statement: Any, values: Mapping[str, Any] | None = None) -> int:
        keys = tuple(values) if values is not None and getattr(statement, "is_insert", False) else None
        raw = self._raw.get(statement, keys)
        if raw is None:
            result = await self._sqlalchemy(statement).execute(statement, values)
            return int(getattr(result, "rowcount", 0) or 0)
        status: str = await self._driver.execute(raw.sql, *raw.parameters(values))
        # asyncpg answers the command tag: "INSERT 0 3", "UPDATE 2", "DELETE 0", "SELECT 1".
        count = status.rpartition(" ")[2]
        return int(count) if count.isdigit() else 0

    async def executemany(
        self, statement: Any, rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any] | None = None
    ) -> None:
        if not rows:
            return
        insert = getattr(statement, "is_insert", False)
        raw = self._raw.get(statement, insert_keys(rows, shared) if insert else None)  # an INSERT's: the keys given
        if raw is None:
            await self._sqlalchemy(statement).execute(statement, [{**(shared or {}), **row} for row in rows])
            return
        # One statement: the plain one for one row (asyncpg's executemany costs more), column arrays for more.
        single = raw.for_rows(rows, shared) if insert else None
        if single is not None:
            await self._driver.execute(single[0], *single[1])
            return
        await self._driver.executemany(raw.sql, raw.parameters_many(rows, shared))

    async def query(self, statement: Any, values: Mapping[str, Any] | None = None) -> list[Any]:
        raw = self._raw.get(statement)
        if raw is None or raw.row_type is None:
            return list((await self._sqlalchemy(statement).execute(statement, values)).all())
        records = await self._driver.fetch(raw.sql, *raw.parameters(values))
        return raw.rows([tuple(record) for record in records])

    async def lock(self, key: str) -> None:
        await self._driver.execute(_ADVISORY_LOCK, key)

    async def wake_runners(self) -> None:
        if not self.woke:
            self.woke = True
            await self._driver.execute(_NOTIFY_SQL)  # delivered at commit


class SessionTx:
    """``WriteTx`` over a SQLAlchemy session transaction (the fallback, and for code already holding a session)."""

    __slots__ = ("_session",)

    def __init__(self, session: AsyncSession):
        self._session = session

    async def execute(self, statement: Any, values: Mapping[str, Any] | None = None) -> int:
        result = await self._session.execute(statement, values)
        return int(getattr(result, "rowcount", 0) or 0)

    async def executemany(
        self, statement: Any, rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any] | None = None
    ) -> None:
        if rows:
            await self._session.execute(statement, [{**(shared or {}), **row} for row in rows])

    async def query(self, statement: Any, values: Mapping[str, Any] | None = None) -> list[Any]:
        return list((await self._session.execute(statement, values)).all())

    async def lock(self, key: str) -> None:
        await lock_session(self._session, key)

    async def wake_runners(self) -> None:
        await mark_enqueued(self._session)


# --- waking this process's job runners after a commit -------------------------------------------------------------

# Runners in this process register here so that new work is picked up without waiting for their next poll; other
# processes learn of it by NOTIFY (PostgreSQL) or by polling (SQLite).
_local_wakers: list[Callable[[], None]] = []
_WAKE = "callerid.wake_runners"


def add_local_waker(waker: Callable[[], None]) -> None:
    _local_wakers.append(waker)


def remove_local_waker(waker: Callable[[], None]) -> None:
    if waker in _local_wakers:
        _local_wakers.remove(waker)


def wake_local_runners() -> None:
    for waker in list(_local_wakers):
        waker()


async def mark_enqueued(session: AsyncSession) -> None:
    """Jobs were enqueued in ``session``'s transaction: NOTIFY other processes (PostgreSQL, delivered at commit)
    and wake this process's runners once it commits."""
    if not session.info.get(_WAKE):
        session.info[_WAKE] = True
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text(f"SELECT pg_notify('{JOBS_CHANNEL}', '')"))


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.pop(_WAKE, False):
        wake_local_runners()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_WAKE, None)


async def lock_session(session: AsyncSession, key: str) -> None:
    """``Database.lock`` inside a session's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, synchronously (a SQLite write's ``work``: every ``tx`` call
    completes at once). One that does suspend is a bug: it would hold the write lock across other tasks' turns."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a SQLite write transaction awaited something other than its own statements")


async def run_steps(tx: Any, steps: Sequence[Step], prepared: Sequence[PreparedInsert | None]) -> list[Any]:
    """The steps of one ``Database.write`` in order: rows for ``returning`` steps, else counts (None for many)."""
    results: list[Any] = []
    for step, ready in zip(steps, prepared, strict=True):
        if step.wakes_runners:
            await tx.wake_runners()
        if ready is not None:
            await tx.run(ready)
            results.append(None)
        elif step.rows is not None:
            await tx.executemany(step.statement, step.rows, step.shared)
            results.append(None)
        elif step.returning:
            results.append(await tx.query(step.statement, step.values))
        else:
            changed = await tx.execute(step.statement, step.values)
            if step.expect is not None and changed != step.expect:
                raise WriteConflict(f"expected {step.expect} row(s) changed, got {changed}: {step.statement}")
            results.append(changed)
    return results


Work = Callable[[WriteTx], Awaitable[T]]


async def insert_unless_exists(
    session: AsyncSession, table: Any, values: Mapping[str, Any], *, unique: list[str]
) -> bool:
    """INSERT ``values`` unless a row with the same ``unique`` columns exists (race-free); whether it was added."""
    dialect = session.get_bind().dialect.name
    make_insert: Any = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = make_insert(table).values(**values).on_conflict_do_nothing(index_elements=unique)
    primary_key = next(iter(table.primary_key.columns))
    result = await session.execute(statement.returning(primary_key))
    return result.scalar_one_or_none() is not None


class OnConflict(Generic[T]):
    """A statement with ``ON CONFLICT`` (SQLAlchemy builds those per dialect), built once for each database:
    ``build(insert)`` gets the dialect's ``insert`` function; ``of(session)`` picks the one for its database."""

    def __init__(self, build: Callable[[Any], T]):
        self._built = {"postgresql": build(postgresql_insert), "sqlite": build(sqlite_insert)}

    def of(self, session: AsyncSession) -> T:
        return self._built[session.get_bind().dialect.name]

    def of_database(self, db: Any) -> T:
        """The statement for ``db`` (a ``Database``), for a ``Step`` of ``db.write``."""
        return self._built["sqlite" if db.is_sqlite else "postgresql"]
