"""Per-token request limits (SPEC §4) with the ``limits`` library.

A moving window per token: exact "rolling" semantics. Counters live in Redis when
``CALLERID_REDIS_URL`` is set, so every process shares them; in memory otherwise (one process).
"""

from __future__ import annotations

import math
import time
from collections import deque

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from callerid.config import Settings


class MemoryMovingWindow:
    """The same exact moving window, in this process's memory.

    Hand-written instead of limits' MemoryStorage: after every hit that one re-sweeps all keys on a background
    task, hopping to a thread (``asyncio.to_thread``) per key while holding the key's lock, so under load the
    sweep cost more than the rest of the token check and hits queued behind it for event-loop turns.
    """

    _SWEEP_EVERY = 10_000  # hits between drops of idle keys (memory stays bounded by recent tokens)

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._until_sweep = self._SWEEP_EVERY
        self._longest = 0.0

    def hit(self, item: RateLimitItem, identity: str) -> int | None:
        window = float(item.get_expiry())
        now = time.monotonic()
        key = (str(item), identity)
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - window:
            hits.popleft()
        self._longest = max(self._longest, window)
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._sweep(now)
        if len(hits) >= item.amount:
            return max(1, math.ceil(hits[0] + window - now))
        hits.append(now)
        return None

    def _sweep(self, now: float) -> None:
        self._until_sweep = self._SWEEP_EVERY
        idle = [key for key, hits in self._hits.items() if not hits or hits[-1] <= now - self._longest]
        for key in idle:
            self._hits.pop(key, None)

    def reset(self) -> None:
        self._hits.clear()


class RateLimiter:
    def __init__(self, settings: Settings):
        self.memory: MemoryMovingWindow | None = None
        storage: Storage | None = None
        if settings.redis_url:
            uri = "async+" + settings.redis_url
            storage = RedisStorage(uri, implementation="redispy", key_prefix="callerid-limits")
            self.strategy = MovingWindowRateLimiter(storage)
        else:
            self.memory = MemoryMovingWindow()
        self.storage = storage
        self.general: RateLimitItem = parse(settings.rate_limit_general)
        self.batch_v2: RateLimitItem = parse(settings.rate_limit_batch_v2)

    async def hit(self, item: RateLimitItem, identity: str) -> int | None:
        """Count one request; None when allowed, else the seconds to wait (for ``Retry-After``)."""
        if self.memory is not None:
            return self.memory.hit(item, identity)
        if await self.strategy.hit(item, identity):
            return None
        stats = await self.strategy.get_window_stats(item, identity)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def reset(self) -> None:
        if self.memory is not None:
            self.memory.reset()
        if self.storage is not None:
            await self.storage.reset()
