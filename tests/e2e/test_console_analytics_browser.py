"""Analytics in headless Chromium against the shared ``callerid serve``: sign in, open Analytics from the navigation,
see the three charts (images named by their titles) and their tables, change the date range (and see an error next to
the field), drill down to a feature set and a number and back, and download the CSV, which is the analytics API's.

Figures are written into the server's database by the test itself, as the counting writers add them (``Tally``), over
the last 30 days in the account's timezone. Screenshots at 360x800 and 1280x800 go to
``test-artifacts/console-analytics-*.png``.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from callerid import clock
from callerid.analytics import queries
from callerid.analytics.tally import FiguresKey, Tally
from callerid.db import Database
from tests.e2e.serving import SKIP_REASON, Server
from tests.e2e.test_console_browser import DESKTOP, open_page, screenshots
from tests.e2e.test_phone_browser import logo_png

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]
NUMBERS = (919812340081, 919812340082)


class Business:
    """An account with a label and a feature set, made as an operator would (the CLI)."""

    def __init__(self, server: Server):
        suffix = uuid.uuid4().hex[:6]
        name, email = f"Analytics Flowers {suffix}", f"analytics-{suffix}@flowers.test"
        created = server.cli("accounts", "create", "--name", name, "--admin-email", email)
        self.account_id = uuid.UUID(created["client_account_id"])
        self.email: str = created["admin_email"]
        self.password: str = created["admin_password"]
        account = ("--account", str(self.account_id))
        department = server.cli("departments", "create", *account, "--name", "Sales")["id"]
        operation = server.cli(
            "operations", "create", *account, "--department", department, "--name", "Delivery",
            "--calling-operation", "Delivery",
        )["id"]  # fmt: skip
        process = server.cli("processes", "create", *account, "--operation", operation, "--name", "Door")["id"]
        logo = server.folder / f"analytics-logo-{suffix}.png"
        logo.write_bytes(logo_png())
        label = server.cli(
            "labels", "create", *account, "--name", "Flower Era", "--logo", str(logo), "--type", "static"
        )
        self.label_id = uuid.UUID(label.get("id") or label["label_id"])
        self.feature_set_id = uuid.UUID(
            server.cli(
                "feature-sets", "create", *account, "--process", process, "--name", "Fresh Flower Delivery",
                "--label", str(self.label_id),
            )["id"]
        )  # fmt: skip


async def add_figures(db: Database, business: Business, today: date) -> None:
    """30 days of calls on two numbers: day i (0 = 29 days ago) has i % 7 + 2 answered, i % 3 missed, i % 4 == 0
    rejected, and a blocked attempt every fifth day."""
    tally = Tally()
    for i in range(30):
        day = today - timedelta(days=29 - i)
        number = NUMBERS[i % 2]
        key = FiguresKey(business.account_id, day, business.label_id, business.feature_set_id, number)
        tally.add(key, "records_delivered", i % 7 + 4)
        tally.add(key, "shown", i % 7 + 3)
        tally.add(key, "answered", i % 7 + 2)
        tally.add(key, "missed", i % 3)
        tally.add(key, "rejected", 1 if i % 4 == 0 else 0)
        tally.add(key, "ended", i % 7 + 2)
        tally.add(key, "talk_seconds", (i % 7 + 2) * 95)
        if i % 5 == 0:
            tally.add(key, "blocked", 2)
    await db.write(tally.steps(db))


async def test_analytics_journey(chromium: Any, console_server: Server, tmp_path: Path) -> None:
    business = Business(console_server)
    today = clock.now().astimezone(ZoneInfo("Asia/Kolkata")).date()  # the account's default timezone
    db = Database(console_server.env["CALLERID_DATABASE_URL"])
    try:
        await add_figures(db, business, today)
        week = queries.Scope(business.account_id, today - timedelta(days=6), today)
        week_totals = await queries.totals(db, week)
        month_totals = await queries.totals(db, queries.Scope(business.account_id, today - timedelta(days=29), today))
        drilled = queries.Scope(
            business.account_id,
            week.start,
            week.end,
            feature_set_id=business.feature_set_id,
            business_number=NUMBERS[0],
        )
        expected_csv = queries.to_csv(await queries.figures(db, drilled, "day"), "day")
    finally:
        await db.dispose()

    context, page, problems = await open_page(chromium, DESKTOP)
    await page.goto(console_server.base + "/console/sign-in")
    await page.get_by_label("Email").fill(business.email)
    await page.get_by_label("Password").fill(business.password)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Analytics").click()
    await page.get_by_role("heading", name="Analytics", exact=True).wait_for()

    # The last 30 days: three charts (images named by their titles), and their tables.
    for chart in ("Calls per day by outcome", "Answer rate per label", "Blocked attempts per day"):
        assert await page.get_by_role("img", name=chart).is_visible()
    answered = month_totals.counts["answered"]
    await page.get_by_text(f"({answered:,} answered, {month_totals.counts['missed']:,} missed").wait_for()
    assert await page.get_by_role(
        "table", name="Figures per label; choose a label to see only its figures"
    ).is_visible()
    await page.get_by_text("Calls per day as a table").click()  # the <details> opens
    day_table = page.get_by_role("table", name="Calls per day by outcome,")
    assert await day_table.get_by_role("row").count() == 31  # the header and 30 days
    await screenshots(page, "analytics")

    # A range the wrong way round: the error next to the field, what was typed kept.
    await page.get_by_label("From", exact=True).fill(today.isoformat())
    await page.get_by_label("To", exact=True).fill((today - timedelta(days=3)).isoformat())
    await page.get_by_role("button", name="Show figures").click()
    await page.get_by_text("to must be on or after from").wait_for()
    await screenshots(page, "analytics-range-error")

    # The last 7 days.
    await page.get_by_label("From", exact=True).fill(week.start.isoformat())
    await page.get_by_label("To", exact=True).fill(today.isoformat())
    await page.get_by_role("button", name="Show figures").click()
    await page.wait_for_url(f"**/console/analytics?from={week.start.isoformat()}&to={today.isoformat()}*")
    await page.get_by_text(
        f"({week_totals.counts['answered']:,} answered, {week_totals.counts['missed']:,} missed"
    ).wait_for()

    # Drill down to the feature set, then to a number, then back.
    await (
        page.get_by_role("table", name="Figures per feature set")
        .get_by_role("link", name="Fresh Flower Delivery")
        .click()
    )
    breadcrumb = page.get_by_role("navigation", name="Drill-down")
    await breadcrumb.get_by_text("Feature set: Fresh Flower Delivery").wait_for()
    await (
        page.get_by_role("table", name="Figures per business number").get_by_role("link", name=f"+{NUMBERS[0]}").click()
    )
    await breadcrumb.get_by_text(f"Number: +{NUMBERS[0]}").wait_for()
    assert await breadcrumb.get_by_role("link", name="Feature set: Fresh Flower Delivery").is_visible()
    await screenshots(page, "analytics-drill-down")

    # The CSV of exactly this view is the analytics API's.
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download CSV", exact=True).click()
    download = await info.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    assert download.suggested_filename == f"analytics-day-{week.start.isoformat()}-{today.isoformat()}.csv"
    assert saved.read_bytes().decode() == expected_csv

    await breadcrumb.get_by_role("link", name="Clear filter").click()
    await page.wait_for_url(f"**/console/analytics?from={week.start.isoformat()}&to={today.isoformat()}")
    assert await page.get_by_role("navigation", name="Drill-down").count() == 0
    # The weekly report by e-mail: switched on from the page's link to Settings.
    await page.get_by_role("link", name="Settings", exact=True).last.click()
    await page.get_by_role("button", name="Turn on the weekly report").click()
    await page.get_by_role("status").get_by_text("Weekly report on").wait_for()
    assert await page.get_by_role("button", name="Turn off the weekly report").is_visible()
    await screenshots(page, "analytics-weekly-report")
    # Chromium logs the refused range (a 400 page); nothing else went wrong.
    assert all("status of 400" in problem for problem in problems), problems
    await context.close()
