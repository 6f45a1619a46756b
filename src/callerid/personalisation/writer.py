"""Group commit for the real-time endpoints' single-row INSERTs.

SQLite has one writer: one transaction per R2 request would serialise the requests on the write lock, with one
COMMIT each. Rows that arrive while a transaction is running (or in the same event-loop turn) go together into
the next one (one executemany INSERT, one COMMIT), so the lock is taken once per group instead of once per
request. Every caller is
answered only after the transaction holding its row has committed, exactly as with its own transaction.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Table, insert

from callerid.db import Database
from callerid.db.write import Step

MAX_GROUP = 500  # rows per transaction; the rest wait for the next one


class GroupInserter:
    def __init__(self, db: Database, table: Table):
        self._db = db
        self._insert = insert(table)
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def insert(self, row: dict[str, Any]) -> None:
        """Returns once ``row`` is committed; raises what its INSERT raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, done))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        # shield: a caller that goes away (client disconnect) must not cancel the others' transaction.
        await asyncio.shield(done)

    async def _drain(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            try:
                await self._write([row for row, _ in group])
            except Exception as exc:
                if len(group) == 1:
                    self._settle(group, exc)
                    continue
                # One bad row must not fail the others: redo them one by one, so each gets its own answer.
                for item in group:
                    try:
                        await self._write([item[0]])
                    except Exception as exc:
                        self._settle([item], exc)
                    else:
                        self._settle([item], None)
            else:
                self._settle(group, None)

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        await self._db.write([Step(self._insert, rows=rows)])

    @staticmethod
    def _settle(group: list[tuple[dict[str, Any], asyncio.Future[None]]], error: BaseException | None) -> None:
        for _, done in group:
            if done.done():
                continue
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
