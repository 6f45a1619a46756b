"""The demo phone page is served from the package, self-contained and accessible (no browser needed here)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from callerid.app import create_app
from tests.conftest import make_settings


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # Serving static files needs no database, so no lifespan (and no SQLite/PostgreSQL parametrisation).
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", tmp_path / "data"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


class Elements(HTMLParser):
    """Every element's attributes, by id, plus the label targets and the assets the page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.tags: dict[str, str] = {}
        self.label_for: set[str] = set()
        self.assets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.by_id[str(attributes["id"])] = attributes
            self.tags[str(attributes["id"])] = tag
        if tag == "label" and attributes.get("for"):
            self.label_for.add(str(attributes["for"]))
        for name in ("src", "href"):
            if tag in ("script", "link", "img") and attributes.get(name):
                self.assets.append(str(attributes[name]))


async def test_page_is_served_with_its_controls(http: httpx.AsyncClient) -> None:
    response = await http.get("/phone")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    page = Elements()
    page.feed(response.text)
    # Its own two files, and an empty inline icon so that the browser does not ask for /favicon.ico.
    assert sorted(page.assets) == ["/phone/assets/phone.css", "/phone/assets/phone.js", "data:,"]
    # The registration form, the simulation form and the call screen's parts.
    for element_id in (
        "register-form", "phone-number", "platform", "app-version", "register", "registered", "forget",
        "simulate-form", "caller-number", "simulate-call", "connection", "incoming-call", "call-logo",
        "call-name", "call-verified", "call-reason", "call-number", "answer", "decline", "recent-calls",
        "verify-form", "code", "verify", "resend", "restart", "verify-error", "demo-sms", "demo-sms-code",
    ):  # fmt: skip
        assert element_id in page.by_id, element_id
    # Every form control has a visible label.
    for control in ("phone-number", "platform", "app-version", "caller-number", "code"):
        assert control in page.label_for, control
    # The code step (SMS code) and its development stand-in for the SMS wait hidden until the server asks.
    assert "hidden" in page.by_id["verify-form"] and "hidden" in page.by_id["demo-sms"]
    assert page.by_id["code"]["autocomplete"] == "one-time-code"
    assert page.by_id["code"]["inputmode"] == "numeric"
    assert page.by_id["phone-number"]["type"] == "tel"
    assert re.findall(r'<option value="(\w+)"', response.text) == ["android", "ios"]
    assert page.by_id["connection"]["role"] == "status"
    call = page.by_id["incoming-call"]
    assert call["role"] == "alertdialog"
    assert call["aria-modal"] == "true"
    assert call["aria-labelledby"] == "call-title"
    assert "hidden" in call
    assert page.by_id["call-announcer"]["aria-live"] == "assertive"
    assert page.tags["answer"] == page.tags["decline"] == "button"
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in response.text


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("phone.js", "text/javascript; charset=utf-8"), ("phone.css", "text/css; charset=utf-8")],
)
async def test_assets_are_served(http: httpx.AsyncClient, name: str, content_type: str) -> None:
    response = await http.get(f"/phone/assets/{name}")

    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == (Path(__file__).parents[2] / "src/callerid/phone_page/static" / name).read_bytes()


async def test_page_fetches_nothing_from_elsewhere(http: httpx.AsyncClient) -> None:
    for path in ("/phone", "/phone/assets/phone.js", "/phone/assets/phone.css"):
        text = (await http.get(path)).text
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), path
        assert "@import" not in text


@pytest.mark.parametrize("name", ["phone.html", "routes.py", "..%2Froutes.py", "nothing.js"])
async def test_only_the_two_assets_are_served(http: httpx.AsyncClient, name: str) -> None:
    response = await http.get(f"/phone/assets/{name}")

    assert response.status_code == 404
    assert response.json() == {"slug": "not-found", "message": "not found"}
