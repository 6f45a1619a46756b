"""Write transactions for the hot paths on SQLite: R1/R2 group commits, storing batches and their outcomes, the job
runner's claims and outcomes.

A transaction runs on the event-loop thread whenever SQLite's write lock is free, which under our own load is
nearly always: from a few hundred microseconds (an R2 group) to ~10 ms (a 500-record batch) of C work, with no
thread hand-off. Why not a worker thread (aiosqlite, or one thread of our own): every SQLite call releases the
GIL, and getting it back while the loop thread is busy waits up to the interpreter's switch interval (5 ms).
A 30-row group commit made ~30 such waits (R2 answers took 100-200 ms under load), and with batches on a
writer thread the write lock was held ~3x longer than the work in it (B2 accepted 1.0M records/min on a
thread, 1.7-1.9M/min on the loop; bench/personalisation.py).

Within the process, writers take turns on ``Database.write_lock`` (an asyncio lock) instead of meeting in
SQLite's busy handler. When another process holds SQLite's lock (a CLI command, a ``callerid worker``),
``BEGIN IMMEDIATE`` fails at once (busy timeout 0 on the loop connection) and the same transaction runs on a
worker thread instead, whose connection waits for the lock (30 s busy timeout): the loop never blocks on
somebody else's lock.

Statements are SQLAlchemy statements compiled once (``db.rawsql``), so SQL text and column types are the
same as everywhere else.

The WAL is kept bounded by this writer. The loop connection never checkpoints itself (a checkpoint writes and syncs
the database file); the worker thread does, every ``CHECKPOINT_EVERY_COMMITS`` commits or ``CHECKPOINT_EVERY_SECONDS``
(PASSIVE: it copies what it can without waiting for anybody). That alone does not bound the WAL under load: SQLite
starts the file over only when a writer begins while all of it is copied back and no reader uses it, and under a
steady load new frames are appended while the checkpoint copies the old ones, so that moment never comes and the
file grows for as long as the load lasts (issue 15: 125 -> 254 MB while 240,000 records were written, never
shrinking). So when a PASSIVE checkpoint finds more than ``WAL_RESTART_BYTES`` in the WAL, the writer takes its
write lock and runs a RESTART checkpoint: it copies the few frames appended meanwhile (under a millisecond: the
PASSIVE one did the bulk without the lock), waits for readers of older snapshots to finish (readers that start now
read the database file, so no stream of readers can starve it), and the next write starts the file over, which
SQLite then trims to ``WAL_RESTART_BYTES`` (``journal_size_limit``). Readers here hold a snapshot for a statement
(``db.pointread``) or a request's session, so the wait is short; it is bounded by ``CHECKPOINT_BUSY_TIMEOUT_MS`` all
the same (writers wait meanwhile), and tried again ``RESTART_RETRY_SECONDS`` later if a reader outlasted it. A
RESTART rather than a TRUNCATE: emptying the file costs a truncate and a sync with writers waiting (~7 ms here, R2's
p99 went from 9 to 14 ms); a file kept at its size is overwritten instead. ``bench/storage.py`` samples the file's
size under a sustained B2 load.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import Dialect

from callerid.db.rawsql import RawStatement, RawStatementCache

T = TypeVar("T")
log = structlog.get_logger("callerid.db")
# A PASSIVE checkpoint after this many of the loop connection's commits, or this long after the last one: big
# transactions (a 500-record batch writes ~100 KiB of WAL) are few, small ones (an R2 group commit) many.
CHECKPOINT_EVERY_COMMITS = 200
CHECKPOINT_EVERY_SECONDS = 0.5
# A WAL holding more than this is started over (RESTART), and SQLite trims the file to this size when it starts it
# over (journal_size_limit). Issue 15 bounds it at 64 MB under a sustained batch load.
WAL_RESTART_BYTES = 16 * 1024 * 1024
# How long that checkpoint waits for readers of older snapshots (and so writers wait for it) before giving up: those
# readers started before it, and a snapshot is held for a statement or a request's session. Measured with readers
# back to back, a RESTART finished in 2-11 ms, or now and then not for a while (SQLite's busy handler polls; it
# does not queue): then it gives up rather than keep writers waiting, ...
CHECKPOINT_BUSY_TIMEOUT_MS = 20
# ... and is tried again at a checkpoint this much later (the WAL grows a little meanwhile).
RESTART_RETRY_SECONDS = 0.25
SQLITE_BUSY_TIMEOUT_MS = 30_000  # other processes' write transactions are waited for this long
# Bound parameters per statement: SQLITE_MAX_VARIABLE_NUMBER is 32766 since SQLite 3.32, 999 before.
MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


class WriteTransaction:
    """The statements of one write transaction (runs on whichever thread holds the connection)."""

    def __init__(self, connection: sqlite3.Connection, compiled: _CompiledStatements):
        self._connection = connection
        self._compiled = compiled

    def execute(self, statement: Any, values: Mapping[str, Any] | None = None) -> int:
        """One statement (bind values by name; an INSERT's columns are the keys of ``values``); the number of
        rows it changed."""
        keys = tuple(values) if values is not None and getattr(statement, "is_insert", False) else None
        raw = self._compiled.get(statement, keys)
        cursor = self._connection.execute(raw.sql, raw.parameters(values))
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    def executemany(self, statement: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """An INSERT (or UPDATE) once per row; every row has the same keys."""
        if not rows:
            return
        keys = tuple(rows[0]) if getattr(statement, "is_insert", False) else None
        raw = self._compiled.get(statement, keys)
        self._connection.executemany(raw.sql, [raw.parameters(row) for row in rows])

    def run(self, prepared: PreparedInsert) -> None:
        """Statements prepared beforehand (``SqliteWriter.prepare_insert``)."""
        for sql, parameters in prepared.statements:
            self._connection.execute(sql, parameters).close()

    def query(self, statement: Any, values: Mapping[str, Any] | None = None) -> list[Any]:
        """A SELECT, or a statement with RETURNING, inside the transaction (named rows, SQLAlchemy's conversions)."""
        raw = self._compiled.get(statement, None)
        cursor = self._connection.execute(raw.sql, raw.parameters(values))
        try:
            return raw.rows(cursor.fetchall())
        finally:
            cursor.close()


@dataclass(frozen=True)
class PreparedInsert:
    """A many-row INSERT as ready-to-run multi-row statements and their flat parameter lists."""

    statements: list[tuple[str, list[Any]]]


class _CompiledStatements:
    """Statements compiled for the SQLite dialect (``RawStatementCache``); refuses those that cannot run raw."""

    def __init__(self, dialect: Dialect):
        self._cache = RawStatementCache(dialect)

    def get(self, statement: Any, column_keys: tuple[str, ...] | None) -> RawStatement:
        raw = self._cache.get(statement, column_keys)
        if raw is None:
            raise ValueError(f"not a plain statement (expanding or escaped parameters): {statement}")
        return raw


def _connect(path: str, busy_timeout_ms: int, *, autocheckpoint: bool) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
    # As db/engine.py's connections (WAL is the database's mode, set by the first connection that opened it).
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    connection.execute(f"PRAGMA journal_size_limit={WAL_RESTART_BYTES}")
    if not autocheckpoint:
        connection.execute("PRAGMA wal_autocheckpoint=0")
    return connection


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(error) or "busy" in str(error)


class SqliteWriter:
    def __init__(self, path: str, busy_timeout_ms: int, lock: asyncio.Lock):
        self._lock = lock  # Database.write_lock: one write transaction of this process at a time
        self._compiled = _CompiledStatements(SQLiteDialect_pysqlite())
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        # Opened at the first write: a Database is made before its file may exist (the CLI, migrations).
        self._connections: tuple[sqlite3.Connection, sqlite3.Connection] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callerid-sqlite-writer")
        self._commits = 0  # since the last checkpoint
        self._checkpointed_at = time.monotonic()
        self._checkpointing: asyncio.Task[None] | None = None
        self._restart_after = 0.0  # monotonic time before which a RESTART checkpoint is not tried again

    @property
    def _loop_connection(self) -> sqlite3.Connection:
        return self._open()[0]

    @property
    def _thread_connection(self) -> sqlite3.Connection:
        return self._open()[1]

    def _open(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        if self._connections is None:
            self._connections = (
                _connect(self._path, 0, autocheckpoint=False),
                _connect(self._path, self._busy_timeout_ms, autocheckpoint=True),
            )
        return self._connections

    async def transaction(self, work: Callable[[WriteTransaction], T]) -> T:
        """Run ``work`` in one committed transaction (rolled back if it raises) and return its result."""
        async with self._lock:
            return await self._transaction(work)

    async def _transaction(self, work: Callable[[WriteTransaction], T]) -> T:
        try:
            self._loop_connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if not _is_busy(error):
                raise
        else:
            result = self._finish(self._loop_connection, work)
            self._after_commit()
            return result
        result = await asyncio.get_running_loop().run_in_executor(self._thread, self._on_thread, work)
        self._after_commit()
        return result

    def _after_commit(self) -> None:
        """Start a checkpoint when one is due and none is running."""
        self._commits += 1
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        now = time.monotonic()
        if self._commits >= CHECKPOINT_EVERY_COMMITS or now - self._checkpointed_at >= CHECKPOINT_EVERY_SECONDS:
            self._commits = 0
            self._checkpointed_at = now
            self._checkpointing = asyncio.ensure_future(self.checkpoint())

    async def transaction_on_thread(self, work: Callable[[WriteTransaction], T]) -> T:
        """``transaction`` on the worker thread's connection, for bulk writes that are not urgent (retention purges):
        on the loop they would stall every request for their whole duration; here only writers wait (the write
        lock is held all the same), while requests go on being read, pushed and answered."""
        async with self._lock:
            result = await asyncio.get_running_loop().run_in_executor(self._thread, self._on_thread, work)
        self._after_commit()
        return result

    def prepare_insert(
        self, statement: Any, rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any] | None = None
    ) -> PreparedInsert:
        """An INSERT of many rows as few multi-row statements (``shared`` values, the same in every row, are
        converted once); run it with ``WriteTransaction.run``. Prepared outside the transaction, so that the write
        lock is held only for SQLite's own work."""
        if not rows:
            return PreparedInsert([])
        keys = tuple(rows[0]) + tuple(key for key in (shared or {}) if key not in rows[0])
        raw = self._compiled.get(statement, keys)
        parameters = raw.parameters_many(rows, shared)
        per_statement = max(1, MAX_VARIABLES // len(parameters[0]))
        statements = []
        for start in range(0, len(parameters), per_statement):
            chunk = parameters[start : start + per_statement]
            statements.append((raw.multi_row(len(chunk)), [value for row in chunk for value in row]))
        return PreparedInsert(statements)

    def _on_thread(self, work: Callable[[WriteTransaction], T]) -> T:
        self._thread_connection.execute("BEGIN IMMEDIATE")
        return self._finish(self._thread_connection, work)

    def _finish(self, connection: sqlite3.Connection, work: Callable[[WriteTransaction], T]) -> T:
        try:
            result = work(WriteTransaction(connection, self._compiled))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return result

    async def checkpoint(self) -> None:
        """Copy the WAL into the database file without waiting for anybody (PASSIVE), off the loop; then, if the WAL
        holds more than ``WAL_RESTART_BYTES``, start it over (RESTART) with this process's writers waiting on the
        write lock (not in SQLite's busy handler, nor falling back to the thread)."""
        loop = asyncio.get_running_loop()
        try:
            wal_bytes = await loop.run_in_executor(self._thread, self._checkpoint, "PASSIVE")
            if wal_bytes > WAL_RESTART_BYTES and time.monotonic() >= self._restart_after:
                async with self._lock:
                    wal_bytes = await loop.run_in_executor(self._thread, self._checkpoint, "RESTART")
                if wal_bytes < 0:  # a reader held an older snapshot all along: the WAL grows a little more
                    self._restart_after = time.monotonic() + RESTART_RETRY_SECONDS
        except Exception:
            log.warning("wal_checkpoint_failed", exc_info=True)

    def _checkpoint(self, mode: str) -> int:
        """A checkpoint on the thread's connection: the bytes the WAL holds (its frames), -1 if it could not finish
        (busy: a RESTART gave up waiting, after copying what it could)."""
        connection = self._thread_connection
        if mode != "PASSIVE":
            connection.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_TIMEOUT_MS}")
        try:
            busy, frames, _copied = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        finally:
            if mode != "PASSIVE":
                connection.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        if busy and mode != "PASSIVE":
            return -1
        return int(frames) * self._page_size

    @functools.cached_property
    def _page_size(self) -> int:
        return int(self._thread_connection.execute("PRAGMA page_size").fetchone()[0])

    def close(self) -> None:
        if isinstance(self._checkpointing, asyncio.Task):
            self._checkpointing.cancel()  # its statement, if running, is waited for below
        self._thread.shutdown(wait=True)
        connections, self._connections = self._connections, None
        for connection in connections or ():
            connection.close()
