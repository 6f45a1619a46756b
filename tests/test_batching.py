"""The one group-commit batcher (callerid.batching): what arrives during a group goes in the next one, each submitter
gets its own result, and a failing group fails alone or item by item."""

from __future__ import annotations

import asyncio

import pytest

from callerid.batching import Batcher


async def test_items_arriving_during_a_group_go_together_in_the_next_one() -> None:
    groups: list[list[int]] = []
    release = asyncio.Event()

    async def process(items: list[int]) -> list[int]:
        groups.append(items)
        if len(groups) == 1:
            await release.wait()  # the first group is slow
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(process, max_batch=3)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)  # the first item starts a group at once, alone
    rest = [asyncio.create_task(batcher.submit(n)) for n in (2, 3, 4, 5)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 10
    assert [await task for task in rest] == [20, 30, 40, 50]
    assert groups == [[1], [2, 3, 4], [5]]  # at most max_batch per group
    await batcher.idle()


async def test_a_failing_group_fails_every_item_unless_items_are_retried_alone() -> None:
    async def process(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky")
        return items

    for alone, expected in ((False, ["unlucky", "unlucky", "unlucky"]), (True, [1, "unlucky", 2])):
        batcher: Batcher[int, int] = Batcher(process, alone_on_error=alone)
        hold = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0)  # 0 goes alone; the next three arrive together
        tasks = [asyncio.create_task(batcher.submit(n)) for n in (1, 13, 2)]
        await hold
        results = []
        for task in tasks:
            try:
                results.append(await task)
            except ValueError as exc:
                results.append(str(exc))
        assert results == expected


async def test_a_cancelled_submitter_does_not_cancel_the_group() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    done: list[list[int]] = []

    async def process(items: list[int]) -> list[None]:
        started.set()
        await release.wait()
        done.append(items)
        return [None] * len(items)

    batcher: Batcher[int, None] = Batcher(process)
    gone = asyncio.create_task(batcher.submit(1))
    await started.wait()
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    release.set()
    await batcher.idle()
    assert done == [[1]]  # its work was still done
