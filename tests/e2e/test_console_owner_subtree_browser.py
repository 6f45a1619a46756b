"""A Process Owner in headless Chromium against the shared ``callerid serve``: invited by the admin for one process,
they see only that process's part of the organisation, its feature sets and its numbers, and every page of another
process's feature set answers "Not found" when its address is typed in (URL guessing), while the account's own pages
(API keys, batches) answer "Not allowed".

Screenshots at 360x800 and 1280x800 go to ``test-artifacts/console-process-owner-*.png``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.serving import SKIP_REASON, Server
from tests.e2e.test_console_browser import DESKTOP, open_page, screenshots
from tests.e2e.test_phone_browser import logo_png

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]
OWNER_EMAIL = "returns.owner@maple-rail.test"
OWNER_PASSWORD = "returns owner password"


@pytest.fixture(scope="module")
def account(console_server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Sales > Delivery > Returns and Pickups, one feature set on each, made with the CLI as an operator would."""
    server = console_server
    created = server.cli("accounts", "create", "--name", "Maple Rail", "--admin-email", "admin@maple-rail.test")
    account_id = created["client_account_id"]
    sales = server.cli("departments", "create", "--account", account_id, "--name", "Sales")
    delivery = server.cli(
        "operations", "create", "--account", account_id, "--department", sales["id"], "--name", "Delivery",
        "--calling-operation", "Delivery",
    )  # fmt: skip
    logo = tmp_path_factory.mktemp("owner") / "logo.png"
    logo.write_bytes(logo_png())
    label = server.cli(
        "labels", "create", "--account", account_id, "--name", "Maple Rail", "--logo", str(logo), "--type", "static"
    )
    sets = {}
    for process_name in ("Returns", "Pickups"):
        process = server.cli(
            "processes", "create", "--account", account_id, "--operation", delivery["id"], "--name", process_name
        )
        feature_set = server.cli(
            "feature-sets", "create", "--account", account_id, "--process", process["id"], "--label", label["id"],
            "--name", f"{process_name} line",
        )  # fmt: skip
        sets[process_name] = {"process_id": process["id"], "feature_set_id": feature_set["id"]}
    return {**created, "sets": sets}


async def test_a_process_owner_sees_only_their_process_and_is_refused_elsewhere(
    chromium: Any, console_server: Server, account: dict[str, Any]
) -> None:
    server = console_server
    returns, pickups = account["sets"]["Returns"], account["sets"]["Pickups"]
    # The admin invites the owner of Returns.
    context, page, problems = await open_page(chromium, DESKTOP)
    await page.goto(server.base + "/console/sign-in")
    await page.get_by_label("Email").fill(account["admin_email"])
    await page.get_by_label("Password").fill(account["admin_password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Maple Rail").wait_for()
    await page.goto(server.base + "/console/members/invite")
    await page.get_by_label("Email").fill(OWNER_EMAIL)
    await page.get_by_label("Role").select_option("process_owner")
    await page.wait_for_function("() => document.querySelectorAll('#scope option').length === 3")
    await page.get_by_label("Responsible for").select_option(returns["process_id"])
    await page.get_by_role("button", name="Send invitation").click()
    await page.get_by_text(f"Invitation sent to {OWNER_EMAIL}").wait_for()
    await context.close()

    mails = server.cli("mail", "outbox", "--to", OWNER_EMAIL)["mails"]
    link = re.search(r"(http://\S+/console/invitation/\S+)", mails[0]["body"])
    assert link is not None
    context, page, problems = await open_page(chromium, DESKTOP)
    await page.goto(link.group(1))
    await page.get_by_label("Password", exact=True).fill(OWNER_PASSWORD)
    await page.get_by_label("Confirm password").fill(OWNER_PASSWORD)
    await page.get_by_role("button", name="Set password and sign in").click()
    await page.get_by_text("Welcome to callerid: your password is set").wait_for()

    # Their part of the organisation and their feature set only.
    navigation = page.get_by_role("navigation", name="Console")
    await navigation.get_by_role("link", name="Organisation").click()
    tree = await page.locator("main").inner_text()
    assert "Returns" in tree and "Pickups" not in tree
    await screenshots(page, "process-owner-organisation")
    await navigation.get_by_role("link", name="Feature sets").click()
    listing = await page.locator("main").inner_text()
    assert "Returns line" in listing and "Pickups line" not in listing
    await screenshots(page, "process-owner-feature-sets")
    await page.get_by_role("link", name="Returns line").click()
    await page.get_by_role("heading", name="Returns line").wait_for()

    # Typing in the addresses of the other process's feature set: the same "Not found" as an id that does not exist.
    other = pickups["feature_set_id"]
    for path in (
        f"/console/feature-sets/{other}",
        f"/console/feature-sets/{other}/edit",
        f"/console/feature-sets/{other}/listing",
        f"/console/feature-sets/{other}/call-me-back",
        f"/console/feature-sets/{other}/survey",
        f"/console/numbers?feature_set={other}",
    ):
        response = await page.goto(server.base + path)
        assert response is not None
        if path.startswith("/console/numbers"):
            # A filter value that is not offered to this member: refused next to the filter, nothing shown.
            assert response.status == 400, path
            assert "Pickups line" not in await page.locator("main").inner_text()
        else:
            assert response.status == 404, path
            await page.get_by_role("heading", name="Not found").wait_for()
    await screenshots(page, "process-owner-not-found")
    # The account's own pages: not for this role at all.
    for path in ("/console/api-keys", "/console/webhooks", "/console/activity/batches", "/console/setup"):
        response = await page.goto(server.base + path)
        assert response is not None and response.status == 403, path
        await page.get_by_role("heading", name="Not allowed").wait_for()
    await screenshots(page, "process-owner-not-allowed")
    # Chromium logs each refused page load; nothing else went wrong.
    assert all("status of 40" in problem for problem in problems), problems
    await context.close()
