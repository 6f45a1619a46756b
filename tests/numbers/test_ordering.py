"""The ordering rule (SPEC §7.3, §12 #23): a request for a number whose list/delist job is still processing
is held, reported in ``processing_numbers``, and processed like a fresh request once that job finishes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from callerid.db import Database
from callerid.jobs.registry import JobContext
from callerid.jobs.runner import JobRunner
from callerid.numbers import service
from callerid.numbers.jobs import process_number_job
from callerid.numbers.models import BusinessNumber, NumberJob
from tests.conftest import Tenant, create_tenant, mint
from tests.numbers.conftest import Api, Tree, make_tree, settle

N = "911234567891"


async def held(db: Database) -> dict[str, tuple[str | None, object]]:
    async with db.session() as session:
        rows = await session.execute(
            select(BusinessNumber.phone_number, BusinessNumber.held_action, BusinessNumber.held_feature_set_id)
        )
        return {number: (action, fs) for number, action, fs in rows.all()}


async def test_publish_during_delist_is_held_then_listed(api: Api, tree: Tree, db: Database, runner: JobRunner) -> None:
    await api.publish(tree.fs, [N])
    await settle(runner)
    assert (await api.delist(tree.fs, [N])).json()["existing_numbers"] == [N]
    response = await api.publish(tree.fs, [N])
    body = response.json()
    assert body["processing_numbers"] == [N]
    assert body["new_numbers"] == body["delisted_numbers"] == []
    assert body["status"] == "failed"  # nothing accepted now (SPEC §5.7); the number is held
    assert await api.states() == {N: "delisting"}
    assert await held(db) == {N: ("list", tree.fs)}
    # The delist finishes; the held publish is submitted as a fresh request (a new job) ...
    await runner.run_until_idle()
    async with db.session() as session:
        jobs = (await session.execute(select(NumberJob.action, NumberJob.status).order_by(NumberJob.created_at))).all()
    assert [tuple(j) for j in jobs] == [("list", "done"), ("delist", "done"), ("list", "done")]
    # ... and processed without a resend.
    assert await api.states() == {N: "listed"}
    assert await held(db) == {N: (None, None)}


async def test_delist_during_listing_is_held_then_delisted(
    api: Api, tree: Tree, db: Database, runner: JobRunner
) -> None:
    await api.publish(tree.fs, [N])
    response = await api.delist(tree.fs, [N])
    assert response.json()["processing_numbers"] == [N]
    assert response.json()["status"] == "failed"
    assert await api.states() == {N: "pending"}
    await settle(runner)
    assert await api.states() == {}
    async with db.session() as session:
        assert (await session.scalar(select(BusinessNumber.status))) == "delisted"


async def test_newer_held_request_replaces_older(api: Api, tree: Tree, db: Database, runner: JobRunner) -> None:
    await api.publish(tree.fs, [N])
    assert (await api.delist(tree.fs, [N])).json()["processing_numbers"] == [N]
    assert (await api.publish(tree.fs, [N])).json()["processing_numbers"] == [N]
    assert await held(db) == {N: ("list", tree.fs)}
    await settle(runner)
    # Only the newer request (list, already listed: nothing to do) ran; the delist was replaced.
    assert await api.states() == {N: "listed"}


async def test_held_publish_into_another_feature_set(api: Api, tree: Tree, runner: JobRunner) -> None:
    await api.publish(tree.fs, [N])
    await settle(runner)
    await api.delist(tree.fs, [N])
    assert (await api.publish(tree.fs_sub, [N])).json()["processing_numbers"] == [N]
    await settle(runner)
    body = (await api.numbers()).json()["numbers"]
    assert [(n["phone_number"], n["status"], n["feature_set_name"]) for n in body] == [(N, "listed", "Night set")]


async def test_held_publish_while_listing_elsewhere_ends_in_other_feature_set(
    api: Api, tree: Tree, runner: JobRunner
) -> None:
    await api.publish(tree.fs, [N])
    assert (await api.publish(tree.fs_sub, [N])).json()["processing_numbers"] == [N]
    await settle(runner)
    body = (await api.numbers()).json()["numbers"]
    assert [(n["status"], n["feature_set_name"]) for n in body] == [("listed", "Main set")]


async def test_mixed_request_accepts_free_numbers_and_holds_busy_ones(api: Api, tree: Tree, runner: JobRunner) -> None:
    await api.publish(tree.fs, [N])
    await settle(runner)
    await api.delist(tree.fs, [N])
    body = (await api.publish(tree.fs, [N, "911234567892"])).json()
    assert (body["processing_numbers"], body["new_numbers"], body["status"]) == ([N], ["911234567892"], "pending")
    await settle(runner)
    assert await api.states() == {N: "listed", "911234567892": "listed"}


@pytest.mark.parametrize("settings_overrides", [{"feature_set_number_limit": 1}], indirect=True)
async def test_held_request_over_a_cap_is_rejected_like_a_fresh_one(
    api: Api, tree: Tree, db: Database, runner: JobRunner
) -> None:
    await api.publish(tree.fs, [N])
    await api.publish(tree.fs_sub, ["911234567892"])
    await settle(runner)
    await api.delist(tree.fs, [N])
    assert (await api.publish(tree.fs_sub, [N])).json()["processing_numbers"] == [N]
    await settle(runner)
    # The night set is full, so the held list is rejected when it runs; the number stays delisted.
    assert await api.states() == {"911234567892": "listed"}
    assert await held(db) == {N: (None, None), "911234567892": (None, None)}


async def test_held_list_into_an_archived_set_is_dropped(
    api: Api, tree: Tree, tenant: Tenant, db: Database, runner: JobRunner
) -> None:
    await api.publish(tree.fs, [N])
    await settle(runner)
    await api.delist(tree.fs, [N])
    assert (await api.publish(tree.fs_sub, [N])).json()["processing_numbers"] == [N]
    async with db.transaction() as session:
        await service.set_feature_set_status(
            session, account_id=tenant.account_id, feature_set_id=tree.fs_sub, status="archived"
        )
    await settle(runner)
    assert await api.states() == {}
    assert await held(db) == {N: (None, None)}


@pytest.mark.parametrize(
    "settings_overrides", [{"number_verifier": "tests.numbers.verifiers:fail_ending_in_9"}], indirect=True
)
async def test_held_delist_after_a_failed_listing(api: Api, tree: Tree, db: Database, runner: JobRunner) -> None:
    failing = "911234567899"
    await api.publish(tree.fs, [failing])
    assert (await api.delist(tree.fs, [failing])).json()["processing_numbers"] == [failing]
    await settle(runner)
    # The listing failed; the held delist then ran and took the failed number out of the set.
    assert await api.states() == {}
    assert await held(db) == {failing: (None, None)}
    async with db.session() as session:
        assert await session.scalar(select(BusinessNumber.status)) == "delisted"


async def test_concurrent_requests_for_one_number(
    api: Api, tree: Tree, db: Database, runner: JobRunner, client: Any, settings: Any
) -> None:
    other = await create_tenant(db, settings, name="Other Co")
    other_tree = await make_tree(db, other.account_id)
    other_api = Api(client, other.account_id, {"Authorization": f"Bearer {await mint(client, other)}"})
    mine, theirs = await asyncio.gather(api.publish(tree.fs, [N]), other_api.publish(other_tree.fs, [N]))
    buckets = sorted(
        (key, value)
        for body in (mine.json(), theirs.json())
        for key, value in body.items()
        if key.endswith("_numbers") and value
    )
    assert buckets == [("new_numbers", [N]), ("others_numbers", [N])]
    # Same account, two sets at once: one accepted, the other held behind it.
    second = "911234567892"
    first, later = await asyncio.gather(api.publish(tree.fs, [second]), api.publish(tree.fs_sub, [second]))
    assert sorted([first.json()["new_numbers"], later.json()["new_numbers"]]) == [[], [second]]
    assert [first.json()["processing_numbers"], later.json()["processing_numbers"]].count([second]) == 1
    await settle(runner)
    async with db.session() as session:
        rows = (await session.execute(select(BusinessNumber.phone_number, BusinessNumber.status))).all()
    assert sorted(tuple(row) for row in rows) == [(N, "listed"), (second, "listed")]


async def test_a_job_run_twice_changes_nothing_the_second_time(
    api: Api, tree: Tree, db: Database, runtime: Any, runner: JobRunner
) -> None:
    await api.publish(tree.fs, [N])
    await settle(runner)
    async with db.session() as session:
        job = await session.scalar(select(NumberJob))
    assert job is not None
    await api.delist(tree.fs, [N])
    await api.publish(tree.fs, [N])  # held behind the delist
    context = JobContext(runtime=runtime, job_id=0, attempt=2)
    # At-least-once delivery: the finished listing job runs again; it must not touch the number now delisting.
    await process_number_job(context, {"job_id": str(job.id)})
    assert await api.states() == {N: "delisting"}
    assert await held(db) == {N: ("list", tree.fs)}
