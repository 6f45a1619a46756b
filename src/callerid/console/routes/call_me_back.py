"""A feature set's Call Me Back configuration (SPEC §10.4): name, slot picker, and callback hours per weekday in the
account timezone, cut into slots. The form works without JavaScript (each day has an empty row, and "Add window"
posts the form back with one more); with htmx, "Add window" fetches one row in place. The rules are
``engagement.cmb.set_callback_hours``; errors are shown next to their row."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from callerid.accounts.permissions import Permission
from callerid.console import web
from callerid.console.routes.feature_sets import Loaded, feature_set_for
from callerid.engagement import cmb
from callerid.engagement.checks import DEFAULT_CMB_CONFIG_NAME
from callerid.engagement.windows import WEEKDAYS
from callerid.failures import InvalidInput

router = APIRouter()
MANAGE = Permission.MANAGE_FEATURE_SETS
# One window's inputs: w-<weekday>-<row key>-start|end|remove. Row keys only tell rows apart.
ROW_FIELD = re.compile(r"^w-(" + "|".join(WEEKDAYS) + r")-([a-z0-9]{1,12})-(start|end|remove)$")
KEEP_WINDOWS = "window"  # the slot-length choice "each window is one slot"
SLOT_TITLES = [(str(m), f"{m}-minute slots") for m in cmb.SLOT_MINUTES] + [(KEEP_WINDOWS, "Each window is one slot")]
FIELD_OF_MESSAGE = (("cmb config name", "name"),)


@dataclass
class Row:
    key: str
    start: str = ""
    end: str = ""
    remove: bool = False
    error: str = ""

    @property
    def blank(self) -> bool:
        return not self.start.strip() and not self.end.strip()


@dataclass
class HoursForm:
    name: str
    slot_picker: bool
    slots: str
    days: dict[str, list[Row]]


def _with_empty_rows(days: dict[str, list[Row]]) -> dict[str, list[Row]]:
    """Each day ends with one empty row, where a window is added without JavaScript."""
    for weekday, rows in days.items():
        if not rows or not rows[-1].blank:
            rows.append(Row(key=f"n{len(rows)}"))
        days[weekday] = rows
    return days


def _form_of_config(name: str, slot_picker: bool, windows: list[dict[str, str]]) -> HoursForm:
    hours = cmb.hours_of(windows)
    days: dict[str, list[Row]] = {weekday: [] for weekday in WEEKDAYS}
    for window in hours.windows:
        rows = days[window["weekday"]]
        rows.append(Row(key=str(len(rows)), start=window["start"], end=window["end"]))
    slots = KEEP_WINDOWS if hours.slot_minutes is None else str(hours.slot_minutes)
    return HoursForm(name, slot_picker, slots, _with_empty_rows(days))


def _form_of_post(form: FormData) -> HoursForm:
    days: dict[str, dict[str, Row]] = {weekday: {} for weekday in WEEKDAYS}
    for field_name, value in form.multi_items():
        match = ROW_FIELD.match(field_name)
        if match is None or not isinstance(value, str):
            continue
        weekday, key, part = match.groups()
        row = days[weekday].setdefault(key, Row(key=key))
        if part == "remove":
            row.remove = True
        else:
            setattr(row, part, value[:20])
    return HoursForm(
        name=web.text(form, "name"),
        slot_picker=bool(web.text(form, "slot_picker")),
        slots=web.text(form, "slot_minutes"),
        days={weekday: list(rows.values()) for weekday, rows in days.items()},
    )


def _render(request: Request, page: web.Page, loaded: Loaded, hours: HoursForm, errors: dict[str, str]) -> Response:
    return web.render(
        request,
        "feature_sets/call_me_back.html",
        {
            "loaded": loaded,
            "fs": loaded.feature_set,
            "hours": hours,
            "errors": errors,
            "slot_options": SLOT_TITLES,
            "weekdays": WEEKDAYS,
        },
        page=page,
        status_code=400 if errors else 200,
    )


@router.get("/console/feature-sets/{feature_set_id}/call-me-back")
async def call_me_back_page(request: Request, feature_set_id: str) -> Response:
    page = await web.page_for(request, MANAGE)
    loaded = await feature_set_for(page, feature_set_id, MANAGE)
    async with page.runtime.db.session() as session:
        config = await cmb.find_cmb_config(session, page.account_id, loaded.feature_set.id)
    if config is None:  # Call Me Back off, or turned on before configs were saved: the defaults apply
        hours = _form_of_config(DEFAULT_CMB_CONFIG_NAME, False, list(cmb.DEFAULT_CMB_CONFIG.windows))
    else:
        hours = _form_of_config(config.name, config.slot_picker, list(config.windows))
    return _render(request, page, loaded, hours, {})


@router.get("/console/feature-sets/{feature_set_id}/call-me-back/window")
async def window_row(request: Request, feature_set_id: str) -> Response:
    """One more empty row for a day (htmx appends it to the day's rows)."""
    page = await web.page_for(request, MANAGE)
    await feature_set_for(page, feature_set_id, MANAGE)
    weekday = request.query_params.get("add", "Monday")
    if weekday not in WEEKDAYS:
        raise web.not_found()
    row = Row(key="a" + uuid.uuid4().hex[:8])
    return web.render_fragment(request, "feature_sets/_window_row.html", {"weekday": weekday, "row": row, "number": 0})


@router.post("/console/feature-sets/{feature_set_id}/call-me-back")
async def save_call_me_back(request: Request, feature_set_id: str) -> Response:
    page, form = await web.form_for(request, MANAGE)
    loaded = await feature_set_for(page, feature_set_id, MANAGE)
    hours = _form_of_post(form)
    added = web.text(form, "add")
    if added in WEEKDAYS:  # "Add window" without JavaScript: the same form with one more row, nothing saved
        hours.days[added].append(Row(key="a" + uuid.uuid4().hex[:8]))
        return _render(request, page, loaded, hours, {})
    kept = [(weekday, row) for weekday, rows in hours.days.items() for row in rows if not row.remove and not row.blank]
    errors: dict[str, str] = {}
    slot_minutes: int | None = None
    if hours.slots != KEEP_WINDOWS:
        slot_minutes = int(hours.slots) if hours.slots.isdigit() and len(hours.slots) <= 4 else -1
    try:
        async with page.runtime.db.transaction() as session:
            await cmb.set_callback_hours(
                session,
                account_id=page.account_id,
                feature_set_id=loaded.feature_set.id,
                name=hours.name,
                slot_picker=hours.slot_picker,
                rows=[cmb.WindowRow(weekday, row.start, row.end) for weekday, row in kept],
                slot_minutes=slot_minutes,
            )
    except cmb.CallbackHoursError as exc:
        for where, message in exc.problems.items():
            if isinstance(where, int):
                kept[where][1].error = message
            else:
                errors[where] = message
        if any(isinstance(where, int) for where in exc.problems):
            errors.setdefault("form", "Some windows need a change: see the message next to each.")
    except InvalidInput as exc:
        errors[web.field_of(str(exc), FIELD_OF_MESSAGE)] = str(exc)
    if errors:
        hours.days = _with_empty_rows(
            {day: [row for row in rows if not row.remove] for day, rows in hours.days.items()}
        )
        return _render(request, page, loaded, hours, errors)
    return web.redirect(
        f"/console/feature-sets/{loaded.feature_set.id}", flash=f"Call Me Back hours of {loaded.feature_set.name} saved"
    )
