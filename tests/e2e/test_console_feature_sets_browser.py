"""Feature sets in headless Chromium against the shared ``callerid serve``: an admin creates a feature set (a bad
call reason first, refused next to its field), edits it (moved to a sub-process, published), sets its Call Me Back
hours (a window ending before it starts is refused next to its row, then fixed; one window added with htmx), and
finds it again on the list by a number listed in it through the API.

Screenshots at 360x800 and 1280x800 go to ``test-artifacts/console-feature-set*.png`` and
``console-call-me-back*.png``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.serving import SKIP_REASON, Server
from tests.e2e.test_console_browser import DESKTOP, open_page, screenshots
from tests.e2e.test_phone_browser import logo_png

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]
# This module's own number: the server is shared with the other console journeys, and a number has one owner.
NUMBER = "491555000101"


@pytest.fixture(scope="module")
def account(console_server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An account with a tree, a static label and an API key, made with the CLI as an operator would."""
    server = console_server
    created = server.cli("accounts", "create", "--name", "Fern Lines", "--admin-email", "admin@fern-lines.test")
    account_id = created["client_account_id"]
    department = server.cli("departments", "create", "--account", account_id, "--name", "Logistics")
    operation = server.cli(
        "operations", "create", "--account", account_id, "--department", department["id"], "--name", "Last mile",
        "--calling-operation", "Delivery",
    )  # fmt: skip
    process = server.cli(
        "processes", "create", "--account", account_id, "--operation", operation["id"], "--name", "Doorstep"
    )
    server.cli(
        "processes", "create", "--account", account_id, "--operation", operation["id"], "--name", "Night",
        "--parent", process["id"],
    )  # fmt: skip
    logo = tmp_path_factory.mktemp("feature-sets") / "logo.png"
    logo.write_bytes(logo_png())
    server.cli(
        "labels", "create", "--account", account_id, "--name", "Fern Lines", "--logo", str(logo), "--type", "static"
    )
    key = server.cli("api-keys", "create", "--account", account_id, "--name", "numbers")
    return {**created, "key": key}


def publish(server: Server, account: dict[str, Any], feature_set_id: str, *numbers: str) -> None:
    """NL through the API, as a business's backend lists numbers."""
    account_id = account["client_account_id"]
    with httpx.Client(base_url=server.base) as http:
        minted = http.post(
            f"/clients/{account_id}/token",
            json={"key_id": account["key"]["key_id"], "api_key": account["key"]["api_key"]},
            headers={"X-Public-Access": "allow"},
        )
        assert minted.status_code == 200, minted.text
        listed = http.post(
            f"/clients/{account_id}/number_management/feature_sets/{feature_set_id}/numbers/publish",
            json={"phone_numbers": list(numbers)},
            headers={"Authorization": f"Bearer {minted.json()['token']}"},
        )
    assert listed.status_code == 200, listed.text
    assert listed.json()["new_numbers"] == [n.lstrip("+") for n in numbers]


