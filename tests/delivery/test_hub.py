"""The push hub: in-process, and across processes through Redis pub/sub (two hubs standing in for two processes)."""

from __future__ import annotations

import asyncio
import uuid

from callerid.delivery.hub import CLOSE, SHUTDOWN, LocalHub, RedisHub, close_device_via_redis
from tests.conftest import REDIS_URL, requires_redis


async def test_local_hub_delivers_only_to_the_addressed_device() -> None:
    hub = LocalHub()
    await hub.start()
    async with hub.attach("device-a") as a, hub.attach("device-b") as b:
        assert await hub.publish_many([("device-a", "one"), ("device-c", "lost"), ("device-a", "two")]) == [
            True,
            False,
            True,
        ]
        assert [a.queue.get_nowait(), a.queue.get_nowait()] == ["one", "two"]
        assert b.queue.empty()
    assert await hub.publish_many([("device-a", "after")]) == [False]
    await hub.stop()


async def test_local_hub_reaches_every_connection_of_a_device() -> None:
    hub = LocalHub()
    async with hub.attach("d") as first, hub.attach("d") as second:
        assert await hub.publish_many([("d", "x")]) == [True]
        assert first.queue.get_nowait() == second.queue.get_nowait() == "x"
        await hub.close_device("d")
        assert first.queue.get_nowait() == CLOSE


@requires_redis
async def test_redis_hub_fans_out_between_processes() -> None:
    process_a, process_b = RedisHub(REDIS_URL), RedisHub(REDIS_URL)
    await process_a.start()
    await process_b.start()
    device = f"test-{uuid.uuid4()}"
    try:
        # Nobody is connected anywhere: PUBLISH reaches 0 subscribers.
        assert await process_b.publish_many([(device, "early")]) == [False]
        async with process_a.attach(device) as phone:
            assert await process_b.publish_many([(device, '{"n": 1}'), (f"other-{uuid.uuid4()}", "x")]) == [True, False]
            assert await asyncio.wait_for(phone.queue.get(), timeout=5) == '{"n": 1}'
            # The publishing process itself also reaches its own phones through Redis.
            assert await process_a.publish_many([(device, '{"n": 2}')]) == [True]
            assert await asyncio.wait_for(phone.queue.get(), timeout=5) == '{"n": 2}'
        # Disconnected: process A unsubscribed, so the next push fails.
        assert await process_b.publish_many([(device, "late")]) == [False]
    finally:
        await process_a.stop()
        await process_b.stop()


@requires_redis
async def test_redis_hub_close_reaches_the_other_process() -> None:
    process_a, process_b = RedisHub(REDIS_URL), RedisHub(REDIS_URL)
    await process_a.start()
    await process_b.start()
    device = f"test-{uuid.uuid4()}"
    try:
        async with process_a.attach(device) as phone:
            await process_b.close_device(device)
            assert await asyncio.wait_for(phone.queue.get(), timeout=5) == CLOSE
    finally:
        await process_a.stop()
        await process_b.stop()


@requires_redis
async def test_a_process_without_a_hub_can_close_a_stream() -> None:
    serving = RedisHub(REDIS_URL)
    await serving.start()
    device = f"test-{uuid.uuid4()}"
    try:
        async with serving.attach(device) as first, serving.attach(device) as second:
            await close_device_via_redis(REDIS_URL, device)
            assert await asyncio.wait_for(first.queue.get(), timeout=5) == CLOSE
            assert await asyncio.wait_for(second.queue.get(), timeout=5) == CLOSE
    finally:
        await serving.stop()


async def test_stopping_the_hub_tells_streams_the_server_is_going_away() -> None:
    hub = LocalHub()
    async with hub.attach("d") as connection:
        await hub.stop()
        assert connection.queue.get_nowait() == SHUTDOWN
