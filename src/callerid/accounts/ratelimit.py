"""Per-token request limits (SPEC §4) with the ``limits`` library.

A moving window per token: exact "rolling" semantics. Counters live in Redis when
``CALLERID_REDIS_URL`` is set, so every process shares them; in memory otherwise (one process).

In memory we use limits' *synchronous* storage and strategy: a hit is a few microseconds of plain
Python, whereas the asyncio flavour of limits' MemoryStorage re-sweeps every key after each hit with a
thread hop per key, which cost more than the rest of the token check under load.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits import storage as sync_storage
from limits import strategies as sync_strategies
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from callerid.config import Settings


class RateLimiter:
    def __init__(self, settings: Settings):
        self.general: RateLimitItem = parse(settings.rate_limit_general)
        self.batch_v2: RateLimitItem = parse(settings.rate_limit_batch_v2)
        self._redis: MovingWindowRateLimiter | None = None
        self._memory: sync_strategies.MovingWindowRateLimiter | None = None
        if settings.redis_url:
            self.storage: RedisStorage | sync_storage.MemoryStorage = RedisStorage(
                "async+" + settings.redis_url, implementation="redispy", key_prefix="callerid-limits"
            )
            self._redis = MovingWindowRateLimiter(self.storage)
        else:
            self.storage = sync_storage.MemoryStorage()
            self._memory = sync_strategies.MovingWindowRateLimiter(self.storage)

    async def hit(self, item: RateLimitItem, identity: str) -> int | None:
        """Count one request; None when allowed, else the seconds to wait (for ``Retry-After``)."""
        if self._memory is not None:
            if self._memory.hit(item, identity):
                return None
            stats = self._memory.get_window_stats(item, identity)
        else:
            assert self._redis is not None
            if await self._redis.hit(item, identity):
                return None
            stats = await self._redis.get_window_stats(item, identity)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def reset(self) -> None:
        if isinstance(self.storage, RedisStorage):
            await self.storage.reset()
        else:
            self.storage.reset()
