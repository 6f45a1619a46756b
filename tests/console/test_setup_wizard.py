"""The first-run setup: an empty account's admin goes calling operation -> process -> feature set -> label -> numbers
-> done, ending on the feature set's page; every step can be skipped; the progress is the account's (another
session carries on); bad input is answered next to its field with what was typed kept; owners are refused; another
account's objects are never offered nor accepted; an object archived elsewhere makes its step to do again."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from callerid.accounts import members
from callerid.accounts.models import Member
from callerid.db import Database
from callerid.labels import catalogue
from callerid.labels.models import Label
from callerid.numbers import calling_operations, organisation
from callerid.numbers.models import BusinessNumber, CallingOperation, Department, FeatureSet, Operation, Process
from callerid.setup.models import SetupProgress
from tests.console.conftest import (
    ConsoleAccount,
    World,
    add_member,
    browser,
    build_world,
    csrf_of,
    page_csrf,
    sign_in,
)
from tests.labels.images import image_bytes

CURRENT = re.compile(r'<li class="setup-step[^"]*" aria-current="step">\s*<a href="([^"]+)"')


def step_of(html: str) -> str:
    """``Step 2 of 5`` and the step marked current in the ordered list, which must agree."""
    found = re.search(r"Step (\d) of 5", html)
    current = CURRENT.search(html)
    assert current is not None
    if found is None:
        assert current.group(1) == "/console/setup/done"
        return "done"
    return current.group(1).rsplit("/", 1)[1]


async def post(http: httpx.AsyncClient, path: str, data: dict[str, str], **extra: Any) -> httpx.Response:
    csrf = await page_csrf(http, "/console/setup")
    return await http.post(path, data={"csrf_token": csrf, **data}, **extra)


async def entry_id(db: Database, name: str) -> str:
    """The catalogue entry's id (the test database is built without the migration that seeds the catalogue)."""
    async with db.transaction() as session:
        found = await session.scalar(select(CallingOperation.id).where(CallingOperation.name == name))
        if found is None:
            found = (await calling_operations.add_calling_operation(session, name)).id
    return str(found)


async def category_pair(db: Database) -> tuple[str, str]:
    async with db.session() as session:
        loaded = await catalogue.load_catalogue(session)
    category = next(c for c in loaded.categories if c.sub_categories)
    return str(category.id), str(category.sub_categories[0].id)


async def label_form(db: Database, name: str = "Acme Returns") -> dict[str, str]:
    category, sub = await category_pair(db)
    return {"name": name, "label_type": "static", "category": category, "sub_category": sub}


def logo(size: tuple[int, int] = (200, 200)) -> dict[str, tuple[str, bytes, str]]:
    return {"logo": ("logo.png", image_bytes(size), "image/png")}


