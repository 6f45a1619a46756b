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

from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from callerid.batching import Batcher

# Reads grouped into one statement at most; a group's keys go to the database in chunks of at most this many.
MAX_READS_PER_GROUP = 100
MAX_KEYS_PER_STATEMENT = 5000
# Groups of one statement with the database at the same time (each holds one pooled connection). One: the fewer and
# bigger the groups, the less CPU per read, as for the real-time records' group commit.
GROUPS_IN_FLIGHT = 1


@dataclass(frozen=True, eq=False)
class KeyedQuery:
    """A read by keys, built once: ``many`` binds a list of keys to ``parameter`` (``in_values`` for one column,
    ``rows_values`` for several) and returns the ``key`` columns with each row; ``one``, if given, is the same read
    for a single key bound by the key columns' names, cheaper where a read is a function call (SQLite), where the
    list parameter's decoding would cost more than the query. A key is a value (one column) or a tuple."""

    many: Any
    parameter: str
    key: str | tuple[str, ...]
    one: Any | None = None
    shared: Mapping[str, Any] = field(default_factory=dict)  # other parameters, the same for every read

    def key_of(self, row: Any) -> Hashable:
        if isinstance(self.key, str):
            return getattr(row, self.key)  # type: ignore[no-any-return]
        return tuple(getattr(row, column) for column in self.key)

    def one_parameters(self, key: Any) -> dict[str, Any]:
        if isinstance(self.key, str):
            return {**self.shared, self.key: key}
        return {**self.shared, **dict(zip(self.key, key, strict=True))}


class _QueryReads:
    """One query's reads, and the groups of them that arrived together."""

    def __init__(self, reads: KeyedReads, query: KeyedQuery):
        self._reads = reads
        self._query = query
        self.batcher: Batcher[Sequence[Hashable], list[Any]] = Batcher(
            self._read_group, max_batch=MAX_READS_PER_GROUP, max_in_flight=GROUPS_IN_FLIGHT, name="callerid-reads"
        )

    async def read(self, keys: Sequence[Hashable], *, keyed_rows: bool = False) -> list[Any]:
        """The rows of ``keys``, in one statement (per chunk of keys). ``keyed_rows``: rows that carry their key
        columns (``many``), even for a single key."""
        query = self._query
        async with self._reads.sessions() as session:
            if len(keys) == 1 and query.one is not None and not keyed_rows:
                return list((await session.execute(query.one, query.one_parameters(keys[0]))).all())
            rows: list[Any] = []
            for start in range(0, len(keys), MAX_KEYS_PER_STATEMENT):
                chunk = list(keys[start : start + MAX_KEYS_PER_STATEMENT])
                rows += (await session.execute(query.many, {**query.shared, query.parameter: chunk})).all()
        return rows

    async def _read_group(self, group: list[Sequence[Hashable]]) -> list[list[Any]]:
        if len(group) == 1:
            return [await self.read(group[0])]
        wanted = list(dict.fromkeys(key for keys in group for key in keys))  # may be one key, asked twice
        by_key: dict[Hashable, list[Any]] = {}
        for row in await self.read(wanted, keyed_rows=True):
            by_key.setdefault(self._query.key_of(row), []).append(row)
        return [[row for key in dict.fromkeys(keys) for row in by_key.get(key, ())] for keys in group]


class KeyedReads:
    """``read(query, keys)`` for every ``KeyedQuery`` of a process (see the module docstring). ``coalesce``: whether
    reads that arrive together share a statement (where a read costs a round trip)."""

    def __init__(self, sessions: Callable[[], AbstractAsyncContextManager[AsyncSession]], *, coalesce: bool):
        self.sessions = sessions
        self._coalesce = coalesce
        self._queries: dict[KeyedQuery, _QueryReads] = {}

    async def read(self, query: KeyedQuery, keys: Sequence[Hashable]) -> list[Any]:
        if not keys:
            return []
        reads = self._queries.get(query)
        if reads is None:
            reads = self._queries[query] = _QueryReads(self, query)
        if not self._coalesce or len(keys) >= MAX_KEYS_PER_STATEMENT:
            return await reads.read(keys)
        return await reads.batcher.submit(keys)

    async def idle(self) -> None:
        for reads in self._queries.values():
            await reads.batcher.idle()
