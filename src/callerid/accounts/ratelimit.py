"""Per-token request limits (SPEC §4): exact moving ("rolling") windows.

With ``CALLERID_REDIS_URL`` set, the windows live in Redis (``RedisWindows``), so every process shares them: one
server-side script checks every limit of a request and counts the hit in one round trip, timed by Redis's own clock
(the same for every host). Without Redis they live in this process (``MemoryWindows``): one process serves
everything in the embedded default. Their times come from ``callerid.clock`` (the one clock), so tests move time
over HTTP instead of sleeping.

``RedisWindows`` is a script of our own rather than the ``limits`` library's moving window: that one needs one
round trip per limit and another for the wait time of a refused hit (three for a refused batch request).

``MemoryWindows`` is written here rather than taken from ``limits``' MemoryStorage because that storage
starts a ``threading.Timer`` thread every 10 ms while hits keep coming, and each run walks every key under
per-key locks: under load the token check cost ~100 µs instead of ~3 µs, most of it fighting that thread for
the GIL (measured with bench/personalisation.py).
"""

from __future__ import annotations

import math
from collections import deque

from limits import RateLimitItem, parse
from redis.asyncio import Redis

from callerid import clock
from callerid.batching import Batcher
from callerid.config import Settings

# Keys with no hit inside their window are dropped once this many keys exist (bounded memory).
SWEEP_AT_KEYS = 10_000
# Requests checked by one script call at most (a call blocks Redis while it runs: keep each short).
MAX_CHECKS_PER_CALL = 100


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


# One call checks a group of requests, in order (each sees the hits counted before it). KEYS: per request, one list
# per (identity, limit), the newest hit first. ARGV: the number of requests, then per request 1 to count its hit (0
# to only look), its number of keys and per key its limit and window in milliseconds. Answers per request 0 when
# every limit allows the hit (then counted in every list, or none), else the milliseconds until all would. A list
# keeps at most ``limit`` hits: the window is full while its oldest kept hit is younger than the window (the exact
# moving window).
_WINDOWS_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local waits = {}
local arg = 2
local first_key = 1
for request = 1, tonumber(ARGV[1]) do
  local count = tonumber(ARGV[arg])
  local keys = tonumber(ARGV[arg + 1])
  arg = arg + 2
  local wait = 0
  for i = 0, keys - 1 do
    local limit = tonumber(ARGV[arg + 2 * i])
    local oldest = redis.call('LINDEX', KEYS[first_key + i], limit - 1)
    if oldest then
      local free_at = tonumber(oldest) + tonumber(ARGV[arg + 2 * i + 1])
      if free_at > now and free_at - now > wait then
        wait = free_at - now
      end
    end
  end
  if wait == 0 and count == 1 then
    for i = 0, keys - 1 do
      local key = KEYS[first_key + i]
      redis.call('LPUSH', key, now)
      redis.call('LTRIM', key, 0, tonumber(ARGV[arg + 2 * i]) - 1)
      redis.call('PEXPIRE', key, tonumber(ARGV[arg + 2 * i + 1]))
    end
  end
  waits[request] = wait
  arg = arg + 2 * keys
  first_key = first_key + keys
end
return waits
"""
KEY_PREFIX = "callerid-limits:"

# One request's check: its keys and its arguments (count flag, key count, limit and window per key).
_Check = tuple[list[str], list[int]]


class RedisWindows:
    """The windows in Redis, shared by every process (see the module docstring).

    Checks that arrive while another group is with Redis go together in the next script call (group commit,
    ``callerid.batching``): one round trip and one command for many requests instead of one each. The redis-py
    call and connection checkout cost more CPU than the script; under load this was 13 % of an R2 request. One
    group at a time: the bigger the groups, the fewer calls (with two in flight, R2's p99 on PostgreSQL doubled).
    """

    def __init__(self, url: str):
        self.client = Redis.from_url(url)  # hiredis parses the answers when installed (a dependency)
        self._script = self.client.register_script(_WINDOWS_SCRIPT)
        self._checks: Batcher[_Check, int] = Batcher(
            self._check_group, max_batch=MAX_CHECKS_PER_CALL, max_in_flight=1, name="callerid-rate-limits"
        )

    async def check(self, items: tuple[RateLimitItem, ...], identity: str, *, count: bool) -> float | None:
        """None when every limit of ``items`` allows a hit (counted when ``count``), else the seconds to wait."""
        keys = [f"{KEY_PREFIX}{identity}:{item.amount}/{item.get_expiry()}" for item in items]
        arguments: list[int] = [1 if count else 0, len(items)]
        for item in items:
            arguments += [item.amount, item.get_expiry() * 1000]
        wait_ms = await self._checks.submit((keys, arguments))
        return None if wait_ms == 0 else wait_ms / 1000

    async def _check_group(self, checks: list[_Check]) -> list[int]:
        keys: list[str] = []
        arguments: list[int] = [len(checks)]
        for check_keys, check_arguments in checks:
            keys += check_keys
            arguments += check_arguments
        return [int(wait) for wait in await self._script(keys=keys, args=arguments)]

    async def reset(self) -> None:
        async for key in self.client.scan_iter(match=KEY_PREFIX + "*", count=1000):
            await self.client.delete(key)

    async def close(self) -> None:
        await self._checks.idle()
        await self.client.aclose()


class RateLimiter:
    def __init__(self, settings: Settings):
        self.general: RateLimitItem = parse(settings.rate_limit_general)
        self.batch_v2: RateLimitItem = parse(settings.rate_limit_batch_v2)
        self.redis: RedisWindows | None = None
        self._memory: MemoryWindows | None = None
        if settings.redis_url:
            self.redis = RedisWindows(settings.redis_url)
        else:
            self._memory = MemoryWindows()

    async def hit(self, item: RateLimitItem, identity: str) -> int | None:
        """Count one request; None when allowed, else the whole seconds to wait (for ``Retry-After``)."""
        return await self.hit_all((item,), identity)

    async def hit_all(self, items: tuple[RateLimitItem, ...], identity: str) -> int | None:
        """Count one request against every limit of ``items`` if all allow it (else against none): None when
        allowed, else the whole seconds until all would (one round trip with Redis)."""
        if self._memory is not None:
            now = clock.now().timestamp()
            waits = (
                [self._memory.peek(identity, i.amount, i.get_expiry(), now) for i in items] if len(items) > 1 else []
            )
            wait = max((w for w in waits if w is not None), default=None)
            if wait is None:
                for item in items:
                    wait = self._memory.hit(identity, item.amount, item.get_expiry(), now)
                    if wait is not None:  # only with one item (several were all peeked free)
                        break
            return None if wait is None else max(1, math.ceil(wait))
        assert self.redis is not None
        wait = await self.redis.check(items, identity, count=True)
        return None if wait is None else max(1, math.ceil(wait))

    async def blocked(self, item: RateLimitItem, identity: str) -> int | None:
        """Whether ``identity`` is over ``item`` already, without counting: None, or the whole seconds to wait.

        For limits that count only failures (console sign-ins): check first, ``hit`` when the attempt fails.
        """
        if self._memory is not None:
            wait = self._memory.peek(identity, item.amount, item.get_expiry(), clock.now().timestamp())
        else:
            assert self.redis is not None
            wait = await self.redis.check((item,), identity, count=False)
        return None if wait is None else max(1, math.ceil(wait))

    async def reset(self) -> None:
        if self.redis is not None:
            await self.redis.reset()
        elif self._memory is not None:
            self._memory.clear()

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()
