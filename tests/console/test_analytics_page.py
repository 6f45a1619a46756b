"""The console's Analytics page (issue 13 §5): the date range and its validation, totals and charts of known figures,
an owner's subtree only (and 404 outside it), the CSV equal to the API's ``to_csv``, drill-down and its breadcrumb,
and the weekly report switch in Settings."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callerid import clock
from callerid.accounts.models import Member
from callerid.analytics import queries
from callerid.analytics.models import NO_ID, NO_NUMBER
from callerid.analytics.tally import FiguresKey, Tally
from callerid.config import Settings
from callerid.db import Database
from tests.console.conftest import World, browser, build_world, csrf_of, sign_in

# 20:00 UTC is 01:30 the next day in Asia/Kolkata (the accounts' default timezone): the page's days are the account's.
NOW = datetime(2026, 12, 2, 20, 0, tzinfo=UTC)
TODAY = date(2026, 12, 3)
INSIDE_NUMBER = 911234567890
OTHER_INSIDE_NUMBER = 911234567891
OUTSIDE_NUMBER = 919999900000


async def add_figures(
    db: Database,
    account_id: uuid.UUID,
    day: date,
    counts: dict[str, int],
    *,
    label_id: uuid.UUID = NO_ID,
    feature_set_id: uuid.UUID = NO_ID,
    number: int = NO_NUMBER,
) -> None:
    """Counts as the writers of counted facts add them (``Tally``), in one write."""
    tally = Tally()
    key = FiguresKey(account_id, day, label_id, feature_set_id, number)
    for name, amount in counts.items():
        tally.add(key, name, amount)
    await db.write(tally.steps(db))


@dataclass
class Figures:
    world: World
    label_id: uuid.UUID
    inside: uuid.UUID  # "Returns line", in every owner's subtree
    outside: uuid.UUID  # "Support line", under Support: no owner of Sales sees it


async def figures_world(db: Database, settings: Settings) -> Figures:
    """The console world, a feature set under Support, and known figures on both sets and the account's row."""
    from callerid.numbers import service as numbers

    clock.freeze(NOW)
    world = await build_world(db, settings, "Acme Flowers")
    label_id = uuid.UUID(world.objects["label_id"])
    inside = uuid.UUID(world.objects["feature_set_id"])
    async with db.transaction() as session:
        operation, _ = await numbers.create_operation(
            session,
            account_id=world.account_id,
            department_id=world.nodes["support"],
            name="Helpdesk",
            calling_operation_name="Helpdesk",
        )
        process = await numbers.create_process(
            session, account_id=world.account_id, operation_id=operation.id, name="Tickets"
        )
        outside = await numbers.create_feature_set(
            session, account_id=world.account_id, process_id=process.id, label_id=label_id, name="Support line"
        )
    yesterday, three_days_ago = TODAY - timedelta(days=1), TODAY - timedelta(days=3)
    account = world.account_id
    await add_figures(
        db,
        account,
        yesterday,
        {
            "records_delivered": 5,
            "shown": 5,
            "answered": 3,
            "missed": 1,
            "rejected": 1,
            "ended": 3,
            "talk_seconds": 180,
            "blocked": 2,
        },
        label_id=label_id,
        feature_set_id=inside,
        number=INSIDE_NUMBER,
    )
    await add_figures(
        db,
        account,
        three_days_ago,
        {"records_delivered": 2, "shown": 1, "answered": 1},
        label_id=label_id,
        feature_set_id=inside,
        number=OTHER_INSIDE_NUMBER,
    )
    await add_figures(
        db,
        account,
        yesterday,
        {"shown": 20, "answered": 10, "missed": 10, "blocked": 7},
        label_id=label_id,
        feature_set_id=outside.id,
        number=OUTSIDE_NUMBER,
    )
    await add_figures(db, account, yesterday, {"webhooks_succeeded": 4})
    return Figures(world, label_id, inside, outside.id)


@pytest.fixture
async def figures(db: Database, settings: Settings) -> Figures:
    return await figures_world(db, settings)


@asynccontextmanager
async def signed_in(app: Any, world: World, role: str) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as http:
        person = world.people[role]
        assert (await sign_in(http, person.email, person.password)).status_code == 303
        yield http


def field_error(html: str, name: str) -> str | None:
    found = re.search(rf'<p class="error" id="{name}-error">([^<]*)</p>', html)
    return found.group(1) if found else None


def input_value(html: str, name: str) -> str:
    found = re.search(rf'<input id="{name}" name="{name}" type="date" value="([^"]*)"', html)
    assert found is not None, name
    return found.group(1)


