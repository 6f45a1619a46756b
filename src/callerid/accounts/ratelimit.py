"""Per-token request limits (SPEC §4): exact moving ("rolling") windows.

With ``CALLERID_REDIS_URL`` set, the windows live in Redis (the ``limits`` library's moving-window strategy),
so every process shares them. Without Redis they live in this process (``MemoryWindows``): one process
serves everything in the embedded default. Their times come from ``callerid.clock`` (the one clock), so tests move
time over HTTP instead of sleeping; Redis windows are timed by the ``limits`` library itself.

``MemoryWindows`` is written here rather than taken from ``limits``' MemoryStorage because that storage
starts a ``threading.Timer`` thread every 10 ms while hits keep coming, and each run walks every key under
per-key locks: under load the token check cost ~100 µs instead of ~3 µs, most of it fighting that thread for
the GIL (measured with bench/personalisation.py).
"""

from __future__ import annotations

import math
import time
from collections import deque

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from callerid import clock
from callerid.config import Settings

# Keys with no hit inside their window are dropped once this many keys exist (bounded memory).
SWEEP_AT_KEYS = 10_000


class MemoryWindows:
    """For each (identity, limit, window), the times of its hits within the window; a hit is allowed while
    there are fewer than ``limit``."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, int, float], deque[float]] = {}
        self._sweep_at = SWEEP_AT_KEYS

    def hit(self, identity: str, limit: int, window_seconds: float, now: float) -> float | None:
        """Count one hit at ``now`` (monotonic seconds); None when allowed, else the seconds until one is."""
        key = (identity, limit, window_seconds)
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self._sweep_at:
                self._sweep(now)
            hits = self._hits[key] = deque()
        cutoff = now - window_seconds
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if len(hits) >= limit:
            return hits[0] - cutoff
        hits.append(now)
        return None

    def peek(self, identity: str, limit: int, window_seconds: float, now: float) -> float | None:
        """Like ``hit`` without counting: None when a hit would be allowed, else the seconds until one is."""
        hits = self._hits.get((identity, limit, window_seconds))
        if not hits:
            return None
        cutoff = now - window_seconds
        live = [t for t in hits if t > cutoff]
        return None if len(live) < limit else live[0] - cutoff

    def _sweep(self, now: float) -> None:
        self._hits = {key: hits for key, hits in self._hits.items() if hits and hits[-1] > now - key[2]}
        self._sweep_at = max(SWEEP_AT_KEYS, 2 * len(self._hits))

    def __len__(self) -> int:
        return len(self._hits)

    def clear(self) -> None:
        self._hits.clear()


class RateLimiter:
    def __init__(self, settings: Settings):
        self.general: RateLimitItem = parse(settings.rate_limit_general)
        self.batch_v2: RateLimitItem = parse(settings.rate_limit_batch_v2)
        self._redis: MovingWindowRateLimiter | None = None
        self._memory: MemoryWindows | None = None
        self.storage: RedisStorage | None = None
        if settings.redis_url:
            self.storage = RedisStorage(
                "async+" + settings.redis_url, implementation="redispy", key_prefix="callerid-limits"
            )
            self._redis = MovingWindowRateLimiter(self.storage)
        else:
            self._memory = MemoryWindows()

    async def hit(self, item: RateLimitItem, identity: str) -> int | None:
        """Count one request; None when allowed, else the whole seconds to wait (for ``Retry-After``)."""
        if self._memory is not None:
            wait = self._memory.hit(identity, item.amount, item.get_expiry(), clock.now().timestamp())
            return None if wait is None else max(1, math.ceil(wait))
        assert self._redis is not None
        if await self._redis.hit(item, identity):
            return None
        stats = await self._redis.get_window_stats(item, identity)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def blocked(self, item: RateLimitItem, identity: str) -> int | None:
        """Whether ``identity`` is over ``item`` already, without counting: None, or the whole seconds to wait.

        For limits that count only failures (console sign-ins): check first, ``hit`` when the attempt fails.
        """
        if self._memory is not None:
            wait = self._memory.peek(identity, item.amount, item.get_expiry(), clock.now().timestamp())
            return None if wait is None else max(1, math.ceil(wait))
        assert self._redis is not None
        if await self._redis.test(item, identity):
            return None
        stats = await self._redis.get_window_stats(item, identity)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def reset(self) -> None:
        if self.storage is not None:
            await self.storage.reset()
        elif self._memory is not None:
            self._memory.clear()
