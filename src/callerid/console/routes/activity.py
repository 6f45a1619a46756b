"""Call activity (issue 11 §6): the landing page, Call Me Back requests and survey answers, and what the call-record
pages (``call_records``) share: date filters in the account's timezone and CSV downloads.

Call Me Back requests and survey answers belong to a feature set: an owner sees those of the feature sets in their
subtree (each set's node checked with ``permissions.allowed``), and so does their CSV. For an admin the CSV is the
CMB / UF export for the same range, byte for byte (``engagement.activity``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from callerid import clock
from callerid.accounts.permissions import Permission, Target, allowed
from callerid.console import web
from callerid.engagement import activity as engagement_activity
from callerid.http import Page
from callerid.numbers import service as numbers
from callerid.numbers.nodes import PROCESS, account_tree

router = APIRouter()
ALLOW = Permission.VIEW_ACTIVITY
PER_PAGE = 50
# The default date range of every activity page: the last week, today included.
DEFAULT_DAYS = 7
# Days a filter may name: the instants of any of them, in any timezone, fit a datetime and the databases.
FIRST_DAY = date(1970, 1, 2)
LAST_DAY = date(9999, 12, 30)
# Feature sets an account may have, far above any real one: read in one go to decide what an owner sees.
_ALL_FEATURE_SETS = 100_000


# --- shared by the activity pages ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dates:
    """A date filter: the days as shown in the form, and the instants they cover in the account's timezone."""

    shown: dict[str, str]  # "from", "to": YYYY-MM-DD
    start: datetime  # the first instant of "from"
    stop: datetime  # the first instant after "to"

    @property
    def end(self) -> datetime:
        """The last instant of "to" (CMB and UF ranges are inclusive: ``engagement.exports``)."""
        return self.stop - timedelta(microseconds=1)


def _day(raw: str) -> date | None:
    try:
        day = datetime.strptime(raw, "%Y-%m-%d").date() if len(raw) == 10 else None
    except ValueError:
        return None
    return day if day is not None and FIRST_DAY <= day <= LAST_DAY else None


def day_range(
    typed: dict[str, str], today: date, *, max_days: int, default_days: int
) -> tuple[dict[str, date], dict[str, str]]:
    """The days typed as ``from`` / ``to`` (YYYY-MM-DD, inclusive; empty: the last ``default_days`` up to ``today``)
    and any errors by field; with errors, the default days, so that a page still shows something sensible. The one
    rule of the console's date filters (Call activity, Analytics)."""
    default = {"from": today - timedelta(days=default_days - 1), "to": today}
    days: dict[str, date] = {}
    errors: dict[str, str] = {}
    for name in ("from", "to"):
        day = _day(typed[name]) if typed[name] else default[name]
        if day is None:
            errors[name] = f"{name} must be a date (YYYY-MM-DD)"
        else:
            days[name] = day
    if not errors:
        if days["to"] < days["from"]:
            errors["to"] = "to must be on or after from"
        elif (days["to"] - days["from"]).days + 1 > max_days:
            errors["from"] = f"from must be at most {max_days} days before to"
    return (default if errors else days), errors


def date_filter(
    page: web.Page, request: Request, *, max_days: int, default_days: int = DEFAULT_DAYS
) -> tuple[Dates, dict[str, str]]:
    """``from`` / ``to`` of the query (``day_range``) as the instants they cover in the account's timezone, and any
    errors, named by field."""
    zone = ZoneInfo(page.current.account.timezone)
    query = request.query_params
    typed = {name: query.get(name, "").strip()[:40] for name in ("from", "to")}
    days, errors = day_range(typed, clock.now().astimezone(zone).date(), max_days=max_days, default_days=default_days)
    if "from" in errors and errors["from"].startswith("from must be at most"):
        errors["from"] += f" (records are kept {max_days - 1} days)"
    shown = {name: typed[name] if errors else days[name].isoformat() for name in ("from", "to")}
    start = datetime.combine(days["from"], time(0), tzinfo=zone)
    stop = datetime.combine(days["to"] + timedelta(days=1), time(0), tzinfo=zone)
    return Dates(shown, start, stop), errors


