"""Console fixtures: an account with its admin, a signed-in browser-like client, and the CSRF token of a page."""

from __future__ import annotations

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
async def console_account(db: Database) -> ConsoleAccount:
    return await create_console_account(db)


def browser(app: Any) -> httpx.AsyncClient:
    """A client that keeps cookies like a browser (one per signed-in person)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.7", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", follow_redirects=False)


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


__all__ = ["ConsoleAccount", "Settings", "browser", "csrf_of", "page_csrf", "sign_in"]