async def test_feature_set_journey(chromium: Any, console_server: Server, account: dict[str, Any]) -> None:
    base = console_server.base
    context, page, problems = await open_page(chromium, DESKTOP)
    await page.goto(base + "/console/sign-in")
    await page.get_by_label("Email").fill(account["admin_email"])
    await page.get_by_label("Password").fill(account["admin_password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Fern Lines").wait_for()

    # No feature set yet: the empty state offers the first one.
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Feature sets").click()
    await page.get_by_role("heading", name="No feature sets yet").wait_for()
    await screenshots(page, "feature-sets-empty")
    await page.get_by_role("link", name="Create feature set").first.click()
    await page.get_by_role("heading", name="Create feature set").wait_for()
    await page.get_by_label("Name", exact=True).fill("Doorstep line")
    await page.get_by_label("Process or sub-process").select_option(label="Logistics / Last mile / Doorstep")
    await page.get_by_label("Static label").select_option(label="Fern Lines")
    await page.get_by_label("Static call reason").fill("Parcel!")
    await page.get_by_label("Call Me Back").check()
    await page.get_by_role("button", name="Create feature set").click()
    await page.get_by_text("call_reason must be between 10 and 100 characters").wait_for()
    assert await page.get_by_label("Name", exact=True).input_value() == "Doorstep line"  # kept as typed
    await screenshots(page, "feature-set-new-error")
    await page.get_by_label("Static call reason").fill("Your parcel is at the door")
    await page.get_by_role("button", name="Create feature set").click()
    await page.get_by_role("heading", name="Doorstep line").wait_for()
    await page.get_by_text("Feature set Doorstep line created").wait_for()
    feature_set_id = page.url.rsplit("/", 1)[1]
    assert feature_set_id in await page.locator("main").inner_text()
    await screenshots(page, "feature-set")

    # Edit: moved to the Night sub-process and published.
    await page.get_by_role("link", name="Edit feature set").click()
    await page.get_by_label("Name", exact=True).fill("Doorstep calls")
    await page.get_by_label("Process or sub-process").select_option(label="Logistics / Last mile / Doorstep / Night")
    await page.get_by_label("Status").select_option("published")
    await page.get_by_label("Description").fill("Calls about parcels at the door, day and night.")
    await screenshots(page, "feature-set-edit")
    await page.get_by_role("button", name="Save feature set").click()
    await page.get_by_text("Feature set Doorstep calls saved").wait_for()
    assert "Logistics / Last mile / Doorstep / Night" in await page.locator("main").inner_text()

    # Call Me Back hours: Sunday gets two windows, one added with htmx; a wrong end is refused, then fixed.
    await page.get_by_role("link", name="Edit Call Me Back").click()
    await page.get_by_role("heading", name="Call Me Back").wait_for()
    await screenshots(page, "call-me-back")
    await page.get_by_label("From (Sunday, window 1)").fill("12:00")
    await page.get_by_label("To (Sunday, window 1)").fill("11:00")
    await page.get_by_role("button", name="Add window on Sunday").click()
    await page.get_by_label("From (Sunday, new window)").fill("14:00")
    await page.get_by_label("To (Sunday, new window)").fill("15:00")
    await page.get_by_role("button", name="Save Call Me Back").click()
    await page.get_by_text("the end must be after the start on the same day").wait_for()
    assert await page.get_by_label("To (Sunday, window 1)").get_attribute("aria-invalid") == "true"
    await screenshots(page, "call-me-back-error")
    await page.get_by_label("To (Sunday, window 1)").fill("13:00")
    await page.get_by_role("button", name="Save Call Me Back").click()
    await page.get_by_text("Call Me Back hours of Doorstep calls saved").wait_for()
    hours = await page.locator("main").inner_text()
    assert "Sunday 12:00-13:00, 14:00-15:00" in hours and "Monday 10:00-18:00" in hours
    await screenshots(page, "feature-set-saved")

    # A number listed through the API finds its set on the list, written as the API takes it.
    publish(console_server, account, feature_set_id, "+" + NUMBER)
    await page.get_by_role("link", name="← Feature sets").click()
    await page.get_by_label("Name or phone number").fill("+" + NUMBER)
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_role("link", name="Doorstep calls").wait_for()
    assert page.url.endswith("q=%2B" + NUMBER + "&status=") or f"q=%2B{NUMBER}" in page.url
    await page.get_by_role("button", name="Copy feature set id of Doorstep calls").wait_for()
    await screenshots(page, "feature-sets-search")
    await page.get_by_label("Name or phone number").fill("491555000199")
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_text("No feature set matches these filters").wait_for()
    # Chromium logs the 400s of the refused forms; nothing else went wrong (no script error, no refusal by the
    # Content-Security-Policy, no missing file).
    assert set(problems) <= {"Failed to load resource: the server responded with a status of 400 (Bad Request)"}
    await context.close()
