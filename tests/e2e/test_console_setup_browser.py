"""The first-run setup in headless Chromium against the shared ``callerid serve``: a brand-new account's admin goes
from Home's "Set up your account" through calling operation, process, feature set, caller-ID label (a logo upload)
and listing numbers (preview, confirm), to the summary and the feature set's page with the numbers listed by the
server's own job runner. Every wait is bounded.

Screenshots at 360x800 and 1280x800 go to ``test-artifacts/console-setup-*.png``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.serving import SKIP_REASON, Server
from tests.e2e.test_console_browser import DESKTOP, open_page, screenshots, wait_for
from tests.e2e.test_phone_browser import logo_png

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]
# Numbers of this module only: the server is shared with the other console journeys, and a number has one owner.
NUMBERS = [f"3519140{i:05d}" for i in range(3)]
JOB_MS = 30_000  # the server's job delay (2 s by default) and three numbers; a bound, not a pause


@pytest.fixture(scope="module")
def account(console_server: Server) -> dict[str, Any]:
    """Nothing but the account and its admin: the setup makes everything else."""
    return console_server.cli(
        "accounts", "create", "--name", "Setup Street", "--admin-email", "admin@setup-street.test"
    )


def listed_numbers(server: Server, account_id: str, auth: dict[str, str]) -> set[str]:
    """NN: the account's numbers in state ``listed``."""
    answer = httpx.get(f"{server.base}/clients/{account_id}/number_management/numbers", headers=auth)
    assert answer.status_code == 200, answer.text
    return {item["phone_number"] for item in answer.json()["numbers"] if item["status"] == "listed"}


def api_auth(server: Server, account_id: str) -> dict[str, str]:
    """An API key made now (after the setup: the account started empty) and a token minted with it."""
    key = server.cli("api-keys", "create", "--account", account_id, "--name", "checks")
    minted = httpx.post(
        f"{server.base}/clients/{account_id}/token",
        json={"key_id": key["key_id"], "api_key": key["api_key"]},
        headers={"X-Public-Access": "allow"},
    )
    assert minted.status_code == 200, minted.text
    return {"Authorization": f"Bearer {minted.json()['token']}"}


async def current_step(page: Any) -> str:
    return await page.locator('.setup-steps [aria-current="step"]').inner_text()


async def test_setup_from_an_empty_account_to_listed_numbers(
    chromium: Any, console_server: Server, account: dict[str, Any], tmp_path: Path
) -> None:
    server = console_server
    context, page, problems = await open_page(chromium, DESKTOP)
    await page.goto(server.base + "/console/sign-in")
    await page.get_by_label("Email").fill(account["admin_email"])
    await page.get_by_label("Password").fill(account["admin_password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Setup Street").wait_for()
    await page.get_by_role("heading", name="Set up your account").wait_for()
    await screenshots(page, "setup-home")
    await page.get_by_role("link", name="Set up your account").click()

    # 1. Calling operation: a refusal shown next to its field, then the operation.
    await page.get_by_role("heading", name="Calling operation").wait_for()
    assert "Calling operation" in await current_step(page)
    assert "Step 1 of 5" in await page.locator("main").inner_text()
    await page.get_by_label("Department").fill("Retail")
    await page.get_by_role("button", name="Create operation").click()
    await page.get_by_text("operation name must be between 1 and 100 characters").wait_for()
    assert await page.get_by_label("Department").input_value() == "Retail"  # kept
    await screenshots(page, "setup-1-operation")
    await page.get_by_label("Operation name").fill("Stores")
    await page.get_by_label("Calling operation").select_option(label="Sales")
    await page.get_by_role("button", name="Create operation").click()

    # 2. Process, under the operation of step 1 (already chosen).
    await page.get_by_role("heading", name="Process", exact=True).wait_for()
    assert "Step 2 of 5" in await page.locator("main").inner_text()
    chosen = await page.get_by_label("Operation", exact=True).evaluate("(el) => el.selectedOptions[0].text")
    assert chosen == "Retail / Stores"
    await screenshots(page, "setup-2-process")
    await page.get_by_label("Process name").fill("Shops")
    await page.get_by_role("button", name="Create process").click()

    # 3. Feature set: kept as a draft until it has a label.
    await page.get_by_role("heading", name="Feature set", exact=True).wait_for()
    assert "Feature set" in await current_step(page)
    await page.get_by_label("Name").fill("Shop line")
    await page.get_by_label("Static call reason").fill("About your store order")
    await screenshots(page, "setup-3-feature-set")
    await page.get_by_role("button", name="Save and continue").click()

    # 4. Caller-ID label: a logo upload and the catalogue's category; then the feature set exists.
    await page.get_by_role("heading", name="Caller-ID label").wait_for()
    assert "Step 4 of 5" in await page.locator("main").inner_text()
    logo = tmp_path / "logo.png"
    logo.write_bytes(logo_png())
    await page.get_by_label("Name").fill("Setup Street")
    await page.get_by_label("Logo").set_input_files(str(logo))
    await page.get_by_label("Category", exact=True).select_option(index=1)
    # htmx narrows the sub-categories to the chosen category's own; wait for the swap, then choose one.
    await page.locator("#sub_category optgroup").first.wait_for(state="detached")
    await page.get_by_label("Sub-category").select_option(index=1)
    await screenshots(page, "setup-4-label")
    skip = page.get_by_role("button", name="Skip this step")
    assert "primary" not in (await skip.get_attribute("class") or "")
    await page.get_by_role("button", name="Create label and feature set").click()

    # 5. List numbers: Manage listing's Append, its preview and confirmation.
    await page.get_by_role("heading", name="List numbers").wait_for()
    assert "Step 5 of 5" in await page.locator("main").inner_text()
    await page.get_by_label("Numbers", exact=True).fill("\n".join(NUMBERS) + "\nnot-a-number\n")
    await screenshots(page, "setup-5-numbers")
    await page.get_by_role("button", name="Preview").click()
    await page.get_by_role("heading", name="Preview: Append on Shop line").wait_for()
    assert re.search(r"New\s+3", await page.locator("main").inner_text())
    await screenshots(page, "setup-5-preview")
    await page.get_by_role("button", name="List 3 numbers").click()

    # Done: the summary follows the listing job, then the setup ends on the feature set's page.
    await page.get_by_role("heading", name="Your account is set up").wait_for()
    auth = api_auth(server, account["client_account_id"])
    await wait_for(
        lambda: listed_numbers(server, account["client_account_id"], auth) == set(NUMBERS),
        "the job runner to list the numbers",
        seconds=JOB_MS / 1000,
    )
    await page.get_by_text("3 listed").first.wait_for(timeout=JOB_MS)  # the summary updated itself
    assert await page.locator("#job-progress[hx-trigger]").count() == 0  # and stopped asking
    await screenshots(page, "setup-done")
    await page.get_by_role("button", name="Finish: go to Shop line").click()
    await page.get_by_role("heading", name="Shop line", exact=True).wait_for()
    assert "/console/feature-sets/" in page.url
    counts = await page.locator(".number-counts").inner_text()
    assert re.search(r"3\s+listed", counts), counts
    await screenshots(page, "setup-feature-set")

    # The account has a feature set now: Home no longer offers the setup.
    await page.goto(server.base + "/console")
    assert await page.get_by_role("heading", name="Set up your account").count() == 0
    # The one refusal of step 1 (a 400 page) is all the browser logged.
    assert problems == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    await context.close()
