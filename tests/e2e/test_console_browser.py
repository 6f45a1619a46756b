"""The console in headless Chromium against a real ``callerid serve``: an admin's journey (sign in, create an API key
and download it, create a label with a logo, create a webhook, test it, see the event, resend it, rotate the secret,
invite an owner) and the invited owner's (set a password, see only what the role allows), on a phone screen and a
desktop. Elements are found by role and accessible name, which also checks that the pages are labelled.

Screenshots of every page at 360x800 and 1280x800 go to ``test-artifacts/console-*.png``.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.e2e.serving import ARTIFACTS, SKIP_REASON, Server
from tests.e2e.test_phone_browser import logo_png
from tests.webhooks.receiver import Receiver

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]
UI_TIMEOUT_MS = 15_000
PHONE = {"width": 360, "height": 800}
DESKTOP = {"width": 1280, "height": 800}
OWNER_EMAIL = "owner@flowers.test"
OWNER_PASSWORD = "sales owner password"
# Every visible form control has a label (its accessible name comes from it); nothing sticks out sideways.
PAGE_CHECK = """() => {
    const unlabelled = [...document.querySelectorAll('input, select, textarea')]
        .filter((el) => el.type !== 'hidden' && el.offsetParent !== null)
        .filter((el) => el.labels === null || el.labels.length === 0)
        .map((el) => el.name || el.id);
    return {unlabelled, overflow: document.documentElement.scrollWidth > window.innerWidth};
}"""


@pytest.fixture(scope="module")
def server(console_server: Server) -> Server:
    return console_server


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    running = await Receiver().start()
    yield running
    await running.stop()


@pytest.fixture(scope="module")
def account(server: Server) -> dict[str, Any]:
    created = server.cli("accounts", "create", "--name", "Flower Era", "--admin-email", "admin@flowers.test")
    assert created["console_url"] == f"{server.base}/console"
    sales = server.cli("departments", "create", "--account", created["client_account_id"], "--name", "Sales")
    return {**created, "sales_id": sales["id"]}


async def open_page(chromium: Any, viewport: dict[str, int]) -> tuple[Any, Any, list[str]]:
    context = await chromium.new_context(viewport=viewport, accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    problems: list[str] = []
    # A Content-Security-Policy refusal, a script error or a missing file all land here.
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return context, page, problems


async def check_page(page: Any) -> None:
    result = await page.evaluate(PAGE_CHECK)
    assert result == {"unlabelled": [], "overflow": False}, (page.url, result)


async def screenshots(page: Any, name: str) -> None:
    """The current page at both sizes, each checked for labels and sideways overflow."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for size in (PHONE, DESKTOP):
        await page.set_viewport_size(size)
        await check_page(page)
        await page.screenshot(path=str(ARTIFACTS / f"console-{name}-{size['width']}.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)


async def wait_for(predicate: Any, what: str, seconds: float = 20) -> None:
    """Wait for another process (the server's job runner) to have done something; bounded."""
    for _ in range(int(seconds * 10)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_admin_journey(
    chromium: Any, server: Server, account: dict[str, Any], receiver: Receiver, tmp_path: Path
) -> None:
    context, page, problems = await open_page(chromium, DESKTOP)

    # Signed out: / leads to the sign-in page; the first Tab reaches the skip link.
    await page.goto(server.base + "/")
    assert page.url == f"{server.base}/console/sign-in"
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    await screenshots(page, "sign-in")
    await page.get_by_label("Email").fill(account["admin_email"])
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("Email or password is incorrect").wait_for()
    await page.get_by_label("Password").fill(account["admin_password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Flower Era").wait_for()
    await screenshots(page, "home-new-account")
    # A page under 100 KB transferred, everything from this server.
    weight = await page.evaluate(
        """() => performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
            .reduce((sum, entry) => sum + entry.encodedBodySize, 0)"""
    )
    assert weight < 100_000
    hosts = await page.evaluate("() => performance.getEntriesByType('resource').map((e) => new URL(e.name).host)")
    assert set(hosts) <= {f"127.0.0.1:{server.port}"}

    # API keys: create, the pair shown once with a download; the pair mints a token.
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="API keys").click()
    assert str(account["client_account_id"]) in await page.locator("main").inner_text()
    await page.get_by_role("link", name="Create API key").first.click()
    await page.get_by_label("Name", exact=True).fill("backend")
    await page.get_by_label("Number management").select_option("read")
    await page.get_by_role("button", name="Create API key").click()
    await page.get_by_role("heading", name="API key created").wait_for()
    await screenshots(page, "api-key-created")
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download callerid-api-key-backend.json").click()
    download = await download_info.value
    saved = tmp_path / "key.json"
    await download.save_as(saved)
    pair = json.loads(saved.read_text())
    assert pair["client_account_id"] == account["client_account_id"] and pair["name"] == "backend"
    async with httpx.AsyncClient(base_url=server.base) as http:
        minted = await http.post(
            f"/clients/{pair['client_account_id']}/token",
            json={"key_id": pair["key_id"], "api_key": pair["api_key"]},
            headers={"X-Public-Access": "allow"},
        )
    assert minted.status_code == 200
    await page.get_by_role("link", name="I have saved it").click()
    listing = await page.locator("main").inner_text()
    assert pair["key_id"] in listing and pair["api_key"] not in listing
    await screenshots(page, "api-keys")

    # Caller ID: a label with its logo, from the catalogue.
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Caller ID").click()
    await page.get_by_role("link", name="Create label").first.click()
    await screenshots(page, "label-new")
    await page.get_by_label("Name", exact=True).fill("Flower Era")
    await page.get_by_label("Logo").set_input_files(
        files=[{"name": "logo.png", "mimeType": "image/png", "buffer": logo_png()}]
    )
    await page.get_by_label("Category", exact=True).select_option("10")
    # htmx narrows the sub-categories to the category's own (5 and the prompt).
    await page.wait_for_function("() => document.querySelectorAll('#sub_category option').length === 6")
    await page.get_by_label("Sub-category").select_option("142")
    await page.get_by_role("button", name="Create label").click()
    await page.get_by_role("heading", name="Flower Era").wait_for()
    await page.wait_for_function("() => document.querySelector('img.logo-large').complete")
    logo = await page.evaluate(
        """() => { const img = document.querySelector('img.logo-large');
                   return [img.complete, img.naturalWidth, img.getBoundingClientRect().width]; }"""
    )
    assert logo == [True, 200, 96]
    await screenshots(page, "label")
    await page.get_by_role("link", name="← Caller ID").click()
    await screenshots(page, "labels")

    # Webhooks: create, secret once, test, the event, resend, rotate.
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Webhooks").click()
    await screenshots(page, "webhooks-empty")
    await page.get_by_role("link", name="Create webhook").first.click()
    await page.get_by_label("Name", exact=True).fill("Orders")
    await page.get_by_label("URL").fill(receiver.url)
    await page.get_by_role("button", name="Create webhook").click()
    await page.get_by_role("heading", name="Webhook created").wait_for()
    first_secret = await page.locator(".secret-values code").inner_text()
    assert first_secret.startswith("whsec_")
    await page.get_by_role("link", name="I have saved it").click()
    await page.get_by_role("heading", name="Orders").wait_for()
    await page.get_by_label("Event type").select_option("user_feedback")
    await page.get_by_role("button", name="Send test event").click()  # htmx: the answer swaps in below
    result = page.locator("#test-result")
    await result.get_by_text("Delivered").wait_for()
    assert "HTTP 200" in await result.inner_text()
    assert len(receiver.requests) == 1
    await page.locator("#recent-events").get_by_role("link", name="User feedback (test)").wait_for()
    await screenshots(page, "webhook-tested")
    await result.get_by_role("link", name="See it in the event log").click()
    await page.get_by_role("heading", name="User feedback event (test)").wait_for()
    await page.get_by_role("button", name="Resend event").click()
    await page.get_by_text("Event queued to be sent again").wait_for()
    await wait_for(lambda: len(receiver.requests) == 2, "the resent event to arrive")
    assert receiver.requests[1].headers["webhook-id"] == receiver.requests[0].headers["webhook-id"]
    for _ in range(50):  # the server writes the attempt just after the receiver answered
        await page.reload()
        if await page.locator("table tbody tr").count() == 2:
            break
        await asyncio.sleep(0.1)
    assert await page.locator("table tbody tr").count() == 2
    await screenshots(page, "event")
    await page.get_by_role("link", name="← Webhook events").click()
    await screenshots(page, "events")
    await page.goto(server.base + "/console/webhooks")
    await page.get_by_role("link", name="Orders").click()
    await page.get_by_role("link", name="Rotate secret").click()
    await page.get_by_role("button", name="Rotate secret").click()
    await page.get_by_role("heading", name="Signing secret rotated").wait_for()
    assert await page.locator(".secret-values code").inner_text() != first_secret
    await page.get_by_role("link", name="I have saved it").click()
    await page.get_by_text("The previous secret also signs deliveries until").wait_for()

    # Members: invite a Department Owner for Sales.
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Members").click()
    await page.get_by_role("link", name="Invite member").click()
    await page.get_by_label("Email").fill(OWNER_EMAIL)
    await page.get_by_label("Role").select_option("department_owner")
    # htmx narrows "Responsible for" to departments: Sales and the prompt.
    await page.wait_for_function("() => document.querySelectorAll('#scope option').length === 2")
    await page.get_by_label("Responsible for").select_option(account["sales_id"])
    await screenshots(page, "invite")
    await page.get_by_role("button", name="Send invitation").click()
    await page.get_by_text(f"Invitation sent to {OWNER_EMAIL}").wait_for()
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Members").click()
    await screenshots(page, "members")
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Settings").click()
    await screenshots(page, "settings")
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Home").click()
    await screenshots(page, "home")
    # Chromium logs the 400 of the wrong password; nothing else went wrong (no script error, no refusal by the
    # Content-Security-Policy, no missing file).
    assert problems == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    await context.close()


async def test_owner_journey(chromium: Any, server: Server, account: dict[str, Any]) -> None:
    mails = server.cli("mail", "outbox", "--to", OWNER_EMAIL)["mails"]
    link = re.search(r"(http://\S+/console/invitation/\S+)", mails[0]["body"])
    assert link is not None, "the admin journey invites the owner first"
    context, page, problems = await open_page(chromium, PHONE)
    await page.goto(link.group(1))
    await page.get_by_role("heading", name="Join Flower Era").wait_for()
    await screenshots(page, "invitation")
    await page.set_viewport_size(PHONE)
    await page.get_by_label("Password", exact=True).fill(OWNER_PASSWORD)
    await page.get_by_label("Confirm password").fill(OWNER_PASSWORD)
    await page.get_by_role("button", name="Set password and sign in").click()
    await page.get_by_text("Welcome to callerid: your password is set").wait_for()
    await page.get_by_text("You are Department Owner of Sales").wait_for()

    # On a phone the navigation sits behind the menu button; it shows only what the role may use.
    navigation = page.get_by_role("navigation", name="Console")
    assert not await navigation.is_visible()
    await page.get_by_role("button", name="Menu").click()
    assert await navigation.is_visible()
    assert await page.get_by_role("button", name="Menu").get_attribute("aria-expanded") == "true"
    links = await navigation.get_by_role("link").all_inner_texts()
    assert links == [
        "Home",
        "Organisation",
        "Caller ID",
        "Feature sets",
        "Numbers",
        "Call activity",
        "Analytics",
        "Members",
        "Settings",
    ]
    await page.screenshot(path=str(ARTIFACTS / "console-owner-menu-phone.png"), full_page=True)
    await navigation.get_by_role("link", name="Members").click()
    rows = await page.locator("main table tbody tr").all_inner_texts()
    assert len(rows) == 1 and OWNER_EMAIL in rows[0] and "Sales" in rows[0]
    await screenshots(page, "owner-members")
    await page.goto(server.base + "/console/caller-id")
    assert "Flower Era" in await page.locator("main").inner_text()
    assert await page.get_by_role("link", name="Create label").count() == 0  # labels are for admins to create
    response = await page.goto(server.base + "/console/api-keys")
    assert response is not None and response.status == 403
    await page.get_by_role("heading", name="Not allowed").wait_for()
    await screenshots(page, "owner-forbidden")
    # Chromium logs the 403 it was shown; nothing else went wrong.
    assert problems == ["Failed to load resource: the server responded with a status of 403 (Forbidden)"]
    await context.close()


def test_screenshots_have_the_sizes_asked_for() -> None:
    shots = sorted(ARTIFACTS.glob("console-*-360.png"))
    assert len(shots) >= 10
    for shot in shots:
        with Image.open(shot) as image:
            assert image.size[0] == 360
        with Image.open(str(shot).replace("-360.png", "-1280.png")) as image:
            assert image.size[0] == 1280
    with Image.open(io.BytesIO((ARTIFACTS / "console-home-1280.png").read_bytes())) as image:
        assert image.size[1] >= 800
