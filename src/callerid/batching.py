"""Group commit: work items that arrive while a group is being processed go together in the next one.

One transaction per item would serialise the items on the database (SQLite has one writer; PostgreSQL one commit,
so one WAL flush, each), and cost a round trip per item. Here the first item after a quiet spell starts a group at
once (no timer, no added delay when idle), and everything that arrives meanwhile goes into the next group. Every
submitter gets its own item's result only after the group holding it is done, exactly as with its own transaction.

Used for the real-time records' INSERTs, the job runner's outcomes and webhook deliveries' reads and writes.
Hand-written rather than a library: it is a few lines, and aiostream-like libraries batch by time or count, not
by "whatever arrived while the previous group ran".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

Item = TypeVar("Item")
Result = TypeVar("Result")
log = structlog.get_logger("callerid.batching")


class Batcher(Generic[Item, Result]):
    """Groups of at most ``max_batch`` items for ``process``, which returns one result per item, in order.

    ``alone_on_error``: when a group fails, its items are processed again one by one, so that one bad item (a
    constraint it breaks) does not fail the others; otherwise every item of the group gets the group's exception.
    ``max_in_flight``: groups processed at the same time (more than one where ``process`` mostly waits on the
    network, not on a single writer).
    """

    def __init__(
        self,
        process: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch: int = 200,
        alone_on_error: bool = False,
        max_in_flight: int = 1,
        name: str = "callerid-batch",
    ):
        self._process = process
        self._max_batch = max_batch
        self._alone_on_error = alone_on_error
        self._name = name
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._workers: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        """Returns once the group holding ``item`` is processed: its result, or the exception that stopped it."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        # Finished workers are dropped here rather than by a done callback, which runs a loop turn after the task is
        # done: an item submitted in between would find no worker to take it.
        self._workers = {worker for worker in self._workers if not worker.done()}
        if len(self._workers) < self._max_in_flight:
            self._workers.add(asyncio.create_task(self._drain(), name=self._name))
        # Shielded: a cancelled caller (client gone, shutdown) must not cancel the group others wait for.
        return await asyncio.shield(future)

    async def idle(self) -> None:
        """Wait until every submitted item is processed (or failed)."""
        while any(not worker.done() for worker in self._workers):
            await asyncio.shield(asyncio.gather(*self._workers, return_exceptions=True))

    async def _drain(self) -> None:
        while self._pending:
            group, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                results = await self._process([item for item, _ in group])
            except Exception as exc:
                if not self._alone_on_error or len(group) == 1:
                    _settle(group, None, exc)
                    continue
                log.warning("batch_failed_items_retried_alone", batch=self._name, size=len(group), exc_info=True)
                for entry in group:
                    try:
                        _settle([entry], await self._process([entry[0]]), None)
                    except Exception as exc:
                        _settle([entry], None, exc)
            else:
                _settle(group, results, None)


def _settle(
    group: list[tuple[Item, asyncio.Future[Result]]], results: Sequence[Result] | None, error: BaseException | None
) -> None:
    for index, (_, future) in enumerate(group):
        if future.done():
            continue
        if results is not None:
            future.set_result(results[index])
        else:
            future.set_exception(error or RuntimeError("batch processing failed"))
