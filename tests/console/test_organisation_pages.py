"""The Organisation page: the tree with ids to copy and its CSV, adding departments > operations > processes >
sub-processes, renaming, archiving (refused while numbers are listed below) and restoring; owners limited to their
subtree, also when they guess URLs; archived nodes left out of every choice (add, invite)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from callerid import clock
from callerid.db import Database
from callerid.numbers import calling_operations
from callerid.numbers.models import (
    DELISTED,
    DRAFT,
    LISTED,
    PUBLISHED,
    BusinessNumber,
    CallingOperation,
    Department,
    FeatureSet,
    Operation,
    Process,
)
from tests.console.conftest import World, browser, build_world, csrf_of, page_csrf, sign_in

HEADING = re.compile(r'<h([2-6]) class="org-name" id="node-([0-9a-f-]{36})">([^<]*)</h')


@pytest.fixture
async def world(db: Database, settings: Any) -> World:
    return await build_world(db, settings, "Acme")


@pytest.fixture
async def admin(app: Any, world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as http:
        await sign_in(http, world.people["admin"].email, world.people["admin"].password)
        yield http


@asynccontextmanager
async def signed_in(app: Any, world: World, role: str) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as http:
        person = world.people[role]
        assert (await sign_in(http, person.email, person.password)).status_code == 303
        yield http


def headings(html: str) -> list[tuple[int, str]]:
    """(level, name) of every node shown, in page order."""
    return [(int(level), name) for level, _id, name in HEADING.findall(html)]


async def add(http: httpx.AsyncClient, **fields: str) -> httpx.Response:
    csrf = await page_csrf(http, "/console/organisation")
    return await http.post("/console/organisation", data={"csrf_token": csrf, **fields})


async def post(http: httpx.AsyncClient, path: str, **fields: str) -> httpx.Response:
    csrf = await page_csrf(http, "/console/organisation")
    return await http.post(path, data={"csrf_token": csrf, **fields})


async def entry_id(db: Database, name: str) -> str:
    async with db.session() as session:
        found = await session.scalar(select(CallingOperation.id).where(CallingOperation.name == name))
    assert found is not None
    return str(found)


async def archived(db: Database, node_id: uuid.UUID) -> bool:
    async with db.session() as session:
        for model in (Department, Operation, Process):
            row = await session.get(model, node_id)
            if row is not None:
                return row.archived_at is not None
    raise AssertionError(f"no node {node_id}")


async def set_number(db: Database, world: World, status: str, **fields: Any) -> None:
    """One business number of the world's feature set ("Returns line", on Sales > Delivery > Returns)."""
    now = clock.now()
    async with db.transaction() as session:
        row = await session.get(BusinessNumber, "919876543210")
        if row is None:
            row = BusinessNumber(
                phone_number="919876543210",
                account_id=world.account_id,
                feature_set_id=uuid.UUID(world.objects["feature_set_id"]),
                status=status,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
        row.status = status
        for name, value in fields.items():
            setattr(row, name, value)


async def test_the_tree_shows_every_node_nested_with_its_id_and_exports_it(
    admin: httpx.AsyncClient, world: World
) -> None:
    page = await admin.get("/console/organisation")
    assert page.status_code == 200
    # Departments are h2 (each its own card and landmark), one level deeper per level; siblings by name.
    assert headings(page.text) == [(2, "Sales"), (3, "Delivery"), (4, "Returns"), (5, "Refunds"), (2, "Support")]
    assert page.text.count('<ul class="org-children"') == 3
    assert f'<section class="card org-root" aria-labelledby="node-{world.nodes["sales"]}">' in page.text
    assert "2 departments · 1 operation · 1 process · 1 sub-process" in page.text
    delivery = world.nodes["delivery"]
    assert f'data-copy="{delivery}" aria-label="Copy operation id of Sales / Delivery"' in page.text
    assert "Calling operation: <strong>Delivery</strong>" in page.text
    assert 'href="/console/organisation/new">Add department</a>' in page.text
    assert f'href="/console/organisation/{delivery}/rename">Rename<span class="visually-hidden"> Sales / Delivery' in (
        page.text
    )
    exported = await admin.get("/console/organisation/export.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["kind"], r["path"]) for r in rows] == [
        ("department", "Sales"),
        ("operation", "Sales / Delivery"),
        ("process", "Sales / Delivery / Returns"),
        ("sub-process", "Sales / Delivery / Returns / Refunds"),
        ("department", "Support"),
    ]
    assert rows[1]["id"] == str(delivery) and rows[1]["parent_id"] == str(world.nodes["sales"])
    assert rows[1]["calling_operation"] == "Delivery" and {r["status"] for r in rows} == {"active"}


async def test_an_admin_adds_each_kind_of_node_and_bad_input_stays_on_the_form(
    admin: httpx.AsyncClient, db: Database, world: World
) -> None:
    form = await admin.get("/console/organisation/new")
    assert form.status_code == 200 and "<h1>Add department</h1>" in form.text
    empty = await add(admin, parent="", name="   ")
    assert empty.status_code == 400
    assert '<p class="error" id="name-error">department name must be between 1 and 100 characters</p>' in empty.text
    hostile = await add(admin, parent="", name="<b>Ops</b>\x00")
    assert hostile.status_code == 400 and "department name contains characters that cannot be stored" in hostile.text
    assert 'value="&lt;b&gt;Ops&lt;/b&gt;' in hostile.text  # what was typed stays, escaped
    same = await add(admin, parent="", name="sales")
    assert same.status_code == 400
    assert "there is already a department named Sales in this account; choose another name" in same.text
    created = await add(admin, parent="", name="  Retail <West>  ")
    assert created.status_code == 303 and created.headers["location"].startswith("/console/organisation#node-")
    retail = uuid.UUID(created.headers["location"].rsplit("node-", 1)[1])
    shown = await admin.get("/console/organisation")
    assert "Department Retail &lt;West&gt; added" in shown.text and "Retail &lt;West&gt;</h2>" in shown.text

    # An operation needs a calling operation from the catalogue; the console never makes one.
    operation_form = await admin.get(f"/console/organisation/new?parent={retail}")
    assert "<h1>Add operation to Retail &lt;West&gt;</h1>" in operation_form.text
    assert '<option value="' + await entry_id(db, "Delivery") + '">Delivery</option>' in operation_form.text
    missing = await add(admin, parent=str(retail), name="Stores", calling_operation="")
    assert missing.status_code == 400
    assert '<p class="error" id="calling_operation-error">choose a calling operation from the list</p>' in (
        missing.text
    )
    assert 'value="Stores"' in missing.text
    made_up = await add(admin, parent=str(retail), name="Stores", calling_operation="Telesales")
    assert "choose a calling operation from the list" in made_up.text
    async with db.transaction() as session:
        retired = await calling_operations.add_calling_operation(session, "Door to door")
        await calling_operations.retire_calling_operation(session, "Door to door")
    assert "Door to door" not in operation_form.text
    refused = await add(admin, parent=str(retail), name="Stores", calling_operation=str(retired.id))
    assert "calling operation Door to door is retired; choose another one" in refused.text
    async with db.session() as session:
        assert await session.scalar(select(Operation).where(Operation.department_id == retail)) is None
    operation = await add(admin, parent=str(retail), name="Stores", calling_operation=await entry_id(db, "Delivery"))
    assert operation.status_code == 303
    stores = uuid.UUID(operation.headers["location"].rsplit("node-", 1)[1])
    process = await add(admin, parent=str(stores), name="Pick-ups")
    assert process.status_code == 303
    pickups = uuid.UUID(process.headers["location"].rsplit("node-", 1)[1])
    sub = await add(admin, parent=str(pickups), name="Late")
    assert sub.status_code == 303
    async with db.session() as session:
        late = await session.scalar(select(Process).where(Process.parent_id == pickups))
        assert late is not None and (late.name, late.operation_id) == ("Late", stores)
    # One level of sub-processes; garbage and foreign parents are refused next to the field.
    deeper = await admin.get(f"/console/organisation/new?parent={late.id}")
    assert deeper.status_code == 400 and "Nothing can be added under Retail &lt;West&gt; / Stores" in deeper.text
    posted = await add(admin, parent=str(late.id), name="Deeper")
    assert posted.status_code == 400 and '<p class="error" id="parent-error">nothing can be added under' in posted.text
    for parent in ("not-a-uuid", str(uuid.uuid4())):
        wrong = await add(admin, parent=parent, name="X")
        assert wrong.status_code == 400
        assert '<p class="error" id="parent-error">choose where to add it from the list</p>' in wrong.text
    assert (await admin.get("/console/organisation/new?parent=nope")).status_code == 404


async def test_renaming_names_the_node_and_keeps_its_id(admin: httpx.AsyncClient, db: Database, world: World) -> None:
    returns = world.nodes["returns"]
    form = await admin.get(f"/console/organisation/{returns}/rename")
    assert form.status_code == 200
    assert "<h1>Rename process Sales / Delivery / Returns</h1>" in form.text
    assert "feature sets (process_name) and numbers (process)" in form.text and str(returns) in form.text
    blank = await post(admin, f"/console/organisation/{returns}/rename", name=" ")
    assert blank.status_code == 400
    assert '<p class="error" id="name-error">process name must be between 1 and 100 characters</p>' in blank.text
    long = await post(admin, f"/console/organisation/{returns}/rename", name="x" * 101)
    assert long.status_code == 400 and 'value="' + "x" * 101 + '"' in long.text
    renamed = await post(admin, f"/console/organisation/{returns}/rename", name="Returns & exchanges")
    assert renamed.status_code == 303
    page = await admin.get(renamed.headers["location"])
    assert "Sales / Delivery / Returns renamed to Returns &amp; exchanges" in page.text
    async with db.session() as session:
        row = await session.get(Process, returns)
        assert row is not None and row.name == "Returns & exchanges"
    # The same name in another place is fine; a sibling's (any case) is not, nor its own under another case... is.
    again = await post(admin, f"/console/organisation/{returns}/rename", name="RETURNS & EXCHANGES")
    assert again.status_code == 303
    async with db.transaction() as session:
        session.add(
            Process(
                id=uuid.uuid4(),
                account_id=world.account_id,
                operation_id=world.nodes["delivery"],
                name="Exchanges",
                created_at=clock.now(),
            )
        )
    clash = await post(admin, f"/console/organisation/{returns}/rename", name="exchanges")
    assert clash.status_code == 400 and "there is already a process named Exchanges in Sales / Delivery" in clash.text


async def test_archiving_waits_for_delisting_then_hides_the_subtree_until_restored(
    admin: httpx.AsyncClient, db: Database, world: World
) -> None:
    sales, delivery, returns = world.nodes["sales"], world.nodes["delivery"], world.nodes["returns"]
    feature_set_id = uuid.UUID(world.objects["feature_set_id"])
    async with db.transaction() as session:
        await session.execute(update(FeatureSet).where(FeatureSet.id == feature_set_id).values(status=PUBLISHED))
    await set_number(db, world, LISTED)
    blocked = await admin.get(f"/console/organisation/{sales}/archive")
    assert blocked.status_code == 200 and "<h1>Sales cannot be archived yet</h1>" in blocked.text
    assert "1 number (pending, listed, being delisted or waiting to be listed) in Returns line" in blocked.text
    assert "button danger" not in blocked.text
    refused = await post(admin, f"/console/organisation/{sales}/archive")
    assert refused.status_code == 400 and not await archived(db, sales)
    # A number delisted but waiting to be listed here again still counts (SPEC §7.3 held requests).
    await set_number(db, world, DELISTED, held_action="list", held_feature_set_id=feature_set_id)
    assert (await post(admin, f"/console/organisation/{delivery}/archive")).status_code == 400
    await set_number(db, world, DELISTED, held_action=None, held_feature_set_id=None)

    confirm = await admin.get(f"/console/organisation/{delivery}/archive")
    assert "<h1>Archive operation Sales / Delivery?</h1>" in confirm.text
    assert "Delivery and everything in it (1 process, 1 sub-process)" in confirm.text
    assert "Its 1 feature set (Returns line) is archived too" in confirm.text
    assert '<button type="submit" class="button danger">Archive Sales / Delivery</button>' in confirm.text
    done = await post(admin, f"/console/organisation/{delivery}/archive")
    assert done.status_code == 303
    for node in ("delivery", "returns", "refunds"):
        assert await archived(db, world.nodes[node]), node
    assert not await archived(db, sales)
    async with db.session() as session:
        feature_set = await session.get(FeatureSet, feature_set_id)
        assert feature_set is not None and (feature_set.status, feature_set.status_before_archive) == (
            "archived",
            PUBLISHED,
        )

    page = await admin.get("/console/organisation")
    assert "Sales / Delivery archived; show archived nodes to restore it" in page.text
    assert headings(page.text) == [(2, "Sales"), (2, "Support")]
    assert "3 archived not shown" in page.text
    assert [
        r["name"] for r in csv.DictReader(io.StringIO((await admin.get("/console/organisation/export.csv")).text))
    ] == [
        "Sales",
        "Support",
    ]
    shown = await admin.get("/console/organisation?archived=1")
    assert headings(shown.text)[1:4] == [(3, "Delivery"), (4, "Returns"), (5, "Refunds")]
    assert shown.text.count('<span class="badge badge-neutral">Archived</span>') == 3
    assert f'action="/console/organisation/{delivery}/restore"' in shown.text
    exported = await admin.get("/console/organisation/export.csv?archived=1")
    statuses = {r["name"]: r["status"] for r in csv.DictReader(io.StringIO(exported.text))}
    assert statuses == {"Sales": "active", "Delivery": "archived", "Returns": "archived", "Refunds": "archived",
                        "Support": "active"}  # fmt: skip

    # Nothing is added under an archived node, nor offered: adding, inviting.
    assert (await admin.get(f"/console/organisation/new?parent={returns}")).status_code == 400
    under = await add(admin, parent=str(returns), name="Late")
    assert under.status_code == 400 and "process Sales / Delivery / Returns is archived; restore it first" in under.text
    choices = await admin.get("/console/members/invite")
    assert str(sales) in choices.text and str(delivery) not in choices.text and str(returns) not in choices.text
    invite = await post(
        admin, "/console/members/invite", email="late@example.com", role="operation_owner", scope=str(delivery)
    )
    assert invite.status_code == 400 and "Sales / Delivery is archived; choose another operation" in invite.text
    assert (await post(admin, f"/console/organisation/{delivery}/archive")).status_code == 400

    # Restoring a node inside an archived one is refused; restoring the top brings back what went with it.
    inner = await post(admin, f"/console/organisation/{returns}/restore")
    assert inner.status_code == 400 and "Sales / Delivery is archived; restore it first" in inner.text
    back = await post(admin, f"/console/organisation/{delivery}/restore")
    assert back.status_code == 303 and back.headers["location"] == f"/console/organisation?archived=1#node-{delivery}"
    assert not any([await archived(db, world.nodes[n]) for n in ("delivery", "returns", "refunds")])
    async with db.session() as session:
        feature_set = await session.get(FeatureSet, feature_set_id)
        assert feature_set is not None and (feature_set.status, feature_set.status_before_archive) == (PUBLISHED, None)
    again = await post(admin, f"/console/organisation/{delivery}/restore")
    assert again.status_code == 400 and "Sales / Delivery is not archived" in again.text


async def test_a_part_archived_before_stays_archived_when_its_parent_is_restored(
    admin: httpx.AsyncClient, db: Database, world: World
) -> None:
    sales, refunds = world.nodes["sales"], world.nodes["refunds"]
    assert (await post(admin, f"/console/organisation/{refunds}/archive")).status_code == 303
    clock.advance(5)
    assert (await post(admin, f"/console/organisation/{sales}/archive")).status_code == 303
    async with db.session() as session:
        feature_set = await session.get(FeatureSet, uuid.UUID(world.objects["feature_set_id"]))
        assert feature_set is not None and feature_set.status_before_archive == DRAFT
    assert (await post(admin, f"/console/organisation/{sales}/restore")).status_code == 303
    assert not await archived(db, world.nodes["returns"]) and await archived(db, refunds)


async def test_owners_see_and_change_only_below_their_own_node(app: Any, db: Database, world: World) -> None:
    sales, support, delivery = world.nodes["sales"], world.nodes["support"], world.nodes["delivery"]
    returns, refunds = world.nodes["returns"], world.nodes["refunds"]
    async with signed_in(app, world, "department_owner") as http:
        page = await http.get("/console/organisation")
        assert headings(page.text) == [(2, "Sales"), (3, "Delivery"), (4, "Returns"), (5, "Refunds")]
        assert "Add department" not in page.text and f'/console/organisation/new?parent={sales}">Add operation' in (
            page.text
        )
        assert f"/console/organisation/{sales}/rename" not in page.text
        assert f"/console/organisation/{delivery}/rename" in page.text
        assert "Support" not in (await http.get("/console/organisation/export.csv")).text
        # Their own node: seen, not changed (403 with the reason); anything outside: as if it did not exist.
        own = await http.get(f"/console/organisation/{sales}/rename")
        assert own.status_code == 403 and "it is the department you are responsible for" in own.text
        assert (await post(http, f"/console/organisation/{sales}/archive")).status_code == 403
        assert (await post(http, f"/console/organisation/{sales}/rename", name="Mine")).status_code == 403
        for path in (f"/console/organisation/{support}/rename", f"/console/organisation/{support}/archive"):
            assert (await http.get(path)).status_code == 404
        assert (await post(http, f"/console/organisation/{support}/archive")).status_code == 404
        assert (await http.get(f"/console/organisation/new?parent={support}")).status_code == 404
        department = await add(http, parent="", name="Shadow", choose="1")
        assert department.status_code == 400 and "only admins add departments" in department.text
        foreign = await add(http, parent=str(support), name="Shadow")
        assert foreign.status_code == 400 and "choose where to add it from the list" in foreign.text
        choose = await http.get("/console/organisation/new")
        assert '<optgroup label="New operation in">' in choose.text and str(support) not in choose.text
        added = await add(
            http, parent=str(sales), name="Telesales", calling_operation=await entry_id(db, "Delivery"), choose="1"
        )
        assert added.status_code == 303
        assert (await post(http, f"/console/organisation/{delivery}/rename", name="Deliveries")).status_code == 303
    async with signed_in(app, world, "operation_owner") as http:
        page = await http.get("/console/organisation")
        assert headings(page.text) == [(2, "Deliveries"), (3, "Returns"), (4, "Refunds")]
        assert (await http.get(f"/console/organisation/{delivery}/archive")).status_code == 403
        assert (await http.get(f"/console/organisation/{sales}/rename")).status_code == 404  # above: not visible
        assert (await add(http, parent=str(delivery), name="Claims")).status_code == 303
        assert (await add(http, parent=str(sales), name="X", choose="1")).status_code == 400
    async with signed_in(app, world, "process_owner") as http:
        page = await http.get("/console/organisation")
        assert headings(page.text) == [(2, "Returns"), (3, "Refunds")]
        assert f'href="/console/organisation/new?parent={returns}">Add sub-process</a>' in page.text
        assert (await http.get(f"/console/organisation/{returns}/rename")).status_code == 403
        assert (await http.get(f"/console/organisation/{delivery}/rename")).status_code == 404
        assert (await add(http, parent=str(returns), name="Night")).status_code == 303
        assert (await post(http, f"/console/organisation/{refunds}/archive")).status_code == 303
        assert (await post(http, f"/console/organisation/{refunds}/restore")).status_code == 303
    async with signed_in(app, world, "outsider") as http:
        page = await http.get("/console/organisation")
        assert headings(page.text) == [(2, "Support")]
        assert (await http.get(f"/console/organisation/{refunds}/rename")).status_code == 404


async def test_garbage_in_the_url_and_form_is_answered_without_errors(admin: httpx.AsyncClient, world: World) -> None:
    for path in (
        "/console/organisation/not-a-uuid/rename",
        "/console/organisation/not-a-uuid/archive",
        f"/console/organisation/{uuid.uuid4()}/rename",
    ):
        assert (await admin.get(path)).status_code == 404, path
    assert (await post(admin, "/console/organisation/%00/restore")).status_code == 404
    odd = await admin.get("/console/organisation?archived=<script>&page=-1")
    assert odd.status_code == 200 and "<script>" not in odd.text.split("<main", 1)[1]
    csrf = csrf_of((await admin.get("/console/organisation")).text)
    no_name = await admin.post("/console/organisation", data={"csrf_token": csrf})
    assert no_name.status_code == 400 and "department name must be between 1 and 100 characters" in no_name.text
