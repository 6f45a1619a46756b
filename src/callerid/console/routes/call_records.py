"""Call records (issue 11 §6): batches with their counts by outcome, a batch's records, one record, real-time (R2)
records, and a search by receiver or caller number; each list with its CSV.

Batches and call records belong to the whole account (labels are account-level): admins only
(``VIEW_CALL_RECORDS``). Every read is bounded by a date range within the records' retention period and walks
only that range (``personalisation.activity``: what each read costs and why no index was added for it)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from callerid.accounts.permissions import Permission
from callerid.console import web
from callerid.console.routes.activity import (
    PER_PAGE,
    Dates,
    csv_download,
    date_filter,
    filter_error,
    offset_of,
    paging,
)
from callerid.personalisation import activity, record_search
from callerid.personalisation.activity import OUTCOME_TITLES, OUTCOMES, ActivityRecord, BatchSummary
from callerid.phone import normalise_phone
from callerid.timefmt import iso_z

router = APIRouter()
ALLOW = Permission.VIEW_CALL_RECORDS
REALTIME_OUTCOMES = tuple(activity.STATE_OF_REALTIME_OUTCOME)
SIDE_TITLES = {
    record_search.EITHER: "Receiver or caller",
    record_search.RECEIVER: "Receiver",
    record_search.CALLER: "Caller",
}
RECORD_CSV_COLUMNS = (
    "created_at",
    "batch_id",
    "record_id",
    "caller",
    "receiver",
    "label_id",
    "label_name",
    "call_reason",
    "starts_at",
    "ends_at",
    "outcome",
    "field",
    "message",
)
BATCH_CSV_COLUMNS = ("batch_id", "version", "records", *OUTCOMES, "created_at")


def _max_days(page: web.Page) -> int:
    # A record is kept call_record_retention_days after its window ended, a window is at most a day long.
    return page.settings.call_record_retention_days + 1


def _outcome_filter(request: Request, allowed: Iterable[str]) -> tuple[str, dict[str, str]]:
    raw = request.query_params.get("outcome", "").strip()[:40]
    if raw and raw not in allowed:
        return raw, {"outcome": "choose an outcome from the list"}
    return raw, {}


def _outcome_options(outcomes: Iterable[str]) -> list[tuple[str, str]]:
    return [("", "All outcomes")] + [(o, OUTCOME_TITLES[o]) for o in outcomes]


def _csv_line(values: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(["" if v is None else v for v in values])
    return buffer.getvalue()


def _record_row(record: ActivityRecord) -> list[Any]:
    values = record.values
    return [
        iso_z(record.created_at),
        record.batch_id,
        record.record_id,
        *(values.get(name) for name in ("caller", "receiver", "label_id", "label_name", "call_reason")),
        values.get("starts_at"),
        values.get("ends_at"),
        record.outcome,
        record.field,
        record.message,
    ]


async def _record_lines(records: AsyncIterator[ActivityRecord] | Iterable[ActivityRecord]) -> AsyncIterator[str]:
    yield _csv_line(RECORD_CSV_COLUMNS)
    if isinstance(records, AsyncIterator):
        async for record in records:
            yield _csv_line(_record_row(record))
    else:
        for record in records:
            yield _csv_line(_record_row(record))


# --- batches -----------------------------------------------------------------------------------------------------


@router.get("/console/activity/batches")
async def batches(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    dates, errors = date_filter(page, request, max_days=_max_days(page))
    typed_batch = request.query_params.get("batch", "").strip()[:60]
    if typed_batch:
        try:
            wanted = uuid.UUID(typed_batch)
        except ValueError:
            errors["batch"] = "batch is invalid: paste a batch id (a UUID) as the API answered it"
        else:
            async with page.runtime.db.session() as session:
                found = await activity.get_batch(session, page.account_id, wanted)
            if found is not None:
                return web.redirect(f"/console/activity/batches/{found.id}")
            errors["batch"] = "no batch of your account has this id (batches are kept as long as their records)"
    summaries: list[BatchSummary] = []
    total = 0
    if not errors:
        async with page.runtime.db.session() as session:
            summaries, total = await activity.list_batches(
                session, page.account_id, dates.start, dates.stop, limit=PER_PAGE, offset=offset_of(request)
            )
    return web.render(
        request,
        "activity/batches.html",
        {
            "batches": summaries,
            **paging(request, total),
            "filters": dates.shown,
            "typed_batch": typed_batch,
            "errors": errors,
            "outcome_titles": OUTCOME_TITLES,
            "outcomes": OUTCOMES,
        },
        page=page,
        status_code=400 if errors else 200,
    )


@router.get("/console/activity/batches/export.csv")
async def batches_csv(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    dates, errors = date_filter(page, request, max_days=_max_days(page))
    if errors:
        raise filter_error(errors)

    async def lines() -> AsyncIterator[str]:
        yield _csv_line(BATCH_CSV_COLUMNS)
        async for batch in activity.each_batch(page.runtime.db, page.account_id, dates.start, dates.stop):
            counts = [batch.counts.get(outcome, 0) for outcome in OUTCOMES]
            yield _csv_line([batch.id, batch.version, batch.record_count, *counts, iso_z(batch.created_at)])

    return csv_download(lines(), f"batches-{dates.shown['from']}-{dates.shown['to']}.csv")


async def _batch(page: web.Page, batch_id: str) -> tuple[BatchSummary, list[ActivityRecord]]:
    async with page.runtime.db.session() as session:
        batch = await activity.get_batch(session, page.account_id, web.path_uuid(batch_id))
        if batch is None:
            raise web.not_found()
        return batch, await activity.records_of_batch(session, page.account_id, batch)


@router.get("/console/activity/batches/{batch_id}")
async def batch_page(request: Request, batch_id: str) -> Response:
    page = await web.page_for(request, ALLOW)
    batch, records = await _batch(page, batch_id)
    outcome, errors = _outcome_filter(request, OUTCOMES)
    shown = [r for r in records if r.outcome == outcome] if outcome and not errors else records
    offset = offset_of(request)
    return web.render(
        request,
        "activity/batch.html",
        {
            "batch": batch,
            "records": shown[offset : offset + PER_PAGE],
            **paging(request, len(shown)),
            "filters": {"outcome": outcome},
            "errors": errors,
            "outcome_options": _outcome_options(o for o in OUTCOMES if batch.counts.get(o)),
            "outcome_titles": OUTCOME_TITLES,
            "outcomes": OUTCOMES,
        },
        page=page,
        status_code=400 if errors else 200,
    )


@router.get("/console/activity/batches/{batch_id}/export.csv")
async def batch_csv(request: Request, batch_id: str) -> Response:
    page = await web.page_for(request, ALLOW)
    batch, records = await _batch(page, batch_id)
    outcome, errors = _outcome_filter(request, OUTCOMES)
    if errors:
        raise filter_error(errors)
    shown = [r for r in records if r.outcome == outcome] if outcome else records
    return csv_download(_record_lines(shown), f"batch-{batch.id}.csv")


# --- one record --------------------------------------------------------------------------------------------------

# A record's console id: its internal id (group key and position), a positive 63-bit integer.
_LARGEST_REF = (1 << 63) - 1


@router.get("/console/activity/records/{record}")
async def record_page(request: Request, record: str) -> Response:
    page = await web.page_for(request, ALLOW)
    if not (record.isascii() and record.isdigit() and len(record) <= 19) or int(record) > _LARGEST_REF:
        raise web.not_found()
    async with page.runtime.db.session() as session:
        found = await activity.get_record(session, page.account_id, int(record))
    if found is None:
        raise web.not_found()
    return web.render(
        request,
        "activity/record.html",
        {"record": found, "outcome_titles": OUTCOME_TITLES},
        page=page,
    )


# --- real-time records ----------------------------------------------------------------------------------------------


@router.get("/console/activity/real-time")
async def real_time(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    dates, errors = date_filter(page, request, max_days=_max_days(page))
    outcome, outcome_errors = _outcome_filter(request, REALTIME_OUTCOMES)
    errors.update(outcome_errors)
    found = activity.RecordPage([], 0)
    if not errors:
        async with page.runtime.db.session() as session:
            found = await activity.realtime_records(
                session,
                page.account_id,
                dates.start,
                dates.stop,
                outcome=outcome or None,
                limit=PER_PAGE,
                offset=offset_of(request),
            )
    return web.render(
        request,
        "activity/real_time.html",
        {
            "records": found.records,
            "counts": found.counts,
            **paging(request, found.total),
            "filters": {**dates.shown, "outcome": outcome},
            "errors": errors,
            "outcome_options": _outcome_options(REALTIME_OUTCOMES),
            "outcome_titles": OUTCOME_TITLES,
            "outcomes": REALTIME_OUTCOMES,
        },
        page=page,
        status_code=400 if errors else 200,
    )


@router.get("/console/activity/real-time/export.csv")
async def real_time_csv(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    dates, errors = date_filter(page, request, max_days=_max_days(page))
    outcome, outcome_errors = _outcome_filter(request, REALTIME_OUTCOMES)
    errors.update(outcome_errors)
    if errors:
        raise filter_error(errors)
    records = activity.each_realtime_record(
        page.runtime.db, page.account_id, dates.start, dates.stop, outcome=outcome or None
    )
    return csv_download(_record_lines(records), f"real-time-records-{dates.shown['from']}-{dates.shown['to']}.csv")


# --- search by number ------------------------------------------------------------------------------------------------


def _search_filters(page: web.Page, request: Request) -> tuple[Dates, dict[str, str], dict[str, str], int | None, str]:
    """Dates (default: as far back as records are kept), the filters as typed, errors, the number and the side."""
    max_days = _max_days(page)
    dates, errors = date_filter(page, request, max_days=max_days, default_days=max_days)
    query = request.query_params
    typed = query.get("number", "").strip()[:40]
    side = query.get("side", "").strip()[:20] or record_search.EITHER
    number: int | None = None
    if side not in SIDE_TITLES:
        errors["side"] = "choose receiver, caller or either from the list"
        side = record_search.EITHER
    if typed:
        normalised = normalise_phone(typed)
        if normalised is None:
            errors["number"] = "number is invalid: 10 to 15 digits, optionally starting with +"
        else:
            number = int(normalised)
    return dates, {**dates.shown, "number": typed, "side": side}, errors, number, side


@router.get("/console/activity/search")
async def search(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    dates, shown, errors, number, side = _search_filters(page, request)
    records: list[ActivityRecord] = []
    total = 0
    if number is not None and not errors:
        async with page.runtime.db.session() as session:
            records, total = await record_search.search_records(
                session,
                page.account_id,
                number,
                dates.start,
                dates.stop,
                side=side,
                limit=PER_PAGE,
                offset=offset_of(request),
            )
    return web.render(
        request,
        "activity/search.html",
        {
            "records": records,
            **paging(request, total),
            "searched": number is not None and not errors,
            "filters": shown,
            "errors": errors,
            "side_options": list(SIDE_TITLES.items()),
            "outcome_titles": OUTCOME_TITLES,
            "retention_days": page.settings.call_record_retention_days,
        },
        page=page,
        status_code=400 if errors else 200,
    )


@router.get("/console/activity/search/export.csv")
async def search_csv(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    dates, _shown, errors, number, side = _search_filters(page, request)
    if errors:
        raise filter_error(errors)
    if number is None:  # no search yet: the view is empty, and so is its file
        return csv_download(_record_lines([]), "records.csv")
    records = record_search.each_found_record(
        page.runtime.db, page.account_id, number, dates.start, dates.stop, side=side
    )
    return csv_download(_record_lines(records), f"records-of-{number}-{dates.shown['from']}-{dates.shown['to']}.csv")
