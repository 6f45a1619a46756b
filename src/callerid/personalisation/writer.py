"""Group commit for the real-time endpoints' records (``callerid.batching``).

SQLite has one writer: one transaction per R2 request would serialise the requests on the write lock, with one
COMMIT each (on PostgreSQL one WAL flush each). Records that arrive while a transaction is running go together into
the next one (one group of records, one COMMIT). Every caller is answered only after the transaction holding its
record has committed, exactly as with its own transaction; one bad record does not fail the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from callerid.batching import Batcher
from callerid.db import Database
from callerid.db.write import Step

MAX_GROUP = 500  # records per transaction; the rest wait for the next one
Item = TypeVar("Item")


class GroupInserter(Generic[Item]):
    """Stores items in groups: ``steps(items)`` is the one write that stores a group."""

    def __init__(
        self,
        db: Database,
        steps: Callable[[list[Item]], Sequence[Step]],
        *,
        name: str,
        together: bool = False,
        committed: Callable[[list[Item]], None] | None = None,
    ):
        self._db = db
        self._steps = steps
        self._committed = committed  # told of each group once its write committed (counters for operators)
        self._together = together  # see ``Database.write``
        # One group at a time, also where writes could run side by side (PostgreSQL): a group commit there is one
        # statement (``together``), and two groups in flight made them half as big, so twice the CPU per record, and
        # doubled R2's p99 (bench/personalisation.py, same run: p99 17-27 ms with one, 38-57 ms with two).
        self._batcher: Batcher[Item, None] = Batcher(
            self._write,
            max_batch=MAX_GROUP,
            alone_on_error=True,
            max_in_flight=1,
            name=f"callerid-insert-{name}",
        )

    async def insert(self, item: Item) -> None:
        """Returns once ``item`` is committed; raises what its group's write raised."""
        await self._batcher.submit(item)

    async def _write(self, items: list[Item]) -> list[None]:
        await self._db.write(self._steps(items), together=self._together)
        if self._committed is not None:
            self._committed(items)
        return [None] * len(items)
