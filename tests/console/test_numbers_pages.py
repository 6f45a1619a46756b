"""The Numbers page (SPEC §5.9, §7.5): every number of the account with its state, filters in the URL, pagination,
a CSV of exactly the filtered view, delisting chosen numbers after a confirmation; owners see and delist only the
numbers of feature sets in their subtree."""

from __future__ import annotations

import csv
import io
import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.runner import JobRunner
from callerid.numbers import service as numbers
from callerid.numbers.models import BusinessNumber, FeatureSet
from tests.console.conftest import World, browser, build_world, csrf_of, sign_in
from tests.console.test_listing_page import states, text_of
from tests.numbers.conftest import settle

ROW_NUMBER = re.compile(r'id="pick-\d+" name="selected" value="(\d+)"')


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"webhook_allow_private": True, "number_job_delay_seconds": 0}


@pytest.fixture
async def world(db: Database, settings: Settings) -> World:
    return await build_world(db, settings, "Acme Flowers")


async def signed_in(app: Any, world: World, role: str = "admin") -> httpx.AsyncClient:
    http = browser(app)
    person = world.people[role]
    assert (await sign_in(http, person.email, person.password)).status_code == 303
    return http


async def support_set(db: Database, world: World) -> uuid.UUID:
    """A feature set under Support: outside the Sales owners' subtree."""
    async with db.transaction() as session:
        operation, _ = await numbers.create_operation(
            session,
            account_id=world.account_id,
            department_id=world.nodes["support"],
            name="Helpdesk",
            calling_operation_name="Support",
        )
        process = await numbers.create_process(
            session, account_id=world.account_id, operation_id=operation.id, name="Tickets"
        )
        created = await numbers.create_feature_set(
            session,
            account_id=world.account_id,
            process_id=process.id,
            label_id=uuid.UUID(world.objects["label_id"]),
            name="Support line",
        )
    return created.id


async def list_now(
    db: Database, settings: Settings, runner: JobRunner, feature_set_id: uuid.UUID | str, listed: list[str]
) -> None:
    async with db.transaction() as session:
        feature_set = await session.get(FeatureSet, uuid.UUID(str(feature_set_id)))
        assert feature_set is not None
        await numbers.list_numbers_into(
            session, settings, feature_set=feature_set, raw_numbers=listed, created_by_email="api@example.com"
        )
    await settle(runner)


@pytest.fixture
async def populated(db: Database, settings: Settings, runner: JobRunner, world: World) -> dict[str, Any]:
    """60 listed numbers in Returns line, one failed with a reason, 2 listed in Support line."""
    returns = world.objects["feature_set_id"]
    support = await support_set(db, world)
    await list_now(db, settings, runner, returns, [f"9198765{i:05d}" for i in range(60)])
    await list_now(db, settings, runner, support, ["447700900001", "447700900002"])
    async with db.transaction() as session:
        await session.execute(
            update(BusinessNumber)
            .where(BusinessNumber.phone_number == "919876500007")
            .values(status="failed", failure_reason="<b>carrier</b> said no")
        )
    return {"returns": returns, "support": str(support)}


async def test_an_empty_account_offers_the_first_action(app: Any, world: World) -> None:
    http = await signed_in(app, world)
    page = await http.get("/console/numbers")
    assert page.status_code == 200
    assert "<h1>Numbers</h1>" in page.text
    assert "No numbers yet" in page.text and 'href="/console/feature-sets">Choose a feature set</a>' in page.text
    await http.aclose()


