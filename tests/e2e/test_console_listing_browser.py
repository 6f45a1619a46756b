"""Manage listing and the Numbers page in headless Chromium against the shared ``callerid serve``: an admin lists
numbers by pasting them, rewrites the set from a CSV (the numbers no longer in it are delisted after a red
confirmation), uploads 10,000 numbers (preview, progress updating itself, result), then delists a number chosen on
the Numbers page. The server's own job runner does the work; every wait is bounded.

Screenshots at 360x800 and 1280x800 go to ``test-artifacts/console-listing-*.png`` and ``console-numbers-*.png``.
"""

from __future__ import annotations

import re
from pathlib import Path
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
JOB_MS = 60_000  # the server's job delay (2 s by default) plus 10,000 numbers on SQLite; a bound, not a pause
# Numbers of this module only: the server is shared with the other console journeys, and a number has one owner.
SHOP = [f"3519120{i:05d}" for i in range(5)]
BULK = [f"3519130{i:05d}" for i in range(10_000)]


@pytest.fixture(scope="module")
def account(console_server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    server = console_server
    created = server.cli("accounts", "create", "--name", "Listing Lane", "--admin-email", "admin@listing-lane.test")
    account_id = created["client_account_id"]
    department = server.cli("departments", "create", "--account", account_id, "--name", "Retail")
    operation = server.cli(
        "operations", "create", "--account", account_id, "--department", department["id"], "--name", "Stores",
        "--calling-operation", "Sales",
    )  # fmt: skip
    process = server.cli(
        "processes", "create", "--account", account_id, "--operation", operation["id"], "--name", "Shops"
    )
    logo = tmp_path_factory.mktemp("listing") / "logo.png"
    logo.write_bytes(logo_png())
    label = server.cli(
        "labels", "create", "--account", account_id, "--name", "Listing Lane", "--logo", str(logo), "--type", "static"
    )
    sets = {
        name: server.cli(
            "feature-sets", "create", "--account", account_id, "--process", process["id"], "--name", name,
            "--label", label["id"],
        )["id"]
        for name in ("Shop line", "Bulk line")
    }  # fmt: skip
    return {**created, "sets": sets}


async def job_done(page: Any, text: str) -> None:
    """The progress page updates itself (htmx); wait, bounded, until it shows ``text``, then check polling stopped."""
    await page.get_by_text(text).first.wait_for(timeout=JOB_MS)
    assert await page.locator("#job-progress[hx-trigger]").count() == 0


async def test_manage_listing_journey(
    chromium: Any, console_server: Server, account: dict[str, Any], tmp_path: Path
) -> None:
    base = console_server.base
    context, page, problems = await open_page(chromium, DESKTOP)
    await page.goto(base + "/console/sign-in")
    await page.get_by_label("Email").fill(account["admin_email"])
    await page.get_by_label("Password").fill(account["admin_password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Listing Lane").wait_for()

    # Append by pasting: a preview first (nothing written), then the job's progress until done.
    shop = account["sets"]["Shop line"]
    await page.goto(f"{base}/console/feature-sets/{shop}/listing")
    await page.get_by_role("heading", name="Manage listing: Shop line").wait_for()
    await screenshots(page, "listing-form")
    await page.get_by_label("Numbers", exact=True).fill("\n".join(SHOP) + "\nnot-a-number\n")
    assert await page.get_by_role("radio", name=re.compile("^Append")).is_checked()
    await page.get_by_role("button", name="Preview").click()
    await page.get_by_role("heading", name="Preview: Append on Shop line").wait_for()
    assert "Line 6: not-a-number not a phone number" in await page.locator("main").inner_text()
    await page.get_by_role("button", name="List 5 numbers").click()
    await page.get_by_role("heading", name="Listing progress: Shop line").wait_for()
    await job_done(page, "5 listed")

    # Rewrite from a CSV: keep 3, add 2, and the 2 no longer in the file are delisted after a red confirmation.
    rewrite = tmp_path / "shop.csv"
    rewrite.write_text(
        "store,phone_number\n"
        + "".join(f"Store {i},+{n}\n" for i, n in enumerate(SHOP[:3]))
        + "Store 8,351912100008\nStore 9,351912100009\n"
    )
    await page.goto(f"{base}/console/feature-sets/{shop}/listing")
    await page.get_by_label("Or upload a file").set_input_files(str(rewrite))
    await page.get_by_role("radio", name=re.compile("^Rewrite")).check()
    await page.get_by_role("button", name="Preview").click()
    await page.get_by_role("heading", name="Preview: Rewrite on Shop line").wait_for()
    main = await page.locator("main").inner_text()
    assert "2 numbers of Shop line are not in your list and would be delisted." in main
    assert "Rewrite Shop line?" in main
    button = page.get_by_role("button", name="List 2 and delist 2 numbers")
    assert "danger" in (await button.get_attribute("class") or "")
    assert not await button.evaluate("(el) => el === document.activeElement || el.autofocus")
    await screenshots(page, "listing-rewrite-preview")
    await button.click()
    await page.get_by_role("heading", name="Listing progress: Shop line").wait_for()
    await job_done(page, "2 delisted")
    await page.get_by_text("2 listed").first.wait_for()
    await screenshots(page, "listing-rewrite-result")
    await page.goto(f"{base}/console/numbers?feature_set={shop}")
    shown = await page.locator("main table tbody").inner_text()
    assert all(n in shown for n in [*SHOP[:3], "351912100008", "351912100009"])
    assert SHOP[3] not in shown and SHOP[4] not in shown  # delisted

    # 10,000 numbers from a file: the preview, the progress updating itself, the result.
    bulk = account["sets"]["Bulk line"]
    upload = tmp_path / "bulk.csv"
    upload.write_text("phone_number\n" + "\n".join(BULK) + "\n")
    await page.goto(f"{base}/console/feature-sets/{bulk}/listing")
    await page.get_by_label("Or upload a file").set_input_files(str(upload))
    await page.get_by_role("button", name="Preview").click()
    await page.get_by_role("heading", name="Preview: Append on Bulk line").wait_for()
    main = await page.locator("main").inner_text()
    assert "10,000 numbers read (after the header row): 10,000 distinct." in main
    assert re.search(r"New\s+10,000", main)
    await screenshots(page, "listing-preview")
    await page.get_by_role("button", name="List 10,000 numbers").click()
    await page.get_by_role("heading", name="Listing progress: Bulk line").wait_for()
    await page.get_by_role("progressbar").wait_for()
    await screenshots(page, "listing-progress")
    await job_done(page, "10,000 listed")
    await screenshots(page, "listing-result")

    # The Numbers page: filtered by the set, choose one number, confirm in red, follow its delisting.
    await page.goto(f"{base}/console/numbers")
    await page.get_by_label("Feature set").select_option(label="Bulk line")
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_text("10,000 numbers · page 1 of 200").wait_for()
    assert f"feature_set={bulk}" in page.url
    await screenshots(page, "numbers")
    first = await page.locator('main table tbody input[name="selected"]').first.get_attribute("value")
    await page.get_by_label(f"Select {first}", exact=True).check()
    await page.get_by_role("button", name="Delist selected…").click()
    await page.get_by_role("heading", name="Delist 1 number?").wait_for()
    await screenshots(page, "numbers-delist-confirm")
    await page.get_by_role("button", name="Delist 1 number").click()
    await page.get_by_role("heading", name="Listing progress: Bulk line").wait_for()
    await job_done(page, "1 delisted")
    await page.goto(f"{base}/console/numbers?feature_set={bulk}")
    await page.get_by_text("9,999 numbers").first.wait_for()
    assert problems == []
    await context.close()