async def test_default_range_is_the_last_30_days_in_the_account_timezone(app: Any, figures: Figures) -> None:
    async with signed_in(app, figures.world, "admin") as http:
        response = await http.get("/console/analytics")
        home = await http.get("/console")
    assert response.status_code == 200
    assert input_value(response.text, "from") == "2026-11-04"
    assert input_value(response.text, "to") == "2026-12-03"
    assert '<a href="/console/analytics">Analytics</a>' in home.text  # the navigation link
    # Three charts, each an image with a title and a summary in words, and its tables with captions.
    assert response.text.count('role="img"') == 3
    for chart in ("chart-calls", "chart-rate", "chart-blocked"):
        assert f'aria-labelledby="{chart}-title" aria-describedby="{chart}-desc"' in response.text
    assert "<caption>Calls per day by outcome, Wed 4 Nov 2026 to Thu 3 Dec 2026</caption>" in response.text
    assert response.text.count('<tr><th scope="row">') >= 60  # 30 days in each of the two day tables


@pytest.mark.parametrize(
    ("params", "name", "message"),
    [
        ({"from": "2026-13-01"}, "from", "from must be a date (YYYY-MM-DD)"),
        ({"to": "yesterday"}, "to", "to must be a date (YYYY-MM-DD)"),
        ({"from": "2026-12-03", "to": "2026-12-01"}, "to", "to must be on or after from"),
        ({"from": "2025-01-01", "to": "2026-12-01"}, "from", "from must be at most 366 days before to"),
    ],
)
async def test_range_is_validated_next_to_the_field(
    app: Any, figures: Figures, params: dict[str, str], name: str, message: str
) -> None:
    async with signed_in(app, figures.world, "admin") as http:
        response = await http.get("/console/analytics", params=params)
        csv = await http.get("/console/analytics/export.csv", params=params)
    assert response.status_code == 400
    assert field_error(response.text, name) == message
    assert input_value(response.text, name) == params[name]  # the form keeps what was typed
    assert csv.status_code == 400 and message in csv.text


async def test_admin_sees_the_whole_account(app: Any, figures: Figures) -> None:
    async with signed_in(app, figures.world, "admin") as http:
        response = await http.get("/console/analytics")
    text = response.text
    assert "(14 answered, 11 missed, 1 rejected)" in text
    assert '<span class="number">53.8 %</span> answer rate' in text
    assert '<span class="number">9</span> blocked attempts' in text
    assert '<span class="number">1m 00s</span> average talk time' in text
    assert '<span class="number">4</span> webhook deliveries' in text
    assert "Support line" in text and "Returns line" in text
    assert "+919999900000" in text
    # The chart's summary in words and a bar's exact numbers on hover.
    assert "14 answered, 11 missed and 1 rejected calls; the busiest day was Wed 2 Dec 2026 with 25 calls." in text
    assert "<title>Wed 2 Dec 2026: 13 answered, 11 missed, 1 rejected</title>" in text


async def test_owner_sees_only_their_subtree_and_is_refused_outside(app: Any, figures: Figures) -> None:
    async with signed_in(app, figures.world, "process_owner") as http:
        page = await http.get("/console/analytics")
        by_set = await http.get("/console/analytics/export.csv", params={"group_by": "feature_set"})
        outside = await http.get("/console/analytics", params={"feature_set": str(figures.outside)})
        outside_csv = await http.get("/console/analytics/export.csv", params={"feature_set": str(figures.outside)})
        unknown = await http.get("/console/analytics", params={"feature_set": str(uuid.uuid4())})
    assert page.status_code == 200
    assert "(4 answered, 1 missed, 1 rejected)" in page.text
    assert '<span class="number">2</span> blocked attempts' in page.text
    assert "Support line" not in page.text and "+919999900000" not in page.text
    assert "webhook deliveries" not in page.text  # the account's own figures are not a subtree's
    assert "Returns line" in by_set.text and "Support line" not in by_set.text
    assert outside.status_code == 404 and outside_csv.status_code == 404 and unknown.status_code == 404
    assert "There is nothing here, or it is not yours to see." in outside.text
    # The owner of Support sees the other set only.
    async with signed_in(app, figures.world, "outsider") as http:
        theirs = await http.get("/console/analytics")
        refused = await http.get("/console/analytics", params={"feature_set": str(figures.inside)})
    assert "(10 answered, 10 missed, 0 rejected)" in theirs.text
    assert "Returns line" not in theirs.text
    assert refused.status_code == 404


@pytest.mark.parametrize("role", ["admin", "process_owner"])
async def test_csv_is_the_apis_to_csv(app: Any, db: Database, figures: Figures, role: str) -> None:
    start, end = TODAY - timedelta(days=6), TODAY
    subtree = None if role == "admin" else frozenset({figures.inside})
    async with signed_in(app, figures.world, role) as http:
        for group_by in queries.GROUPS:
            response = await http.get(
                "/console/analytics/export.csv",
                params={"from": start.isoformat(), "to": end.isoformat(), "group_by": group_by},
            )
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/csv; charset=utf-8"
            assert (
                f'filename="analytics-{group_by}-2026-11-27-2026-12-03.csv"' in response.headers["content-disposition"]
            )
            scope = queries.Scope(figures.world.account_id, start, end, feature_set_ids=subtree)
            assert response.text == queries.to_csv(await queries.figures(db, scope, group_by), group_by)
        bad = await http.get("/console/analytics/export.csv", params={"group_by": "week"})
    assert bad.status_code == 400


