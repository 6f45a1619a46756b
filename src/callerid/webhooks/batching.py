"""Natural batching: requests that arrive while a batch is being processed go together in the next one.

Deliveries run concurrently; loading each event and recording each attempt in its own transaction
costs a database round trip per event (on SQLite also a thread hand-off per statement, through one
writer). Batching them keeps the per-event cost low under load and adds no delay when idle: the first
request starts a batch at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        process: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch: int = 200,
        max_in_flight: int = 1,
    ):
        self._process = process
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._workers: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        # Finished workers are dropped here rather than by a done callback, which runs a loop turn after the task is
        # done: an item submitted in between would find no worker to take it.
        self._workers = {worker for worker in self._workers if not worker.done()}
        if len(self._workers) < self._max_in_flight:
            self._workers.add(asyncio.create_task(self._drain()))
        # Shielded: a cancelled caller must not cancel the batch others wait for (it still completes).
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                results = await self._process([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
