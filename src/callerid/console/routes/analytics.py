"""Analytics (issue 13 §5): the account's figures over a date range, as headline totals, three charts drawn on the
server (calls per day by outcome, answer rate per label, blocked attempts per day), each with a table of the same
numbers and the analytics API's CSV, and drill-down to one label, feature set or business number.

The figures are ``analytics.queries`` (the API's). Owners see the feature sets of their subtree only
(``analytics.access``, decided by ``permissions.allowed``): their ``Scope`` carries those ids, and a feature set
outside it asked for by URL answers 404 like one that does not exist. The weekly report e-mail is switched on in
Settings (``routes.settings``) and sent by ``analytics.weekly_report``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.responses import Response

from callerid import clock
from callerid.accounts.permissions import Permission
from callerid.analytics import access, queries
from callerid.analytics.models import NO_ID
from callerid.console import charts, web
from callerid.console.routes.activity import day_range
from callerid.labels.models import Label

router = APIRouter()
ALLOW = Permission.VIEW_ANALYTICS
DEFAULT_DAYS = 30
TABLE_ROWS = 50  # rows of the feature set and number tables on the page (the CSV has them all)
CHART_LABELS = 20  # labels in the answer-rate chart (the table has them all)
FILTERS = ("from", "to", "label", "feature_set", "number")
DRILLS = ("label", "feature_set", "number")
DRILL_TITLES = {"label": "Label", "feature_set": "Feature set", "number": "Number"}


@dataclass
class Filters:
    """What the page shows: the figures' scope, the filters as typed (for the form and links), errors by field,
    and the drill-down as (kind, name) in order."""

    scope: queries.Scope
    shown: dict[str, str]
    errors: dict[str, str]
    visible: access.Visible
    drill: list[tuple[str, str]] = field(default_factory=list)


def date_range(timezone: str, typed: dict[str, str], max_days: int) -> tuple[date, date, dict[str, str]]:
    """``from`` / ``to`` (inclusive days of the account; default: the last ``DEFAULT_DAYS`` days up to today; at
    most ``max_days``, the API's limit) and errors by field, by the rule of every console date filter
    (``activity.day_range``)."""
    today = clock.now().astimezone(ZoneInfo(timezone)).date()
    days, errors = day_range(typed, today, max_days=max_days, default_days=DEFAULT_DAYS)
    return days["from"], days["to"], errors


async def _filters(page: web.Page, request: Request) -> Filters:
    """The range and the drill-down of the URL. A label, feature set or number that is not the viewer's to see (or
    not well formed) answers 404: drill-down values come from links, so a wrong one is a page that does not exist."""
    query = request.query_params
    typed = {name: query.get(name, "").strip()[:60] for name in FILTERS}
    max_days = page.runtime.settings.analytics_max_days
    start, end, errors = date_range(page.current.account.timezone, typed, max_days)
    async with page.runtime.db.session() as session:
        visible = await access.visible_feature_sets(session, page.actor)
        label_id, label_name = None, ""
        if typed["label"]:
            label_id = _uuid(typed["label"])
            if label_id == NO_ID:
                label_name = queries.NONE_NAME
            else:
                found = await session.scalar(
                    select(Label.name).where(Label.id == label_id, Label.account_id == page.account_id)
                )
                if found is None:
                    raise web.not_found()
                label_name = found
    feature_set_id, feature_set_name = None, ""
    if typed["feature_set"]:
        feature_set_id = _uuid(typed["feature_set"])
        if feature_set_id == NO_ID and visible.whole_account:
            feature_set_name = queries.NONE_NAME
        elif feature_set_id in visible.feature_sets:
            feature_set_name = visible.feature_sets[feature_set_id]
        else:
            raise web.not_found()
    number = None
    if typed["number"]:
        digits = typed["number"].lstrip("+ ")
        if not (digits.isascii() and digits.isdigit() and 1 <= len(digits) <= 15 and not digits.startswith("0")):
            raise web.not_found()
        number = int(digits)
        typed["number"] = f"+{digits}"
    scope = queries.Scope(
        page.account_id,
        start,
        end,
        label_id=label_id,
        feature_set_id=feature_set_id,
        business_number=number,
        feature_set_ids=visible.scope_ids,
    )
    shown = {**typed, "from": typed["from"] or start.isoformat(), "to": typed["to"] or end.isoformat()}
    if errors:
        shown.update({"from": typed["from"], "to": typed["to"]})
    drill = [
        (kind, name)
        for kind, name in (("label", label_name), ("feature_set", feature_set_name), ("number", typed["number"]))
        if typed[kind]
    ]
    return Filters(scope, shown, errors, visible, drill)


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise web.not_found() from None


def _links(shown: dict[str, str], errors: dict[str, str]) -> dict[str, str]:
    """The filters links keep: the range only when it is valid (a link must not carry an error along)."""
    kept = {name: shown[name] for name in FILTERS if shown.get(name)}
    if errors:
        kept.pop("from", None)
        kept.pop("to", None)
    return kept


def _short_day(day: date) -> str:
    return f"{day.day} {day:%b}"


def _long_day(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b %Y}"


def _calls_chart(days: list[queries.FigureRow], scope: queries.Scope) -> Any:
    dates = [date.fromisoformat(row.key) for row in days]
    answered = [row.counts["answered"] for row in days]
    missed = [row.counts["missed"] for row in days]
    rejected = [row.counts["rejected"] for row in days]
    calls = [a + m + r for a, m, r in zip(answered, missed, rejected, strict=True)]
    total = sum(calls)
    summary = (
        f"From {_long_day(scope.start)} to {_long_day(scope.end)}: {sum(answered):,} answered, {sum(missed):,} "
        f"missed and {sum(rejected):,} rejected calls"
    )
    if total:
        busiest = max(range(len(days)), key=lambda i: (calls[i], -i))
        summary += f"; the busiest day was {_long_day(dates[busiest])} with {calls[busiest]:,} calls."
    else:
        summary += "."
    return charts.stacked_bars(
        "chart-calls",
        "Calls per day by outcome",
        summary,
        [_short_day(d) for d in dates],
        [
            charts.Series("Answered", charts.ANSWERED, answered),
            charts.Series("Missed", charts.MISSED, missed),
            charts.Series("Rejected", charts.REJECTED, rejected),
        ],
        category_titles=[_long_day(d) for d in dates],
    )


def _calls(row: queries.FigureRow) -> int:
    return row.counts["answered"] + row.counts["missed"] + row.counts["rejected"]


def _rate_chart(labels: list[queries.FigureRow]) -> Any:
    rated = sorted((row for row in labels if _calls(row)), key=lambda row: (-_calls(row), row.name.casefold()))
    shown = rated[:CHART_LABELS]
    items = [(row.name, row.answer_rate, f"{charts.percent(row.answer_rate)} of {_calls(row):,}") for row in shown]
    if shown:
        summary = "Answer rate by label: " + "; ".join(
            f"{row.name} {charts.percent(row.answer_rate)} of {_calls(row):,} calls" for row in shown
        )
        if len(rated) > len(shown):
            summary += f"; and {len(rated) - len(shown)} more labels in the table."
    else:
        summary = "No calls were answered, missed or rejected in these dates, so there is no answer rate."
    return charts.horizontal_bars("chart-rate", "Answer rate per label", summary, items)


def _blocked_chart(days: list[queries.FigureRow], scope: queries.Scope) -> Any:
    dates = [date.fromisoformat(row.key) for row in days]
    blocked = [row.counts["blocked"] for row in days]
    total = sum(blocked)
    summary = f"{total:,} blocked attempts from {_long_day(scope.start)} to {_long_day(scope.end)}"
    if total:
        most = max(range(len(days)), key=lambda i: (blocked[i], -i))
        summary += f"; the most on {_long_day(dates[most])} ({blocked[most]:,})."
    else:
        summary += "."
    return charts.stacked_bars(
        "chart-blocked",
        "Blocked attempts per day",
        summary,
        [_short_day(d) for d in dates],
        [charts.Series("Blocked attempts", charts.BLOCKED, blocked)],
        category_titles=[_long_day(d) for d in dates],
    )


def _talk(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def _busiest(rows: list[queries.FigureRow]) -> list[queries.FigureRow]:
    """The rows with the most activity first (for the capped tables), then by name."""
    return sorted(rows, key=lambda r: (-(r.records_total + r.counts["shown"] + _calls(r)), r.name.casefold(), r.key))


@router.get("/console/analytics")
async def analytics_page(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    filters = await _filters(page, request)
    db = page.runtime.db
    scope = filters.scope
    days, total = await queries.report(db, scope, "day")  # the days and the totals in one pass
    labels = await queries.figures(db, scope, "label")
    feature_sets = await queries.figures(db, scope, "feature_set")
    numbers = await queries.figures(db, scope, "number")
    links = _links(filters.shown, filters.errors)
    range_only = {k: v for k, v in links.items() if k in ("from", "to")}
    crumbs = []
    level = dict(range_only)
    for kind, name in filters.drill:
        level = {**level, kind: filters.shown[kind]}
        crumbs.append((DRILL_TITLES[kind], name, "/console/analytics?" + urlencode(level)))
    return web.render(
        request,
        "analytics/page.html",
        {
            "filters": filters.shown,
            "links": links,
            "range_only": range_only,
            "errors": filters.errors,
            "crumbs": crumbs,
            "whole_account": filters.visible.whole_account,
            "narrowed": scope.narrowed,
            "scope": scope,
            "total": total,
            "days": days,
            "labels": labels,
            "feature_sets": _busiest(feature_sets)[:TABLE_ROWS],
            "feature_set_count": len(feature_sets),
            "numbers": _busiest(numbers)[:TABLE_ROWS],
            "number_count": len(numbers),
            "calls_chart": _calls_chart(days, scope),
            "rate_chart": _rate_chart(labels),
            "blocked_chart": _blocked_chart(days, scope),
            "percent": charts.percent,
            "talk": _talk,
            "long_day": _long_day,
            "calls": _calls,
            "none_name": queries.NONE_NAME,
            "day_of": date.fromisoformat,
        },
        page=page,
        status_code=400 if filters.errors else 200,
    )


@router.get("/console/analytics/export.csv")
async def analytics_csv(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    filters = await _filters(page, request)
    group_by = request.query_params.get("group_by", "day")
    errors = dict(filters.errors)
    if group_by not in queries.GROUPS:
        errors["group_by"] = "group_by must be one of " + ", ".join(queries.GROUPS)
    if errors:
        raise web.PageError(400, "Filters not valid", "; ".join(errors.values()))
    rows = await queries.figures(page.runtime.db, filters.scope, group_by)
    body = queries.to_csv(rows, group_by)
    name = f"analytics-{group_by}-{filters.scope.start.isoformat()}-{filters.scope.end.isoformat()}.csv"
    return Response(
        body.encode(),
        media_type="text/csv; charset=utf-8",
        headers={**web.SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )
