"""The three ways ``Database.write``/``Database.transact`` run a write transaction (see ``db.write``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from callerid.db.driverpool import DriverPool
from callerid.db.rawsql import PLACEHOLDER, InsertParts, RawStatementCache, insert_keys
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

    async def write(self, steps: Sequence[Step], *, together: bool = False) -> list[Any]:
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

    async def write(self, steps: Sequence[Step], *, together: bool = False) -> list[Any]:
        if together and self._driver_pool is not None:
            combined = one_statement(self._raw, steps)
            if combined is not None:
                sql, arguments = combined
                async with self._driver_pool.connection() as driver:
                    await driver.execute(sql, *arguments)  # one statement: atomic without BEGIN and COMMIT
                return [None if step.rows is not None else 1 for step in steps]
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

    async def write(self, steps: Sequence[Step], *, together: bool = False) -> list[Any]:
        return await self.transact(lambda tx: run_steps(tx, steps, [None] * len(steps)))

    async def close(self) -> None:
        return None


Writes = SqliteWrites | PostgresWrites | SessionWrites


COMBINED_KEPT = 256
_combined_sql: dict[tuple[Any, ...], str] = {}  # by the steps' statements and forms: built once


def one_statement(raw: RawStatementCache, steps: Sequence[Step]) -> tuple[str, list[Any]] | None:
    """PostgreSQL: INSERT steps as one statement (``Database.write(..., together=True)``) and its arguments, or None
    where a step is not a plain INSERT (RETURNING, ON CONFLICT, a job's wake-up, a row count to check, a statement
    not compiled raw). An R2 group's counts are plain rows too (``analytics.deltas``), the statement's last part.

    Each step but the last becomes a data-modifying ``WITH`` part. Every part of a statement sees the database as it
    was before the statement, so a later step's reading of an earlier step's table (a child finding its new parent's
    key by the parent's id) is pointed at the rows that step inserted (its ``RETURNING *``)."""
    if len(steps) < 2:
        return None
    parts: list[tuple[InsertParts, str, int]] = []  # the statement's parts, its SQL, its argument count
    shape: list[Any] = []
    arguments: list[Any] = []
    for step in steps:
        plain_insert = getattr(step.statement, "is_insert", False) and step.expect is None
        if step.returning or step.wakes_runners or not plain_insert:
            return None
        if step.rows is not None:
            if not step.rows:
                continue
            compiled = raw.get(step.statement, insert_keys(step.rows, step.shared))
            if compiled is None or compiled.insert_parts is None or compiled.insert_parts.conflict:
                return None
            written = compiled.for_rows(step.rows, step.shared)
            assert written is not None  # an INSERT taken apart has every form
            sql, values = written
            # The SQL's form: one row, or column arrays (by the shared values).
            shape.append((compiled, frozenset(step.shared or ()) if len(step.rows) > 1 else None))
        else:
            compiled = raw.get(step.statement, tuple(step.values or ()))
            if compiled is None or compiled.insert_parts is None or compiled.insert_parts.conflict:
                return None
            sql, values = compiled.insert_parts.sql, list(compiled.parameters(step.values))
            shape.append((compiled, None))
        parts.append((compiled.insert_parts, sql, len(values)))
        arguments += values
    if len(parts) < 2:  # nothing to put together (empty steps left one or none)
        return None
    key = tuple(shape)
    combined = _combined_sql.get(key)
    if combined is None:
        if len(_combined_sql) >= COMBINED_KEPT:  # statements built per call would otherwise pile up here
            _combined_sql.clear()
        combined = _combined_sql[key] = _combine(parts)
    return combined, arguments


def _combine(parts: list[tuple[InsertParts, str, int]]) -> str:
    statements: list[str] = []
    offset = 0
    for index, (_, sql, count) in enumerate(parts):
        sql = PLACEHOLDER.sub(lambda match: f"${int(match.group(1)) + offset}", sql)  # noqa: B023 - used at once
        for earlier, (insert, _, _) in enumerate(parts[:index]):
            sql = _read_inserted(sql, insert.table, f"s{earlier}")
        statements.append(sql)
        offset += count
    *withs, last = statements
    if withs:
        last = "WITH " + ", ".join(f"s{i} AS ({sql} RETURNING *)" for i, sql in enumerate(withs)) + " " + last
    return last


def _read_inserted(sql: str, table: str, part: str) -> str:
    """``sql`` with its reads of ``table`` (``FROM table``, ``JOIN table [AS alias]``) reading the rows that the
    ``WITH`` part ``part`` inserted instead, under the same name."""
    reference = re.compile(rf"\b(FROM|JOIN)(\s+){re.escape(table)}\b(?:\s+AS\s+(\w+))?")
    return reference.sub(lambda m: f"{m.group(1)}{m.group(2)}{part} AS {m.group(3) or table}", sql)
