"""Group commit for the real-time endpoints' single-row INSERTs (``callerid.batching``).

SQLite has one writer: one transaction per R2 request would serialise the requests on the write lock, with one
COMMIT each (on PostgreSQL one WAL flush each). Rows that arrive while a transaction is running go together into
the next one (one multi-row INSERT, one COMMIT). Every caller is answered only after the transaction holding its
row has committed, exactly as with its own transaction; one bad row does not fail the others.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, insert

from callerid.batching import Batcher
from callerid.db import Database
from callerid.db.write import Step

MAX_GROUP = 500  # rows per transaction; the rest wait for the next one


class GroupInserter:
    def __init__(self, db: Database, table: Table):
        self._db = db
        self._insert = insert(table)
        self._batcher: Batcher[dict[str, Any], None] = Batcher(
            self._write, max_batch=MAX_GROUP, alone_on_error=True, name=f"callerid-insert-{table.name}"
        )

    async def insert(self, row: dict[str, Any]) -> None:
        """Returns once ``row`` is committed; raises what its INSERT raised."""
        await self._batcher.submit(row)

    async def _write(self, rows: list[dict[str, Any]]) -> list[None]:
        await self._db.write([Step(self._insert, rows=rows)])
        return [None] * len(rows)
