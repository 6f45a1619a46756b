"""The three ways ``Database.write``/``Database.transact`` run a write transaction (see ``db.write``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from callerid.db.driverpool import DriverPool
from callerid.db.rawsql import RawStatementCache
from callerid.db.sqlitewriter import PreparedInsert, SqliteWriter, WriteTransaction
from callerid.db.write import PostgresTx, SessionTx, SqliteTx, Step, Work, drive, run_steps, wake_local_runners

T = TypeVar("T")


class SqliteWrites:
    """A SQLite file: transactions on the event loop's own connection (``db.sqlitewriter``)."""

    def __init__(self, writer: SqliteWriter):
        self.sqlite = writer

    async def transact(self, work: Work[T], *, bulk: bool = False) -> T:
        woke = False

        def run(transaction: WriteTransaction) -> T:
            nonlocal woke
            tx = SqliteTx(transaction)
            result = drive(work(tx))  # type: ignore[arg-type]
            woke = tx.woke
            return result

        if bulk:
            result = await self.sqlite.transaction_on_thread(run)
        else:
            result = await self.sqlite.transaction(run)
        if woke:
            wake_local_runners()
        return result

    async def write(self, steps: Sequence[Step]) -> list[Any]:
        # Many-row INSERTs become a few multi-row statements, prepared before the write lock is taken.
        prepared: list[PreparedInsert | None] = [
            self.sqlite.prepare_insert(step.statement, step.rows, step.shared)
            if step.rows is not None and getattr(step.statement, "is_insert", False)
            else None
            for step in steps
        ]
        return await self.transact(lambda tx: run_steps(tx, steps, prepared))

    async def close(self) -> None:
        self.sqlite.close()


class PostgresWrites:
    """PostgreSQL: asyncpg directly, one driver transaction per write: on asyncpg's pool (``db.driverpool``), or
    where there is none (short-lived CLI processes) on SQLAlchemy's pooled connections in autocommit."""

    def __init__(self, engine: AsyncEngine, raw: RawStatementCache, driver_pool: DriverPool | None):
        self._engine = engine  # autocommit: SQLAlchemy adds no BEGIN/ROLLBACK of its own
        self._raw = raw
        self._driver_pool = driver_pool

    async def transact(self, work: Work[T], *, bulk: bool = False) -> T:
        if self._driver_pool is not None:
            async with self._driver_pool.connection() as driver:
                tx = PostgresTx(None, driver, self._raw)
                async with driver.transaction():
                    result = await work(tx)
        else:
            async with self._engine.connect() as connection:
                driver = (await connection.get_raw_connection()).driver_connection
                tx = PostgresTx(connection, driver, self._raw)
                async with driver.transaction():
                    result = await work(tx)
        if tx.woke:
            wake_local_runners()
        return result

    async def write(self, steps: Sequence[Step]) -> list[Any]:
        return await self.transact(lambda tx: run_steps(tx, steps, [None] * len(steps)))

    async def close(self) -> None:
        if self._driver_pool is not None:
            await self._driver_pool.close()


class SessionWrites:
    """Elsewhere: a SQLAlchemy session transaction (wakes its runners through the session's commit)."""

    def __init__(self, transaction: Callable[[], AbstractAsyncContextManager[AsyncSession]]):
        self._transaction = transaction

    async def transact(self, work: Work[T], *, bulk: bool = False) -> T:
        async with self._transaction() as session:
            return await work(SessionTx(session))

    async def write(self, steps: Sequence[Step]) -> list[Any]:
        return await self.transact(lambda tx: run_steps(tx, steps, [None] * len(steps)))

    async def close(self) -> None:
        return None


Writes = SqliteWrites | PostgresWrites | SessionWrites