async def test_drill_down_to_a_label_a_feature_set_and_a_number(app: Any, db: Database, figures: Figures) -> None:
    label = str(figures.label_id)
    async with signed_in(app, figures.world, "admin") as http:
        page = await http.get("/console/analytics")
        # The tables link each label, feature set and number to the page filtered to it.
        assert f'href="/console/analytics?from=2026-11-04&amp;to=2026-12-03&amp;label={label}"' in page.text
        assert (
            f'href="/console/analytics?from=2026-11-04&amp;to=2026-12-03&amp;feature_set={figures.inside}"' in page.text
        )
        assert 'href="/console/analytics?from=2026-11-04&amp;to=2026-12-03&amp;number=%2B911234567890"' in page.text
        by_set = await http.get("/console/analytics", params={"feature_set": str(figures.inside)})
        by_set_and_number = await http.get(
            "/console/analytics", params={"feature_set": str(figures.inside), "number": "+911234567890"}
        )
        csv = await http.get(
            "/console/analytics/export.csv",
            params={"feature_set": str(figures.inside), "number": "+911234567890", "group_by": "day"},
        )
        other_label = await http.get("/console/analytics", params={"label": str(uuid.uuid4())})
        not_an_id = await http.get("/console/analytics", params={"label": "acme"})
        not_a_number = await http.get("/console/analytics", params={"number": "12ab"})
    assert by_set.status_code == 200
    assert "(4 answered, 1 missed, 1 rejected)" in by_set.text
    assert '<span aria-current="page">Feature set: <strong>Returns line</strong></span>' in by_set.text
    assert '<a class="button small" href="/console/analytics?from=2026-11-04&amp;to=2026-12-03">Clear filter</a>' in (
        by_set.text
    )
    # The range form keeps the drill-down.
    assert f'<input type="hidden" name="feature_set" value="{figures.inside}">' in by_set.text
    assert "(3 answered, 1 missed, 1 rejected)" in by_set_and_number.text
    assert '<span aria-current="page">Number: <strong>+911234567890</strong></span>' in by_set_and_number.text
    assert f'<a href="/console/analytics?from=2026-11-04&amp;to=2026-12-03&amp;feature_set={figures.inside}">' in (
        by_set_and_number.text
    )
    scope = queries.Scope(
        figures.world.account_id,
        date(2026, 11, 4),
        TODAY,
        feature_set_id=figures.inside,
        business_number=INSIDE_NUMBER,
    )
    assert csv.text == queries.to_csv(await queries.figures(db, scope, "day"), "day")
    assert other_label.status_code == 404 and not_an_id.status_code == 404 and not_a_number.status_code == 404


async def test_another_accounts_label_is_not_found(
    app: Any, db: Database, settings: Settings, figures: Figures
) -> None:
    other = await build_world(db, settings, "Other Co")
    async with signed_in(app, figures.world, "admin") as http:
        response = await http.get("/console/analytics", params={"label": other.objects["label_id"]})
        mine = await http.get("/console/analytics", params={"label": str(figures.label_id)})
    assert response.status_code == 404
    assert mine.status_code == 200 and "Label: <strong>Acme Label</strong>" in mine.text


async def test_weekly_report_switch_in_settings(app: Any, db: Database, figures: Figures) -> None:
    person = figures.world.people["operation_owner"]
    async with signed_in(app, figures.world, "operation_owner") as http:
        settings_page = await http.get("/console/settings")
        assert "Turn on the weekly report" in settings_page.text
        csrf = csrf_of(settings_page.text)
        refused = await http.post("/console/settings/weekly-report", data={"weekly_report": "on"})
        turned_on = await http.post("/console/settings/weekly-report", data={"weekly_report": "on", "csrf_token": csrf})
        after = await http.get("/console/settings")
        async with db.session() as session:
            on = await session.scalar(select(Member.weekly_report).where(Member.id == person.member_id))
        await http.post("/console/settings/weekly-report", data={"weekly_report": "off", "csrf_token": csrf})
        async with db.session() as session:
            off = await session.scalar(select(Member.weekly_report).where(Member.id == person.member_id))
    assert refused.status_code == 403
    assert turned_on.status_code == 303 and turned_on.headers["location"] == "/console/settings"
    assert "Weekly report on" in after.text and "Turn off the weekly report" in after.text
    assert (on, off) == (True, False)