async def count(db: Database, model: Any, *where: Any) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_an_empty_account_is_led_from_calling_operation_to_listed_numbers(
    db: Database, admin: httpx.AsyncClient, console_account: ConsoleAccount
) -> None:
    account = console_account.account_id
    home = await admin.get("/console")
    assert 'href="/console/setup">Set up your account</a>' in home.text

    first = await admin.get("/console/setup")
    assert first.status_code == 200
    assert step_of(first.text) == "operation" and "Step 1 of 5" in first.text
    assert "Skip this step" in first.text and "<h1>Calling operation</h1>" in first.text
    delivery = await entry_id(db, "Delivery")
    response = await post(
        admin,
        "/console/setup/operation",
        {"department": "Sales", "operation": "Home delivery", "calling_operation": delivery},
    )
    assert (response.status_code, response.headers["location"]) == (303, "/console/setup")
    async with db.session() as session:
        operation = await session.scalar(select(Operation).where(Operation.account_id == account))
    assert (
        operation is not None and operation.name == "Home delivery" and str(operation.calling_operation_id) == delivery
    )
    assert 'href="/console/setup">Continue setting up</a>' in (await admin.get("/console")).text

    second = await admin.get("/console/setup")
    assert step_of(second.text) == "process"
    assert f'<option value="{operation.id}" selected>Sales / Home delivery</option>' in second.text
    response = await post(admin, "/console/setup/process", {"operation": str(operation.id), "name": "Returns"})
    assert response.status_code == 303
    async with db.session() as session:
        process = await session.scalar(select(Process).where(Process.account_id == account))
    assert process is not None and process.name == "Returns" and process.operation_id == operation.id

    third = await admin.get("/console/setup")
    assert step_of(third.text) == "feature-set"
    draft = {"process": str(process.id), "name": "", "description": "Returns desk", "call_reason": "About your return"}
    response = await post(admin, "/console/setup/feature-set", draft)
    assert response.status_code == 303
    assert await count(db, FeatureSet, FeatureSet.account_id == account) == 0  # a draft until it has a label

    fourth = await admin.get("/console/setup")
    assert step_of(fourth.text) == "label"
    assert "Create label and feature set" in fourth.text
    response = await admin.post(
        "/console/setup/label",
        data={"csrf_token": csrf_of(fourth.text), **await label_form(db)},
        files=logo(),
    )
    assert response.status_code == 303, response.text
    async with db.session() as session:
        feature_set = await session.scalar(select(FeatureSet).where(FeatureSet.account_id == account))
        label = await session.scalar(select(Label).where(Label.account_id == account))
    assert feature_set is not None and label is not None
    assert (feature_set.name, feature_set.description, feature_set.label_id) == (
        "New Feature Set-1",
        "Returns desk",
        label.id,
    )
    assert feature_set.process_id == process.id and label.label_type == "static"
    assert 'id="setup-title"' not in (await admin.get("/console")).text  # the account has a feature set now

    fifth = await admin.get("/console/setup")
    assert step_of(fifth.text) == "numbers"
    numbers = "+919876500001\n919876500002\nnot-a-number\n919876500002"
    preview = await post(admin, "/console/setup/numbers/preview", {"numbers": numbers})
    assert preview.status_code == 200, preview.text
    assert "Preview: Append on New Feature Set-1" in preview.text and "List 2 numbers" in preview.text
    assert "not-a-number" in preview.text
    assert await count(db, BusinessNumber, BusinessNumber.account_id == account) == 0  # nothing written yet
    carried = re.search(r'name="numbers" value="([^"]*)"', preview.text)
    assert carried is not None
    confirm = await admin.post(
        "/console/setup/numbers", data={"csrf_token": csrf_of(preview.text), "numbers": carried.group(1)}
    )
    assert (confirm.status_code, confirm.headers["location"]) == (303, "/console/setup/done")
    assert await count(db, BusinessNumber, BusinessNumber.feature_set_id == feature_set.id) == 2

    done = await admin.get("/console/setup")
    assert step_of(done.text) == "done"
    assert "Your account is set up" in done.text and "Finish: go to New Feature Set-1" in done.text
    assert "Listing 2 numbers" in done.text  # the listing job's progress, as on Manage listing
    finish = await post(admin, "/console/setup/finish", {})
    assert (finish.status_code, finish.headers["location"]) == (303, f"/console/feature-sets/{feature_set.id}")
    async with db.session() as session:
        row = await session.get(SetupProgress, account)
    assert row is not None and row.finished_at is not None


