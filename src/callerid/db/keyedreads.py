"""Point reads by a list of keys, shared by the reads that arrive together where a read costs a round trip.

A hot path that looks up a few rows by key (an R2's receiver device, say) runs one small statement per request. On
SQLite that is a function call on the loop thread. On PostgreSQL it is a pool checkout and a round trip, whose
Python side (asyncpg's protocol, the pool, the awaits) cost more CPU than everything else the request did with the
database. So there the reads of the same statement that arrive while one is with the server go together in the next
one (group commit for reads, ``callerid.batching``): the keys of all of them in one list parameter
(``db.values.in_values``), each reader given the rows of its own keys. Nothing waits for a timer: an idle process
runs each read at once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from callerid.batching import Batcher

# Reads grouped into one statement at most; a group's keys go to the database in chunks of at most this many.
MAX_READS_PER_GROUP = 100
MAX_KEYS_PER_STATEMENT = 5000
# Groups of one statement with the database at the same time (each holds one pooled connection).
GROUPS_IN_FLIGHT = 4


class _KeyedStatement:
    """One statement's reads: ``statement`` binds the list of keys to ``parameter``; ``key`` names the column of a
    row that holds its key."""

    def __init__(self, reads: KeyedReads, statement: Any, parameter: str, key: str):
        self._reads = reads
        self._statement = statement
        self._parameter = parameter
        self._key = key
        self.batcher: Batcher[Sequence[Hashable], list[Any]] = Batcher(
            self._read_group, max_batch=MAX_READS_PER_GROUP, max_in_flight=GROUPS_IN_FLIGHT, name="callerid-reads"
        )

    async def read(self, keys: Sequence[Hashable]) -> list[Any]:
        """The rows of ``keys``, in one statement (per chunk of keys)."""
        rows: list[Any] = []
        async with self._reads.sessions() as session:
            for start in range(0, len(keys), MAX_KEYS_PER_STATEMENT):
                chunk = list(keys[start : start + MAX_KEYS_PER_STATEMENT])
                rows += (await session.execute(self._statement, {self._parameter: chunk})).all()
        return rows

    async def _read_group(self, group: list[Sequence[Hashable]]) -> list[list[Any]]:
        if len(group) == 1:
            return [await self.read(group[0])]
        wanted = list(dict.fromkeys(key for keys in group for key in keys))
        by_key: dict[Hashable, list[Any]] = {}
        for row in await self.read(wanted):
            by_key.setdefault(getattr(row, self._key), []).append(row)
        return [[row for key in dict.fromkeys(keys) for row in by_key.get(key, ())] for keys in group]


class KeyedReads:
    """``read(statement, parameter, keys, key)`` for every such statement of a process (see the module docstring).
    ``coalesce``: whether reads that arrive together share a statement (where a read costs a round trip)."""

    def __init__(self, sessions: Callable[[], AbstractAsyncContextManager[AsyncSession]], *, coalesce: bool):
        self.sessions = sessions
        self._coalesce = coalesce
        # By the statement object's identity: statements are built once, at module level.
        self._statements: dict[int, _KeyedStatement] = {}

    async def read(self, statement: Any, parameter: str, keys: Sequence[Hashable], key: str) -> list[Any]:
        if not keys:
            return []
        reads = self._statements.get(id(statement))
        if reads is None:
            reads = self._statements[id(statement)] = _KeyedStatement(self, statement, parameter, key)
        if not self._coalesce or len(keys) >= MAX_KEYS_PER_STATEMENT:
            return await reads.read(keys)
        return await reads.batcher.submit(keys)

    async def idle(self) -> None:
        for reads in self._statements.values():
            await reads.batcher.idle()
