"""The push hub: routes a message to the live WebSocket connection(s) of one registered device.

Messages are addressed by device id, not phone number, so a connection left over from a replaced or
unregistered device never receives (and never counts as) a delivery for the number's new device.

Without Redis the hub is in-process only (embedded mode needs nothing but Python). With Redis every
process subscribes to ``callerid:push:<device_id>`` for the devices connected to it and a push is a
``PUBLISH``: its reply is the number of subscribed processes, so 0 means "no live connection anywhere".
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import structlog

log = structlog.get_logger("callerid.delivery.hub")

CHANNEL_PREFIX = "callerid:push:"
# A control payload (never valid JSON, so it cannot collide with a real message): close the connection.
CLOSE = "\x00close"
# Another control payload: this process is shutting down (the phone should reconnect, possibly elsewhere).
SHUTDOWN = "\x00shutdown"
# Per-connection buffer: a phone that stops reading must not grow memory without bound; when full,
# the push to it fails (failed_to_push) rather than blocking everyone else.
QUEUE_SIZE = 1000


class Connection:
    """One live WebSocket of a device: the stream endpoint reads ``queue`` and writes to the socket."""

    __slots__ = ("device_id", "queue")

    def __init__(self, device_id: str):
        self.device_id = device_id
        self.queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)

    def offer(self, payload: str) -> bool:
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            return False
        return True


class LocalHub:
    """In-process hub: connections of this process only."""

    def __init__(self) -> None:
        self._connections: dict[str, set[Connection]] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for connections in list(self._connections.values()):
            for connection in list(connections):
                connection.offer(SHUTDOWN)
        return None

    def connected(self, device_id: str) -> bool:
        return bool(self._connections.get(device_id))

    def _deliver_local(self, device_id: str, payload: str) -> bool:
        delivered = False
        for connection in list(self._connections.get(device_id, ())):
            delivered = connection.offer(payload) or delivered
        return delivered

    async def _on_first(self, device_id: str) -> None:
        return None

    async def _on_last(self, device_id: str) -> None:
        return None

    async def _ready(self, device_id: str) -> None:
        """Wait until pushes for ``device_id`` can arrive (another connection of it may be setting that up)."""
        return None

    @contextlib.asynccontextmanager
    async def attach(self, device_id: str) -> AsyncIterator[Connection]:
        """Register a live connection for ``device_id``; pushes reach it once this has entered."""
        connection = Connection(device_id)
        connections = self._connections.setdefault(device_id, set())
        first = not connections
        connections.add(connection)
        try:
            if first:
                await self._on_first(device_id)
            else:
                await self._ready(device_id)
            yield connection
        finally:
            connections = self._connections.get(device_id, set())
            connections.discard(connection)
            if not connections:
                self._connections.pop(device_id, None)
                await self._on_last(device_id)

    async def publish_many(self, items: list[tuple[str, str]]) -> list[bool]:
        """Push each ``(device_id, payload)``; True where some live connection accepted it."""
        return [self._deliver_local(device_id, payload) for device_id, payload in items]

    async def close_device(self, device_id: str) -> None:
        """Disconnect every connection of a device that was replaced or unregistered."""
        await self.publish_many([(device_id, CLOSE)])


class RedisHub(LocalHub):
    """Cross-process hub over Redis pub/sub (redis.asyncio)."""

    def __init__(self, redis_url: str):
        super().__init__()
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.from_url(redis_url)
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        # Subscriptions waiting for Redis to confirm them, so attach() returns only once pushes can arrive.
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()
        # A private channel keeps the pubsub connection subscribed even with no phones connected
        # (redis-py refuses to read a pubsub that has no subscriptions).
        self._control_channel = f"{CHANNEL_PREFIX}_hub:{uuid.uuid4()}"

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub()
        await self._subscribe(self._control_channel)
        self._reader = asyncio.create_task(self._read_loop(), name="push-hub-reader")
        await self._await_confirmation(self._control_channel)

    async def stop(self) -> None:
        await super().stop()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        with contextlib.suppress(Exception):
            await self._redis.aclose()

    async def _subscribe(self, channel: str) -> None:
        self._pending[channel] = asyncio.get_running_loop().create_future()
        await self._pubsub.subscribe(channel)

    async def _await_confirmation(self, channel: str) -> None:
        future = self._pending.get(channel)
        if future is not None:
            # shield: a second waiter timing out or being cancelled must not cancel the shared future.
            await asyncio.wait_for(asyncio.shield(future), timeout=10)

    async def _on_first(self, device_id: str) -> None:
        channel = CHANNEL_PREFIX + device_id
        async with self._lock:
            await self._subscribe(channel)
        await self._await_confirmation(channel)

    async def _ready(self, device_id: str) -> None:
        await self._await_confirmation(CHANNEL_PREFIX + device_id)

    async def _on_last(self, device_id: str) -> None:
        async with self._lock:
            if not self.connected(device_id):
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(CHANNEL_PREFIX + device_id)

    async def _read_loop(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # a dropped Redis connection: redis-py reconnects and resubscribes on the next read
                log.warning("push_hub_read_failed", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            kind = message["type"]
            if kind == "subscribe":
                future = self._pending.pop(channel, None)
                if future is not None and not future.done():
                    future.set_result(None)
            elif kind == "message" and channel.startswith(CHANNEL_PREFIX):
                data = message["data"]
                payload = data.decode() if isinstance(data, bytes) else str(data)
                self._deliver_local(channel[len(CHANNEL_PREFIX) :], payload)

    async def publish_many(self, items: list[tuple[str, str]]) -> list[bool]:
        if not items:
            return []
        # One round trip for the whole batch.
        async with self._redis.pipeline(transaction=False) as pipe:
            for device_id, payload in items:
                pipe.publish(CHANNEL_PREFIX + device_id, payload)
            receivers = await pipe.execute()
        return [int(count) > 0 for count in receivers]


def create_hub(redis_url: str | None) -> LocalHub:
    """The process's hub (``Runtime.hub``), started by ``Runtime.open``."""
    return RedisHub(redis_url) if redis_url else LocalHub()


async def close_device_via_redis(redis_url: str | None, device_id: str | None) -> None:
    """From a process without a hub (the CLI): disconnect a device's streams in the serving processes."""
    if not redis_url or device_id is None:
        return
    import redis.asyncio as aioredis

    client: Any = aioredis.from_url(redis_url)
    try:
        await client.publish(CHANNEL_PREFIX + device_id, CLOSE)
    finally:
        await client.aclose()
