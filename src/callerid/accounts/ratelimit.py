"""Per-token request limits (SPEC §4) with the ``limits`` library.

A moving window per token: exact "rolling" semantics. Counters live in Redis when
``CALLERID_REDIS_URL`` is set, so every process shares them; in memory otherwise (one process).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from callerid.config import Settings


class RateLimiter:
    def __init__(self, settings: Settings):
        storage: Storage
        if settings.redis_url:
            uri = "async+" + settings.redis_url
            storage = RedisStorage(uri, implementation="redispy", key_prefix="callerid-limits")
        else:
            storage = MemoryStorage()
        self.storage = storage
        self.strategy = MovingWindowRateLimiter(storage)
        self.general: RateLimitItem = parse(settings.rate_limit_general)
        self.batch_v2: RateLimitItem = parse(settings.rate_limit_batch_v2)

    async def hit(self, item: RateLimitItem, identity: str) -> int | None:
        """Count one request; None when allowed, else the seconds to wait (for ``Retry-After``)."""
        if await self.strategy.hit(item, identity):
            return None
        stats = await self.strategy.get_window_stats(item, identity)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def reset(self) -> None:
        await self.storage.reset()