async def test_the_list_its_filters_pagination_and_csv(app: Any, world: World, populated: dict[str, Any]) -> None:
    http = await signed_in(app, world)
    first = await http.get("/console/numbers")
    assert first.status_code == 200
    assert "62 numbers · page 1 of 2" in first.text
    assert len(ROW_NUMBER.findall(first.text)) == 50
    assert 'rel="next"' in first.text and "page=2" in first.text
    second = await http.get("/console/numbers?page=2")
    assert len(ROW_NUMBER.findall(second.text)) == 12
    # The failure reason is shown (escaped), the feature set links to its page.
    failed = await http.get("/console/numbers?status=failed")
    assert ROW_NUMBER.findall(failed.text) == ["919876500007"]
    assert "&lt;b&gt;carrier&lt;/b&gt; said no" in failed.text and "<b>carrier</b>" not in failed.text
    assert f'href="/console/feature-sets/{populated["returns"]}">Returns line</a>' in failed.text
    assert "1 number" in text_of(failed.text)
    # Feature set, part of the organisation, and the number: contains or equals (normalised).
    support = await http.get(f"/console/numbers?feature_set={populated['support']}")
    assert sorted(ROW_NUMBER.findall(support.text)) == ["447700900001", "447700900002"]
    assert f'href="/console/feature-sets/{populated["support"]}/listing">Manage listing</a>' in support.text
    by_node = await http.get(f"/console/numbers?node=department:{world.nodes['support']}")
    assert sorted(ROW_NUMBER.findall(by_node.text)) == ["447700900001", "447700900002"]
    contains = await http.get("/console/numbers?number=0900&match=contains")
    assert sorted(ROW_NUMBER.findall(contains.text)) == ["447700900001", "447700900002"]
    equals = await http.get("/console/numbers?number=%2B919876500042&match=equals")
    assert ROW_NUMBER.findall(equals.text) == ["919876500042"]
    # Combined, in the URL, kept by the pagination and the CSV link.
    both = await http.get(f"/console/numbers?status=listed&feature_set={populated['returns']}")
    assert "59 numbers · page 1 of 2" in both.text
    assert f"status=listed&amp;feature_set={populated['returns']}&amp;page=2" in both.text
    assert f"/console/numbers/export.csv?status=listed&amp;feature_set={populated['returns']}" in both.text
    exported = await http.get(f"/console/numbers/export.csv?status=listed&feature_set={populated['returns']}")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 59 and {row["status"] for row in rows} == {"listed"}
    assert {row["feature_set_name"] for row in rows} == {"Returns line"}
    assert rows[0]["department"] == "Sales" and rows[0]["feature_set_id"] == populated["returns"]
    everything = list(csv.DictReader(io.StringIO((await http.get("/console/numbers/export.csv")).text)))
    assert len(everything) == 62
    failed_csv = list(csv.DictReader(io.StringIO((await http.get("/console/numbers/export.csv?status=failed")).text)))
    assert [(r["phone_number"], r["failure_reason"]) for r in failed_csv] == [
        ("919876500007", "<b>carrier</b> said no")
    ]
    await http.aclose()


async def test_bad_filters_are_shown_next_to_their_field(app: Any, world: World, populated: dict[str, Any]) -> None:
    http = await signed_in(app, world)
    bad = await http.get(
        "/console/numbers?status=gone&feature_set=not-a-set&node=process:" + str(uuid.uuid4()) + "&number=abc"
    )
    assert bad.status_code == 400
    assert 'id="status-error">choose a status from the list</p>' in bad.text
    assert 'id="feature_set-error">choose a feature set from the list</p>' in bad.text
    assert 'id="node-error">choose a part of the organisation from the list</p>' in bad.text
    assert 'id="number-error">number must contain digits</p>' in bad.text
    assert 'value="abc"' in bad.text  # kept as typed
    exact = await http.get("/console/numbers?number=12&match=equals")
    assert 'id="number-error">number must be a phone number' in exact.text
    assert (await http.get("/console/numbers/export.csv?status=gone")).status_code == 400
    hostile = await http.get('/console/numbers?number="><script>alert(1)</script>')
    assert "<script>alert(1)</script>" not in hostile.text
    await http.aclose()