def paging(request: Request, total: int) -> dict[str, Any]:
    """What the pagination macro needs, and whether the page asked for is past the last one."""
    number = web.page_number(request)
    total_pages = Page(number, PER_PAGE).total_pages(total)
    return {"current": number, "total_pages": total_pages, "total": total, "past_end": number > max(total_pages, 1)}


def offset_of(request: Request) -> int:
    return (web.page_number(request) - 1) * PER_PAGE


def csv_download(lines: AsyncIterator[str], filename: str) -> StreamingResponse:
    """A CSV streamed as it is read (an export can be long), with the console's headers."""

    async def encoded() -> AsyncIterator[bytes]:
        async for line in lines:
            yield line.encode()

    return StreamingResponse(
        encoded(),
        media_type="text/csv; charset=utf-8",
        headers={**web.SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'},
    )


def filter_error(errors: dict[str, str]) -> web.PageError:
    """A CSV asked for with filters that are not valid: the error page says which."""
    return web.PageError(400, "Filters not valid", "; ".join(errors.values()))


# --- who sees which feature sets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSetChoice:
    id: uuid.UUID
    name: str


async def visible_feature_sets(page: web.Page) -> tuple[list[FeatureSetChoice], bool]:
    """The feature sets whose activity the viewer may see, by name, and whether that is all of them (admins)."""
    async with page.runtime.db.session() as session:
        views, _ = await numbers.list_feature_sets(
            session, page.account_id, numbers.TreeFilters(), offset=0, limit=_ALL_FEATURE_SETS
        )
        nodes = {} if page.actor.is_admin else {n.ref.id: n for n in await account_tree(session, page.account_id)}
    sets = []
    for view in views:
        feature_set = view.feature_set
        node = nodes.get(feature_set.process_id)
        if page.actor.is_admin or (
            node is not None and node.ref.kind == PROCESS and allowed(page.actor, ALLOW, Target(node))
        ):
            sets.append(FeatureSetChoice(feature_set.id, feature_set.name))
    return sorted(sets, key=lambda s: (s.name.lower(), str(s.id))), page.actor.is_admin


def _feature_set_filter(
    request: Request, sets: list[FeatureSetChoice], whole_account: bool
) -> tuple[str, set[uuid.UUID] | None, dict[str, str]]:
    """``?feature_set=``: as typed, the feature sets to show (None: the whole account), and any error."""
    raw = request.query_params.get("feature_set", "").strip()[:40]
    ids = {s.id for s in sets}
    if not raw:
        return raw, None if whole_account else ids, {}
    chosen = next((s.id for s in sets if str(s.id) == raw.lower()), None)
    if chosen is None:
        return raw, None if whole_account else ids, {"feature_set": "choose a feature set from the list"}
    return raw, {chosen}, {}


# --- the landing page -------------------------------------------------------------------------------------------


@router.get("/console/activity")
async def activity_home(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    sets, whole_account = await visible_feature_sets(page)
    zone = ZoneInfo(page.current.account.timezone)
    start = datetime.combine(
        clock.now().astimezone(zone).date() - timedelta(days=DEFAULT_DAYS - 1), time(0), tzinfo=zone
    )
    feature_set_ids = None if whole_account else {s.id for s in sets}
    async with page.runtime.db.session() as session:
        surveys = await _visible_surveys(session, page, feature_set_ids)
        _, cmb_count = await engagement_activity.list_cmb_requests(
            session, page.account_id, start, clock.now(), feature_set_ids=feature_set_ids, limit=1
        )
        _, answer_count = await engagement_activity.list_survey_responses(
            session,
            page.account_id,
            start,
            clock.now(),
            survey_ids=None if whole_account else {s.id for s in surveys},
            limit=1,
        )
    return web.render(
        request,
        "activity/home.html",
        {"cmb_count": cmb_count, "answer_count": answer_count, "days": DEFAULT_DAYS, "search": {"number": ""}},
        page=page,
    )


# --- Call Me Back requests ---------------------------------------------------------------------------------------


@router.get("/console/activity/call-me-back")
async def call_me_back(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    dates, errors = date_filter(page, request, max_days=page.settings.cmb_request_retention_days + 1)
    sets, whole_account = await visible_feature_sets(page)
    raw_set, ids, set_errors = _feature_set_filter(request, sets, whole_account)
    errors.update(set_errors)
    requests: list[Any] = []
    total = 0
    if not errors:
        async with page.runtime.db.session() as session:
            requests, total = await engagement_activity.list_cmb_requests(
                session,
                page.account_id,
                dates.start,
                dates.end,
                feature_set_ids=ids,
                limit=PER_PAGE,
                offset=offset_of(request),
            )
    return web.render(
        request,
        "activity/call_me_back.html",
        {
            "requests": requests,
            **paging(request, total),
            "filters": {**dates.shown, "feature_set": raw_set},
            "errors": errors,
            "feature_set_options": [("", "All feature sets" if whole_account else "All your feature sets")]
            + [(str(s.id), s.name) for s in sets],
            "whole_account": whole_account,
        },
        page=page,
        status_code=400 if errors else 200,
    )


@router.get("/console/activity/call-me-back/export.csv")
async def call_me_back_csv(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    dates, errors = date_filter(page, request, max_days=page.settings.cmb_request_retention_days + 1)
    sets, whole_account = await visible_feature_sets(page)
    _, ids, set_errors = _feature_set_filter(request, sets, whole_account)
    errors.update(set_errors)
    if errors:
        raise filter_error(errors)
    lines = engagement_activity.cmb_csv(page.runtime.db, page.account_id, dates.start, dates.end, feature_set_ids=ids)
    return csv_download(lines, f"call-me-back-{dates.shown['from']}-{dates.shown['to']}.csv")


# --- survey answers ------------------------------------------------------------------------------------------------


async def _visible_surveys(
    session: Any, page: web.Page, feature_set_ids: set[uuid.UUID] | None
) -> list[engagement_activity.SurveyChoice]:
    surveys = await engagement_activity.account_surveys(session, page.account_id)
    return [s for s in surveys if feature_set_ids is None or s.feature_set_id in feature_set_ids]


async def _answer_filters(
    page: web.Page, request: Request
) -> tuple[Dates, dict[str, str], dict[str, str], set[uuid.UUID] | None, list[engagement_activity.SurveyChoice]]:
    """Dates, the filters as typed, errors, the surveys to show (None: every survey of the account) and the
    surveys the viewer may choose from."""
    dates, errors = date_filter(page, request, max_days=page.settings.survey_response_retention_days + 1)
    sets, whole_account = await visible_feature_sets(page)
    async with page.runtime.db.session() as session:
        surveys = await _visible_surveys(session, page, None if whole_account else {s.id for s in sets})
    raw = request.query_params.get("survey", "").strip()[:40]
    ids: set[uuid.UUID] | None = None if whole_account else {s.id for s in surveys}
    if raw:
        chosen = next((s.id for s in surveys if str(s.id) == raw.lower()), None)
        if chosen is None:
            errors["survey"] = "choose a survey from the list"
        else:
            ids = {chosen}
    return dates, {**dates.shown, "survey": raw}, errors, ids, surveys


@router.get("/console/activity/survey-answers")
async def survey_answers(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    dates, shown, errors, ids, surveys = await _answer_filters(page, request)
    responses: list[Any] = []
    total = 0
    if not errors:
        async with page.runtime.db.session() as session:
            responses, total = await engagement_activity.list_survey_responses(
                session,
                page.account_id,
                dates.start,
                dates.end,
                survey_ids=ids,
                limit=PER_PAGE,
                offset=offset_of(request),
            )
    return web.render(
        request,
        "activity/survey_answers.html",
        {
            "responses": responses,
            **paging(request, total),
            "filters": shown,
            "errors": errors,
            "survey_options": [("", "All surveys")] + [(str(s.id), s.name) for s in surveys],
            "survey_count": len(surveys),
        },
        page=page,
        status_code=400 if errors else 200,
    )


@router.get("/console/activity/survey-answers/export.csv")
async def survey_answers_csv(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    dates, _shown, errors, ids, _surveys = await _answer_filters(page, request)
    if errors:
        raise filter_error(errors)
    lines = engagement_activity.answers_csv(page.runtime.db, page.account_id, dates.start, dates.end, survey_ids=ids)
    return csv_download(lines, f"survey-answers-{dates.shown['from']}-{dates.shown['to']}.csv")
