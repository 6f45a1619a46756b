"""Console fixtures: an account with its admin, a signed-in browser-like client, and the CSRF token of a page."""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from callerid.accounts import service as accounts
from callerid.config import Settings
from callerid.db import Database

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


def csrf_of(html: str) -> str:
    found = CSRF_INPUT.search(html) or CSRF_META.search(html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


@dataclass
class ConsoleAccount:
    account_id: uuid.UUID
    email: str
    password: str


async def create_console_account(db: Database, name: str = "Acme Flowers") -> ConsoleAccount:
    async with db.transaction() as session:
        created = await accounts.create_account(
            session, name=name, admin_email=f"admin-{uuid.uuid4().hex[:8]}@example.com"
        )
    return ConsoleAccount(created.account.id, created.admin_email, created.admin_password)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Console tests test webhooks against receivers on loopback, which the operator must allow.
    return {"webhook_allow_private": True}


@pytest.fixture
async def console_account(db: Database) -> ConsoleAccount:
    return await create_console_account(db)


def browser(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    """A client that keeps cookies like a browser (one per signed-in person)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.7", 50000))
    return httpx.AsyncClient(transport=transport, base_url=base_url, follow_redirects=False)


async def sign_in(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    form = await http.get("/console/sign-in")
    assert form.status_code == 200, form.text
    return await http.post(
        "/console/sign-in", data={"email": email, "password": password, "csrf_token": csrf_of(form.text), "next": ""}
    )


@pytest.fixture
async def admin(app: Any, console_account: ConsoleAccount) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as http:
        response = await sign_in(http, console_account.email, console_account.password)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/console"
        yield http


async def page_csrf(http: httpx.AsyncClient, path: str = "/console") -> str:
    response = await http.get(path)
    assert response.status_code == 200, response.text
    return csrf_of(response.text)


# --- a populated account: a tree, one member per role, and one object of each kind -------------------------


@dataclass
class Person:
    member_id: uuid.UUID
    email: str
    password: str
    role: str


@dataclass
class World:
    """An account as the console tests need it. ``people`` by role; ``objects`` by path parameter name."""

    account_id: uuid.UUID
    people: dict[str, Person]
    nodes: dict[str, uuid.UUID]
    objects: dict[str, str]


PASSWORD = "correct horse battery"


@functools.cache
def password_hash() -> str:
    """Argon2 is slow on purpose: hash the shared test password once per run."""
    from callerid.accounts.secrets import hash_password

    return hash_password(PASSWORD)


async def add_member(
    db: Database, account_id: uuid.UUID, role: str, scope_kind: str | None = None, scope_id: uuid.UUID | None = None
) -> Person:
    from callerid import clock
    from callerid.accounts.models import Member

    email = f"{role.replace('_', '-')}-{uuid.uuid4().hex[:6]}@example.com"
    member = Member(
        id=uuid.uuid4(),
        account_id=account_id,
        email=email,
        role=role,
        scope_kind=scope_kind,
        scope_id=scope_id,
        password_hash=password_hash(),
        status="active",
        two_factor=False,
        failure_emails=role == "admin",
        invited_by_email="",
        created_at=clock.now(),
    )
    async with db.transaction() as session:
        session.add(member)
    return Person(member.id, email, PASSWORD, role)


async def build_world(db: Database, settings: Settings, name: str) -> World:
    """Tree: Sales > Delivery (operation) > Returns (process) > Refunds (sub-process), and Support (department)."""
    from sqlalchemy import select

    from callerid import clock
    from callerid.accounts.models import Member
    from callerid.labels import service as labels
    from callerid.numbers import service as numbers
    from callerid.webhooks import service as webhooks
    from callerid.webhooks.models import RetryRun
    from tests.labels.images import image_bytes

    console = await create_console_account(db, name)
    async with db.transaction() as session:
        sales = await numbers.create_department(session, account_id=console.account_id, name="Sales")
        support = await numbers.create_department(session, account_id=console.account_id, name="Support")
        delivery, _ = await numbers.create_operation(
            session,
            account_id=console.account_id,
            department_id=sales.id,
            name="Delivery",
            calling_operation_name="Delivery",
        )
        returns = await numbers.create_process(
            session, account_id=console.account_id, operation_id=delivery.id, name="Returns"
        )
        refunds = await numbers.create_process(
            session, account_id=console.account_id, operation_id=delivery.id, name="Refunds", parent_id=returns.id
        )
        admin_id = await session.scalar(select(Member.id).where(Member.account_id == console.account_id))
        key = await accounts.create_api_key(session, settings, account_id=console.account_id, name="backend")
        label = await labels.create_label(
            session, settings, account_id=console.account_id, name="Acme Label", logo=image_bytes()
        )
        # In every owner's subtree (Sales > Delivery > Returns), so each role may open its pages.
        feature_set = await numbers.create_feature_set(
            session, account_id=console.account_id, process_id=returns.id, label_id=label.id, name="Returns line"
        )
        hook = await webhooks.create_webhook(
            session,
            settings,
            account_id=console.account_id,
            name="Orders",
            url="http://127.0.0.1:9/hook",
            events="cmb,user_feedback",
        )

        event_ids = await webhooks.emit_event(
            session, account_id=console.account_id, event_type="cmb", created_at=clock.now(), body={}
        )
        run = RetryRun(
            id=uuid.uuid4(),
            account_id=console.account_id,
            since=clock.now(),
            event_ids=[str(e) for e in event_ids],
            created_by_email=console.email,
            created_at=clock.now(),
        )
        session.add(run)
        # A finished listing job of the feature set with no numbers (its progress page; no number is listed).
        from callerid.numbers.models import JOB_DONE, LIST, NumberJob

        number_job = NumberJob(
            id=uuid.uuid4(),
            account_id=console.account_id,
            feature_set_id=feature_set.id,
            action=LIST,
            numbers=[],
            created_by_email=console.email,
            status=JOB_DONE,
            created_at=clock.now(),
            finished_at=clock.now(),
        )
        session.add(number_job)
    assert admin_id is not None
    batch_id, record_ref = await add_batch(db, console.account_id, label.id)
    people = {
        "admin": Person(admin_id, console.email, console.password, "admin"),
        "department_owner": await add_member(db, console.account_id, "department_owner", "department", sales.id),
        "operation_owner": await add_member(db, console.account_id, "operation_owner", "operation", delivery.id),
        "process_owner": await add_member(db, console.account_id, "process_owner", "process", returns.id),
    }
    outsider = await add_member(db, console.account_id, "department_owner", "department", support.id)
    return World(
        account_id=console.account_id,
        people={**people, "outsider": outsider},
        nodes={
            "sales": sales.id,
            "support": support.id,
            "delivery": delivery.id,
            "returns": returns.id,
            "refunds": refunds.id,
        },
        objects={
            "entry": str(key.key.id),
            "label_id": str(label.id),
            "webhook_id": str(hook.webhook.id),
            "event_id": str(event_ids[0]),
            "run_id": str(run.id),
            "member": str(people["process_owner"].member_id),
            "feature_set_id": str(feature_set.id),
            "job_id": str(number_job.id),
            # Below every owner's node (Sales > Delivery > Returns > Refunds): each role may rename and archive it.
            "node_id": str(refunds.id),
            # A B2 batch of one record (call activity pages).
            "batch_id": str(batch_id),
            "record": str(record_ref),
        },
    )


async def add_batch(db: Database, account_id: uuid.UUID, label_id: uuid.UUID) -> tuple[uuid.UUID, int]:
    """A B2 batch of one valid record, through the service the API uses; its id and its record's console id."""
    from datetime import timedelta

    from sqlalchemy import select

    from callerid import clock
    from callerid.personalisation import service as personalisation
    from callerid.personalisation.models import CallBatch, first_id

    now_ms = personalisation.epoch_ms(clock.now())
    record = {
        "label_id": str(label_id),
        "caller_number": "911234567890",
        "receiver_number": "919876543210",
        "starts_at": now_ms,
        "ends_at": now_ms + int(timedelta(hours=1).total_seconds() * 1000),
    }
    batch_id = await personalisation.submit_v2_batch(db, account_id, [record])
    async with db.session() as session:
        key = await session.scalar(select(CallBatch.key).where(CallBatch.id == batch_id))
    assert key is not None
    return batch_id, first_id(key)


__all__ = ["ConsoleAccount", "Settings", "browser", "csrf_of", "page_csrf", "sign_in"]
