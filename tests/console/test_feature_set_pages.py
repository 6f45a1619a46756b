"""Feature sets through the console: the list searched by name or by a number in a set (as the API normalises it),
filtered by the tree and status, paged, with CSV of exactly the filtered view; creating and editing a set with
every field and the API's messages next to the fields; a set's page; owners limited to their subtree."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from callerid.config import Settings
from callerid.db import Database
from callerid.engagement.models import CmbConfig
from callerid.engagement.windows import DEFAULT_WINDOWS
from callerid.labels import service as labels
from callerid.numbers import service as numbers
from callerid.numbers.models import CallReason, FeatureSet
from tests.console.conftest import World, browser, build_world, csrf_of, page_csrf, sign_in
from tests.labels.images import image_bytes

ROW_LINK = re.compile(r'<td data-label="Name"><a href="/console/feature-sets/([0-9a-f-]{36})">([^<]*)</a>')
LISTED = "919876543210"


def error_of(field: str, message: str) -> str:
    return f'<p class="error" id="{field}-error">{message}</p>'


def shown(page: str) -> list[str]:
    """Names of the sets a list page shows, in order."""
    return [name for _id, name in ROW_LINK.findall(page)]


@pytest.fixture
async def world(db: Database, settings: Settings) -> World:
    return await build_world(db, settings, "Acme Flowers")


@contextlib.asynccontextmanager
async def signed_in(app: Any, world: World, role: str) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as http:
        person = world.people[role]
        assert (await sign_in(http, person.email, person.password)).status_code == 303
        yield http


@pytest.fixture
async def admin_of(app: Any, world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in(app, world, "admin") as http:
        yield http


async def static_label(db: Database, settings: Settings, world: World, name: str = "Acme Static") -> uuid.UUID:
    async with db.transaction() as session:
        label = await labels.create_label(
            session, settings, account_id=world.account_id, name=name, logo=image_bytes(), label_type="static"
        )
    return label.id


async def stored(db: Database, feature_set_id: uuid.UUID | str) -> FeatureSet:
    async with db.session() as session:
        found = await session.get(FeatureSet, uuid.UUID(str(feature_set_id)))
    assert found is not None
    return found


async def count_sets(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(FeatureSet)) or 0)


def form(csrf: str, **fields: str) -> dict[str, str]:
    return {"csrf_token": csrf, "name": "", "description": "", "call_reason": "", "status": "draft", **fields}


async def test_create_a_feature_set_with_every_field_then_read_its_page(
    admin_of: httpx.AsyncClient, db: Database, settings: Settings, world: World
) -> None:
    label_id = await static_label(db, settings, world)
    new_page = await admin_of.get("/console/feature-sets/new")
    assert new_page.status_code == 200
    # Processes and sub-processes with their whole path; labels by type.
    assert f'<option value="{world.nodes["returns"]}">Sales / Delivery / Returns</option>' in new_page.text
    assert f'<option value="{world.nodes["refunds"]}">Sales / Delivery / Returns / Refunds</option>' in new_page.text
    assert '<optgroup label="Static labels (for feature sets)">' in new_page.text
    before = await count_sets(db)
    created = await admin_of.post(
        "/console/feature-sets",
        data=form(
            csrf_of(new_page.text),
            process=str(world.nodes["refunds"]),
            label=str(label_id),
            call_reason="Your refund is on its way",
            description="Refund calls",
            status="published",
            call_me_back="on",
            survey="on",
        ),
    )
    assert created.status_code == 303, created.text
    feature_set_id = created.headers["location"].rsplit("/", 1)[1]
    fs = await stored(db, feature_set_id)
    # Left empty, the name is the service's default, counted over the account's sets.
    assert (fs.name, fs.status, fs.description) == (f"New Feature Set-{before + 1}", "published", "Refund calls")
    assert (fs.process_id, fs.root_process_id) == (world.nodes["refunds"], world.nodes["returns"])
    assert (fs.call_me_back, fs.survey, fs.label_id) == (True, True, label_id)
    assert fs.created_by_email == world.people["admin"].email
    async with db.session() as session:
        reason = await session.get(CallReason, fs.call_reason_id)
        config = await session.scalar(select(CmbConfig).where(CmbConfig.feature_set_id == fs.id))
    assert reason is not None and reason.text == "Your refund is on its way"
    # Call Me Back on: its config is saved with the defaults, as the CLI does.
    assert config is not None and config.name == "Call Me Back" and config.windows == DEFAULT_WINDOWS

    page = await admin_of.get(created.headers["location"])
    assert page.status_code == 200
    assert f"Feature set New Feature Set-{before + 1} created" in page.text
    assert (
        f'<code class="mono">{feature_set_id}</code>' in page.text and 'aria-label="Copy feature set id"' in page.text
    )
    assert "Sales / Delivery / Returns / Refunds" in page.text
    assert "Your refund is on its way" in page.text and "Refund calls" in page.text
    assert f'href="/console/feature-sets/{feature_set_id}/listing">Manage listing</a>' in page.text
    assert f'href="/console/feature-sets/{feature_set_id}/survey">Survey</a>' in page.text
    assert f'href="/console/feature-sets/{feature_set_id}/call-me-back">Edit Call Me Back</a>' in page.text
    assert '<span class="weekday">Monday</span> 10:00-18:00</li>' in page.text
    assert '<span class="weekday">Sunday</span> no callbacks</li>' in page.text
    assert "in 30-minute slots" in page.text


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"call_reason": "Too short"}, "call_reason", "call_reason must be between 10 and 100 characters"),
        ({"call_reason": "Your #1 parcel today"}, "call_reason", "call_reason contains unsupported special characters"),
        (
            {"call_reason": " Your parcel is here"},
            "call_reason",
            "call_reason cannot start or end with a space, &#39;.&#39;, &#39;,&#39; or &#39;-&#39;",
        ),
        ({"description": "x" * 501}, "description", "description must be at most 500 characters"),
        ({"name": "Returns\u202eline"}, "name", "feature set name contains characters that cannot be displayed"),
        ({"name": "x" * 101}, "name", "feature set name must be between 1 and 100 characters"),
        ({"status": "deleted"}, "status", "status must be one of draft, published, archived"),
        ({"process": "not-a-uuid"}, "process", "choose a process or sub-process from the list"),
        ({"process": str(uuid.uuid4())}, "process", "choose a process or sub-process from the list"),
        ({"label": str(uuid.uuid4())}, "label", "choose a label from the list"),
    ],
)
async def test_bad_input_is_refused_next_to_its_field_and_nothing_is_written(
    admin_of: httpx.AsyncClient, db: Database, world: World, fields: dict[str, str], field: str, message: str
) -> None:
    before = await count_sets(db)
    csrf = await page_csrf(admin_of, "/console/feature-sets/new")
    data = form(csrf, name="Night line", process=str(world.nodes["returns"]), label=world.objects["label_id"])
    response = await admin_of.post("/console/feature-sets", data={**data, **fields})
    assert response.status_code == 400
    assert error_of(field, message) in response.text
    assert 'value="Night line"' in response.text or field == "name"  # the form keeps what was typed
    assert await count_sets(db) == before
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(CallReason)) == 0


async def test_edit_every_field_and_the_call_reason_rows(
    admin_of: httpx.AsyncClient, db: Database, settings: Settings, world: World
) -> None:
    feature_set_id = world.objects["feature_set_id"]
    label_id = await static_label(db, settings, world, "Acme Returns")
    edit = await admin_of.get(f"/console/feature-sets/{feature_set_id}/edit")
    assert edit.status_code == 200
    assert 'value="Returns line"' in edit.text and "Save feature set" in edit.text
    csrf = csrf_of(edit.text)
    fields = form(
        csrf,
        name="Refund line",
        process=str(world.nodes["refunds"]),
        label=str(label_id),
        call_reason="Your refund is on its way",
        description="Moved to refunds",
        status="published",
        survey="on",
    )
    saved = await admin_of.post(f"/console/feature-sets/{feature_set_id}", data=fields)
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"/console/feature-sets/{feature_set_id}"
    fs = await stored(db, feature_set_id)
    assert (fs.name, fs.status, fs.description, fs.label_id) == (
        "Refund line",
        "published",
        "Moved to refunds",
        label_id,
    )
    assert (fs.process_id, fs.root_process_id, fs.survey, fs.call_me_back) == (
        world.nodes["refunds"],
        world.nodes["returns"],
        True,
        False,
    )
    first_reason = fs.call_reason_id
    # The same text keeps its call reason id; a new text is a new row; empty removes it.
    assert (await admin_of.post(f"/console/feature-sets/{feature_set_id}", data=fields)).status_code == 303
    assert (await stored(db, feature_set_id)).call_reason_id == first_reason
    changed = {**fields, "call_reason": "Your refund has been paid"}
    assert (await admin_of.post(f"/console/feature-sets/{feature_set_id}", data=changed)).status_code == 303
    second_reason = (await stored(db, feature_set_id)).call_reason_id
    assert second_reason not in (None, first_reason)
    # A bad edit changes nothing at all, even the fields that were fine.
    bad = {**fields, "name": "Other name", "call_reason": "bad!"}
    refused = await admin_of.post(f"/console/feature-sets/{feature_set_id}", data=bad)
    assert refused.status_code == 400
    assert error_of("call_reason", "call_reason must be between 10 and 100 characters") in refused.text
    fs = await stored(db, feature_set_id)
    assert (fs.name, fs.call_reason_id) == ("Refund line", second_reason)
    # An emptied name is refused (the default name is for new sets only).
    unnamed = await admin_of.post(f"/console/feature-sets/{feature_set_id}", data={**fields, "name": " "})
    assert unnamed.status_code == 400
    assert error_of("name", "feature set name must be between 1 and 100 characters") in unnamed.text
    cleared = await admin_of.post(f"/console/feature-sets/{feature_set_id}", data={**fields, "call_reason": ""})
    assert cleared.status_code == 303
    assert (await stored(db, feature_set_id)).call_reason_id is None
    # Turning Call Me Back on saves its default config.
    assert (
        await admin_of.post(f"/console/feature-sets/{feature_set_id}", data={**fields, "call_me_back": "on"})
    ).status_code == 303
    async with db.session() as session:
        assert await session.scalar(select(CmbConfig.name).where(CmbConfig.feature_set_id == uuid.UUID(feature_set_id)))


async def list_into(db: Database, settings: Settings, feature_set_id: uuid.UUID | str, *raw: str) -> None:
    async with db.transaction() as session:
        fs = await session.get(FeatureSet, uuid.UUID(str(feature_set_id)))
        assert fs is not None
        await numbers.list_numbers_into(
            session, settings, feature_set=fs, raw_numbers=list(raw), created_by_email="admin@example.com"
        )


async def add_set(db: Database, world: World, name: str, process: str, label_id: str | None = None) -> str:
    async with db.transaction() as session:
        fs = await numbers.create_feature_set(
            session,
            account_id=world.account_id,
            process_id=world.nodes[process],
            label_id=uuid.UUID(label_id or world.objects["label_id"]),
            name=name,
        )
    return str(fs.id)


async def test_search_by_name_or_number_filters_pages_and_csv(
    admin_of: httpx.AsyncClient, db: Database, settings: Settings, world: World
) -> None:
    refunds = await add_set(db, world, "Refund desk", "refunds")
    await list_into(db, settings, refunds, "+" + LISTED)
    await list_into(db, settings, world.objects["feature_set_id"], "919000000001")

    everything = await admin_of.get("/console/feature-sets")
    assert everything.status_code == 200
    assert shown(everything.text) == ["Refund desk", "Returns line"]  # newest first
    assert "Sales / Delivery / Returns / Refunds" in everything.text
    # A number finds its set in any form the API takes; a part of a name too; anything else finds nothing.
    for q in ("+" + LISTED, LISTED, f" {LISTED} "):
        found = await admin_of.get("/console/feature-sets", params={"q": q})
        assert shown(found.text) == ["Refund desk"], q
    assert shown((await admin_of.get("/console/feature-sets", params={"q": "RETURNS"})).text) == ["Returns line"]
    nothing = await admin_of.get("/console/feature-sets", params={"q": "919999999999"})
    assert shown(nothing.text) == [] and "No feature set matches these filters" in nothing.text
    for hostile in ("%", "_", "Returns\x00", "' OR 1=1 --"):
        response = await admin_of.get("/console/feature-sets", params={"q": hostile})
        assert response.status_code == 200 and shown(response.text) == [], hostile

    # A process matches its sub-processes; a sub-process only its own; tree and status filters combine.
    by_process = await admin_of.get("/console/feature-sets", params={"process": str(world.nodes["returns"])})
    assert shown(by_process.text) == ["Refund desk", "Returns line"]
    by_sub = await admin_of.get("/console/feature-sets", params={"process": str(world.nodes["refunds"])})
    assert shown(by_sub.text) == ["Refund desk"]
    assert shown((await admin_of.get("/console/feature-sets", params={"status": "published"})).text) == []
    by_department = await admin_of.get("/console/feature-sets", params={"department": str(world.nodes["sales"])})
    assert shown(by_department.text) == ["Refund desk", "Returns line"]
    # Ids that are not offered are refused next to their filter (400), never a 500.
    for name, value in (("department", "x"), ("operation", str(uuid.uuid4())), ("status", "gone")):
        refused = await admin_of.get("/console/feature-sets", params={name: value})
        assert refused.status_code == 400
        assert f'id="{name}-error"' in refused.text
        assert (await admin_of.get("/console/feature-sets/export.csv", params={name: value})).status_code == 400

    # The CSV is exactly the filtered view, with every page.
    export = await admin_of.get("/console/feature-sets/export.csv", params={"q": LISTED})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [(r["feature_set_id"], r["name"], r["sub_process"], r["numbers_listed"]) for r in rows] == [
        (refunds, "Refund desk", "Refunds", "0")
    ]
    all_rows = list(csv.DictReader(io.StringIO((await admin_of.get("/console/feature-sets/export.csv")).text)))
    assert [r["name"] for r in all_rows] == ["Refund desk", "Returns line"]

    # Pagination with the total; filters stay in the page links.
    async with db.transaction() as session:
        for n in range(50):
            await numbers.create_feature_set(
                session,
                account_id=world.account_id,
                process_id=world.nodes["returns"],
                label_id=uuid.UUID(world.objects["label_id"]),
                name=f"Bulk {n:02d}",
            )
    first = await admin_of.get("/console/feature-sets", params={"q": "bulk"})
    assert len(shown(first.text)) == 50 and "50 feature sets" in first.text
    page_one = await admin_of.get("/console/feature-sets")
    assert "52 feature sets · page 1 of 2" in page_one.text and 'href="?page=2" rel="next"' in page_one.text
    assert len(shown((await admin_of.get("/console/feature-sets", params={"page": "2"})).text)) == 2
    assert len(list(csv.DictReader(io.StringIO((await admin_of.get("/console/feature-sets/export.csv")).text)))) == 52


async def test_listed_count_and_number_counts_by_status(
    admin_of: httpx.AsyncClient, db: Database, settings: Settings, world: World
) -> None:
    feature_set_id = world.objects["feature_set_id"]
    await list_into(db, settings, feature_set_id, LISTED, "919000000002")
    async with db.transaction() as session:
        from callerid.numbers.models import BusinessNumber

        number = await session.get(BusinessNumber, LISTED)
        assert number is not None
        number.status = "listed"
    listing = await admin_of.get("/console/feature-sets")
    assert '<td data-label="Listed">1</td>' in listing.text
    page = await admin_of.get(f"/console/feature-sets/{feature_set_id}")
    counts = re.findall(r'<li class="stat"><span class="number">(\d+)</span> (\w+)</li>', page.text)
    assert counts == [("1", "pending"), ("1", "listed"), ("0", "delisting"), ("0", "failed"), ("0", "delisted")]


async def test_an_empty_account_offers_the_first_action(app: Any, db: Database, settings: Settings) -> None:
    from tests.console.conftest import create_console_account

    account = await create_console_account(db, "Empty Co")
    async with browser(app) as http:
        await sign_in(http, account.email, account.password)
        listing = await http.get("/console/feature-sets")
        assert listing.status_code == 200
        assert "No feature sets yet" in listing.text and 'href="/console/organisation"' in listing.text
        assert "Download CSV" not in listing.text
        new = await http.get("/console/feature-sets/new")
        assert new.status_code == 200 and "No process to put it on" in new.text


async def test_owners_see_and_change_only_sets_in_their_subtree(
    app: Any, db: Database, settings: Settings, world: World
) -> None:
    async with db.transaction() as session:
        help_desk, _ = await numbers.create_operation(
            session,
            account_id=world.account_id,
            department_id=world.nodes["support"],
            name="Help desk",
            calling_operation_name="Support",
        )
        tickets = await numbers.create_process(
            session, account_id=world.account_id, operation_id=help_desk.id, name="Tickets"
        )
        outside = await numbers.create_feature_set(
            session,
            account_id=world.account_id,
            process_id=tickets.id,
            label_id=uuid.UUID(world.objects["label_id"]),
            name="Ticket line",
            call_me_back=True,
        )
    await list_into(db, settings, outside.id, "919111111111")
    async with signed_in(app, world, "department_owner") as http:
        listing = await http.get("/console/feature-sets")
        assert shown(listing.text) == ["Returns line"]
        # Support's nodes are not even offered as filters, and its number finds nothing.
        assert str(world.nodes["support"]) not in listing.text
        assert shown((await http.get("/console/feature-sets", params={"q": "919111111111"})).text) == []
        export = await http.get("/console/feature-sets/export.csv")
        assert [r["name"] for r in csv.DictReader(io.StringIO(export.text))] == ["Returns line"]
        # URL guessing: the same 404 as a set that does not exist, for reads and writes.
        csrf = csrf_of(listing.text)
        for path in ("", "/edit", "/call-me-back", "/call-me-back/window"):
            assert (await http.get(f"/console/feature-sets/{outside.id}{path}")).status_code == 404, path
            assert (await http.get(f"/console/feature-sets/{uuid.uuid4()}{path}")).status_code == 404, path
        assert (await http.get("/console/feature-sets/not-a-uuid")).status_code == 404
        data = form(csrf, name="Taken", process=str(world.nodes["returns"]), label=world.objects["label_id"])
        assert (await http.post(f"/console/feature-sets/{outside.id}", data=data)).status_code == 404
        cmb = {"csrf_token": csrf, "name": "Mine", "slot_minutes": "30", "w-Monday-0-start": "09:00"}
        assert (await http.post(f"/console/feature-sets/{outside.id}/call-me-back", data=cmb)).status_code == 404
        # Creating or moving a set onto a process outside the subtree is refused like an unknown one.
        moved = await http.post(
            f"/console/feature-sets/{world.objects['feature_set_id']}", data={**data, "process": str(tickets.id)}
        )
        assert moved.status_code == 400
        assert error_of("process", "choose a process or sub-process from the list") in moved.text
        created = await http.post("/console/feature-sets", data={**data, "process": str(tickets.id)})
        assert created.status_code == 400
    assert (await stored(db, outside.id)).name == "Ticket line"
    assert (await stored(db, world.objects["feature_set_id"])).process_id == world.nodes["returns"]
    async with signed_in(app, world, "outsider") as http:
        assert shown((await http.get("/console/feature-sets")).text) == ["Ticket line"]
        assert shown((await http.get("/console/feature-sets", params={"q": "+919111111111"})).text) == ["Ticket line"]
        assert (await http.get(f"/console/feature-sets/{world.objects['feature_set_id']}")).status_code == 404
    async with signed_in(app, world, "process_owner") as http:
        new = await http.get("/console/feature-sets/new")
        # A process owner of Returns may use Returns and its sub-process Refunds, nothing else.
        offered = re.findall(r'<option value="([0-9a-f-]{36})"', new.text.split('id="label"')[0])
        assert set(offered) == {str(world.nodes["returns"]), str(world.nodes["refunds"])}