async def test_owners_see_and_export_only_their_subtree(app: Any, world: World, populated: dict[str, Any]) -> None:
    for role in ("department_owner", "operation_owner", "process_owner"):
        http = await signed_in(app, world, role)
        page = await http.get("/console/numbers")
        assert "60 numbers · page 1 of 2" in page.text, role
        shown = set(ROW_NUMBER.findall(page.text)) | set(
            ROW_NUMBER.findall((await http.get("/console/numbers?page=2")).text)
        )
        assert not shown & {"447700900001", "447700900002"}, role
        assert "Support line" not in page.text  # not even as a filter option
        # Guessing the other set's id or node: refused like any id that is not on the list; nothing leaks.
        guess = await http.get(f"/console/numbers?feature_set={populated['support']}")
        assert guess.status_code == 400 and "447700900001" not in guess.text
        node = await http.get(f"/console/numbers?node=department:{world.nodes['support']}")
        assert node.status_code == 400 and "447700900001" not in node.text
        found = await http.get("/console/numbers?number=447700900001&match=equals")
        assert ROW_NUMBER.findall(found.text) == []
        exported = (await http.get("/console/numbers/export.csv")).text
        assert "447700900001" not in exported and exported.count("\n") == 61
        await http.aclose()
    outsider = await signed_in(app, world, "outsider")
    page = await outsider.get("/console/numbers")
    assert sorted(ROW_NUMBER.findall(page.text)) == ["447700900001", "447700900002"]
    await outsider.aclose()


async def test_delisting_chosen_numbers_asks_first_then_delists(
    app: Any, world: World, db: Database, runner: JobRunner, populated: dict[str, Any]
) -> None:
    http = await signed_in(app, world)
    chosen = ["919876500001", "919876500002", "447700900001", "919876500007", "999"]
    asked = await http.get("/console/numbers/delist", params=[("selected", n) for n in chosen] + [("status", "listed")])
    assert asked.status_code == 200
    page = text_of(asked.text)
    assert "Delist 3 numbers?" in page
    assert "1 chosen number is not among the numbers you may delist" in page  # "999"
    assert "Returns line" in page and "Support line" in page
    assert "Delisted 2" in page and "Nothing to delist 1" in page  # the failed one has nothing to undo
    assert '<button type="submit" class="button danger">Delist 3 numbers</button>' in asked.text
    before = await states(db)
    assert before["919876500001"][0] == "listed"  # the confirmation changed nothing

    done = await http.post(
        "/console/numbers/delist",
        data={"csrf_token": csrf_of(asked.text), "selected": chosen[:4], "status": "listed"},
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/console/numbers?status=listed"  # two sets: back to the list
    after = await states(db)
    assert after["919876500001"][0] == after["447700900001"][0] == "delisting"
    await settle(runner)
    after = await states(db)
    assert after["919876500001"][0] == after["919876500002"][0] == after["447700900001"][0] == "delisted"
    assert after["919876500003"][0] == "listed"
    # One set: straight to its progress page.
    asked = await http.get("/console/numbers/delist?selected=919876500003")
    one = await http.post(
        "/console/numbers/delist", data={"csrf_token": csrf_of(asked.text), "selected": "919876500003"}
    )
    assert re.fullmatch(
        rf"/console/feature-sets/{populated['returns']}/listing/jobs/[0-9a-f-]{{36}}", one.headers["location"]
    )
    # Nothing chosen: a page that says so (and a post that does nothing).
    empty = await http.get("/console/numbers/delist")
    assert empty.status_code == 200 and "Choose the numbers to delist on the Numbers page first" in empty.text
    nothing = await http.post("/console/numbers/delist", data={"csrf_token": csrf_of(asked.text)})
    assert nothing.status_code == 303 and nothing.headers["location"] == "/console/numbers"
    await http.aclose()


async def test_owners_cannot_delist_numbers_outside_their_subtree(
    app: Any, world: World, db: Database, populated: dict[str, Any]
) -> None:
    http = await signed_in(app, world, "process_owner")
    asked = await http.get("/console/numbers/delist?selected=447700900001")
    assert asked.status_code == 200 and "not among your numbers" in asked.text
    assert "Support line" not in asked.text
    done = await http.post(
        "/console/numbers/delist", data={"csrf_token": csrf_of(asked.text), "selected": "447700900001"}
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/numbers"
    assert (await states(db))["447700900001"][0] == "listed"
    await http.aclose()
    async with db.session() as session:
        assert await session.scalar(select(BusinessNumber.status).where(BusinessNumber.phone_number == "447700900002"))