async def test_each_step_answers_bad_input_next_to_its_field_and_keeps_what_was_typed(
    db: Database, admin: httpx.AsyncClient, console_account: ConsoleAccount
) -> None:
    account = console_account.account_id
    delivery = await entry_id(db, "Delivery")
    # Step 1: the operation is refused, so the new department is not left behind either.
    response = await post(
        admin, "/console/setup/operation", {"department": "Ops", "operation": "Home delivery", "calling_operation": ""}
    )
    assert response.status_code == 400
    assert '<p class="error" id="calling_operation-error">choose a calling operation from the list</p>' in response.text
    assert 'value="Ops"' in response.text and 'value="Home delivery"' in response.text
    assert await count(db, Department, Department.account_id == account) == 0
    response = await post(
        admin, "/console/setup/operation", {"department": " ", "operation": "X", "calling_operation": delivery}
    )
    assert response.status_code == 400
    assert 'id="department-error">department name must be between 1 and 100 characters' in response.text
    response = await post(
        admin, "/console/setup/operation", {"department": "Ops", "operation": "", "calling_operation": delivery}
    )
    assert 'id="operation-error">operation name must be between 1 and 100 characters' in response.text
    assert await count(db, Department, Department.account_id == account) == 0
    response = await post(admin, "/console/setup/operation", {"action": "pick", "existing_operation": "nope"})
    assert response.status_code == 400 and 'id="existing_operation-error">choose an operation' in response.text
    assert step_of((await admin.get("/console/setup")).text) == "operation"

    ok = {"department": "Ops", "operation": "Home delivery", "calling_operation": delivery}
    assert (await post(admin, "/console/setup/operation", ok)).status_code == 303
    # Step 2.
    response = await post(admin, "/console/setup/process", {"operation": str(uuid.uuid4()), "name": "Returns"})
    assert response.status_code == 400 and 'id="operation-error">choose an operation from the list' in response.text
    assert 'value="Returns"' in response.text
    async with db.session() as session:
        operation_id = await session.scalar(select(Operation.id).where(Operation.account_id == account))
    response = await post(admin, "/console/setup/process", {"operation": str(operation_id), "name": "x" * 101})
    assert 'id="name-error">process name must be between 1 and 100 characters' in response.text
    assert (
        await post(admin, "/console/setup/process", {"operation": str(operation_id), "name": "Returns"})
    ).is_redirect
    # Step 3: the rules of numbers.tree, before any label exists.
    async with db.session() as session:
        process_id = str(await session.scalar(select(Process.id).where(Process.account_id == account)))
    draft = {"process": process_id, "name": "Returns line", "description": "d", "call_reason": "Hi!"}
    response = await post(admin, "/console/setup/feature-set", draft)
    assert response.status_code == 400
    assert 'id="call_reason-error">call_reason must be between 10 and 100 characters' in response.text
    assert 'value="Returns line"' in response.text and 'value="Hi!"' in response.text
    response = await post(admin, "/console/setup/feature-set", {**draft, "call_reason": "Pickup of your return!"})
    assert 'id="call_reason-error">call_reason contains unsupported special characters' in response.text
    response = await post(admin, "/console/setup/feature-set", {**draft, "call_reason": "", "description": "d" * 501})
    assert 'id="description-error">description must be at most 500 characters' in response.text
    response = await post(admin, "/console/setup/feature-set", {**draft, "call_reason": "", "process": "1"})
    assert 'id="process-error">choose a process from the list' in response.text
    assert step_of((await admin.get("/console/setup")).text) == "feature-set"
    assert (await post(admin, "/console/setup/feature-set", {**draft, "call_reason": ""})).is_redirect
    # Step 4: the Caller ID page's rules; nothing is created on a refusal.
    form = await label_form(db)
    csrf = await page_csrf(admin, "/console/setup")
    response = await admin.post("/console/setup/label", data={"csrf_token": csrf, **form})
    assert response.status_code == 400 and 'id="logo-error">logo is required' in response.text
    assert 'value="Acme Returns"' in response.text
    response = await admin.post("/console/setup/label", data={"csrf_token": csrf, **form}, files=logo((100, 100)))
    assert response.status_code == 400 and 'id="logo-error">logo must be exactly 200x200 pixels' in response.text
    response = await admin.post(
        "/console/setup/label", data={"csrf_token": csrf, **form, "category": "abc"}, files=logo()
    )
    assert 'id="category-error">category must be chosen from the list' in response.text
    response = await admin.post("/console/setup/label", data={"csrf_token": csrf, **form, "name": "A"}, files=logo())
    assert response.status_code == 400 and 'id="name-error">' in response.text
    response = await post(admin, "/console/setup/label", {"action": "pick", "existing_label": str(uuid.uuid4())})
    assert response.status_code == 400 and 'id="existing_label-error">choose a label from the list' in response.text
    assert await count(db, Label, Label.account_id == account) == 0
    assert await count(db, FeatureSet, FeatureSet.account_id == account) == 0
    response = await admin.post("/console/setup/label", data={"csrf_token": csrf, **form}, files=logo())
    assert response.status_code == 303
    # Step 5: Manage listing's checks.
    response = await post(admin, "/console/setup/numbers/preview", {"numbers": ""})
    assert response.status_code == 400 and 'id="numbers-error">phone_numbers is required' in response.text
    response = await post(admin, "/console/setup/numbers", {"numbers": ""})
    assert response.status_code == 400 and "phone_numbers" in response.text
    assert step_of((await admin.get("/console/setup")).text) == "numbers"


async def test_skipping_every_step_ends_on_home_and_another_session_carries_on(
    app: Any, db: Database, admin: httpx.AsyncClient, console_account: ConsoleAccount
) -> None:
    response = await post(admin, "/console/setup/skip", {"step": "operation"})
    assert (response.status_code, response.headers["location"]) == (303, "/console/setup")
    assert step_of((await admin.get("/console/setup")).text) == "process"
    response = await post(admin, "/console/setup/skip", {"step": "nope"})
    assert response.status_code == 400

    # Another admin, in another browser, continues where the first stopped.
    other = await add_member(db, console_account.account_id, "admin")
    async with browser(app) as second:
        assert (await sign_in(second, other.email, other.password)).status_code == 303
        assert 'href="/console/setup">Continue setting up</a>' in (await second.get("/console")).text
        assert step_of((await second.get("/console/setup")).text) == "process"
        for step in ("process", "feature_set", "label"):
            assert (await post(second, "/console/setup/skip", {"step": step})).status_code == 303
    page = await admin.get("/console/setup")
    assert step_of(page.text) == "numbers"
    assert "the setup has not created one" in page.text
    assert (await post(admin, "/console/setup/skip", {"step": "numbers"})).status_code == 303
    done = await admin.get("/console/setup")
    assert step_of(done.text) == "done" and "No feature set was created" in done.text
    finish = await post(admin, "/console/setup/finish", {})
    assert (finish.status_code, finish.headers["location"]) == (303, "/console")
    home = await admin.get("/console")
    assert "Continue setting up" in home.text
    assert "Left to do: Calling operation, Process, Feature set, Caller-ID label, List numbers." in home.text

    # Start again: step 1, nothing skipped; dismiss: Home stops offering it.
    assert (await post(admin, "/console/setup/start-again", {})).status_code == 303
    assert step_of((await admin.get("/console/setup")).text) == "operation"
    dismissed = await post(admin, "/console/setup/dismiss", {})
    assert (dismissed.status_code, dismissed.headers["location"]) == (303, "/console")
    assert 'id="setup-title"' not in (await admin.get("/console")).text
    assert (await admin.get("/console/setup")).status_code == 200  # still there when asked for


@pytest.fixture
async def worlds(db: Database, settings: Any) -> tuple[World, World]:
    return await build_world(db, settings, "Acme"), await build_world(db, settings, "Other Co")


@pytest.fixture
async def world_admin(app: Any, worlds: tuple[World, World]) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as http:
        person = worlds[0].people["admin"]
        assert (await sign_in(http, person.email, person.password)).status_code == 303
        yield http


@pytest.mark.parametrize("role", ["department_owner", "operation_owner", "process_owner"])
async def test_owners_are_refused(app: Any, db: Database, worlds: tuple[World, World], role: str) -> None:
    mine, _ = worlds
    async with browser(app) as http:
        person = mine.people[role]
        assert (await sign_in(http, person.email, person.password)).status_code == 303
        home = await http.get("/console")
        assert "/console/setup" not in home.text
        assert (await http.get("/console/setup")).status_code == 403
        response = await http.post("/console/setup/skip", data={"csrf_token": csrf_of(home.text), "step": "operation"})
        assert response.status_code == 403
    async with db.session() as session:
        assert await session.get(SetupProgress, mine.account_id) is None


async def test_another_accounts_objects_are_never_offered_nor_accepted(
    db: Database, world_admin: httpx.AsyncClient, worlds: tuple[World, World]
) -> None:
    mine, theirs = worlds
    http = world_admin
    their_ids = [str(theirs.nodes["delivery"]), str(theirs.nodes["returns"]), theirs.objects["label_id"]]
    for path, own in (("operation", "delivery"), ("process", "returns"), ("feature-set", "refunds")):
        shown = (await http.get(f"/console/setup/{path}")).text
        assert str(mine.nodes[own]) in shown
        assert not any(their in shown for their in their_ids), path
    label_page = (await http.get("/console/setup/label")).text
    assert mine.objects["label_id"] in label_page and theirs.objects["label_id"] not in label_page

    refused = [
        ("/console/setup/operation", {"action": "pick", "existing_operation": str(theirs.nodes["delivery"])}),
        ("/console/setup/process", {"action": "pick", "existing_process": str(theirs.nodes["returns"])}),
        ("/console/setup/process", {"operation": str(theirs.nodes["delivery"]), "name": "Sneaky"}),
        ("/console/setup/feature-set", {"process": str(theirs.nodes["returns"]), "name": "x", "description": ""}),
        ("/console/setup/label", {"action": "pick", "existing_label": theirs.objects["label_id"]}),
    ]
    for path, data in refused:
        response = await post(http, path, data)
        assert response.status_code == 400, path
        assert "from the list" in response.text
    assert await count(db, Process, Process.name == "Sneaky") == 0
    async with db.session() as session:
        assert await session.get(SetupProgress, mine.account_id) is None
    # A world admin's account has a feature set: Home offers no setup.
    assert 'id="setup-title"' not in (await http.get("/console")).text


async def test_an_object_archived_elsewhere_makes_its_step_to_do_again(
    db: Database, world_admin: httpx.AsyncClient, worlds: tuple[World, World]
) -> None:
    mine, _ = worlds
    http = world_admin
    picked = await post(
        http, "/console/setup/operation", {"action": "pick", "existing_operation": str(mine.nodes["delivery"])}
    )
    assert picked.status_code == 303
    support = await post(
        http,
        "/console/setup/operation",
        {"department": "Support", "operation": "Help", "calling_operation": await entry_id(db, "Sales")},
    )
    assert support.status_code == 303  # the department of that name in use is reused, not duplicated
    assert await count(db, Department, Department.account_id == mine.account_id, Department.name == "Support") == 1
    async with db.session() as session:
        help_id = await session.scalar(select(Operation.id).where(Operation.name == "Help"))
    assert step_of((await http.get("/console/setup")).text) == "process"
    async with db.transaction() as session:
        admin_member = await session.get(Member, mine.people["admin"].member_id)
        assert admin_member is not None and help_id is not None
        actor = await members.actor_of(session, admin_member)
        await organisation.archive_node(session, actor, mine.nodes["support"])
    page = await http.get("/console/setup")
    assert step_of(page.text) == "operation"
    assert str(help_id) not in page.text  # archived: no longer offered
