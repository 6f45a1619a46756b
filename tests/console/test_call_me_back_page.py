"""A feature set's Call Me Back config through the console: hours per weekday cut into slots, several windows a
day, the windows.py rules plus no overlaps, errors next to their row with nothing saved, "Add window" with and
without htmx; and the hours/slots conversion (``engagement.cmb``) that keeps the stored windows exact."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callerid.config import Settings
from callerid.db import Database
from callerid.engagement import cmb
from callerid.engagement.models import CmbConfig
from callerid.engagement.windows import DEFAULT_WINDOWS
from callerid.numbers.models import FeatureSet
from tests.console.conftest import World, browser, build_world, csrf_of, sign_in

ROW = re.compile(r'name="w-(\w+)-([a-z0-9]+)-start" value="([0-9:]*)"')


@pytest.fixture
async def world(db: Database, settings: Settings) -> World:
    world = await build_world(db, settings, "Acme Flowers")
    async with db.transaction() as session:
        fs = await session.get(FeatureSet, uuid.UUID(world.objects["feature_set_id"]))
        assert fs is not None
        fs.call_me_back = True
    return world


@pytest.fixture
async def admin_of(app: Any, world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as http:
        person = world.people["admin"]
        assert (await sign_in(http, person.email, person.password)).status_code == 303
        yield http


def path(world: World) -> str:
    return f"/console/feature-sets/{world.objects['feature_set_id']}/call-me-back"


async def saved(db: Database, world: World) -> CmbConfig | None:
    async with db.session() as session:
        return await session.scalar(
            select(CmbConfig).where(CmbConfig.feature_set_id == uuid.UUID(world.objects["feature_set_id"]))
        )


def rows_of(page: str) -> dict[str, list[str]]:
    """weekday -> start times of its rows as the form shows them (the empty row last)."""
    found: dict[str, list[str]] = {}
    for weekday, _key, start in ROW.findall(page):
        found.setdefault(weekday, []).append(start)
    return found


def hours(csrf: str, *windows: tuple[str, str, str], **fields: str) -> dict[str, str]:
    data = {"csrf_token": csrf, "name": "Call us back", "slot_minutes": "30", **fields}
    for n, (weekday, start, end) in enumerate(windows):
        data[f"w-{weekday}-{n}-start"] = start
        data[f"w-{weekday}-{n}-end"] = end
    return data


async def test_the_defaults_are_shown_as_hours_and_saving_cuts_them_into_slots(
    admin_of: httpx.AsyncClient, db: Database, world: World
) -> None:
    page = await admin_of.get(path(world))
    assert page.status_code == 200
    # No config saved yet: the defaults, as hours (Monday-Saturday 10:00-18:00) in 30-minute slots.
    rows = rows_of(page.text)
    assert rows["Monday"] == ["10:00", ""] and rows["Sunday"] == [""]
    assert '<option value="30" selected>30-minute slots</option>' in page.text
    assert 'value="Call Me Back"' in page.text and "hours (Asia/Kolkata)" in page.text  # the account's zone
    assert await saved(db, world) is None

    data = hours(
        csrf_of(page.text),
        ("Monday", "09:00", "12:00"),
        ("Monday", "14:00", "15:00"),
        ("Sunday", "10:00", "10:45"),
        slot_minutes="60",
        slot_picker="on",
    )
    response = await admin_of.post(path(world), data=data)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/console/feature-sets/{world.objects['feature_set_id']}"
    summary = await admin_of.get(response.headers["location"])
    assert "Call Me Back hours of Returns line saved" in summary.text
    assert '<span class="weekday">Monday</span> 09:00-12:00, 14:00-15:00</li>' in summary.text
    assert "in 60-minute slots" in summary.text and "On: people choose a slot on their phone" in summary.text
    config = await saved(db, world)
    assert config is not None and config.name == "Call us back" and config.slot_picker is True
    assert config.windows == [
        {"weekday": "Monday", "start": "09:00", "end": "10:00"},
        {"weekday": "Monday", "start": "10:00", "end": "11:00"},
        {"weekday": "Monday", "start": "11:00", "end": "12:00"},
        {"weekday": "Monday", "start": "14:00", "end": "15:00"},
        {"weekday": "Sunday", "start": "10:00", "end": "10:45"},
    ]
    again = await admin_of.get(path(world))
    assert rows_of(again.text) == {
        "Monday": ["09:00", "14:00", ""],
        **{day: [""] for day in ("Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")},
        "Sunday": ["10:00", ""],
    }
    assert '<option value="60" selected>60-minute slots</option>' in again.text


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            ("Tuesday", "18:00", "10:00"),
            "window &#39;Tuesday 18:00-10:00&#39;: the end must be after the start on the same day",
        ),
        (
            ("Tuesday", "11:00", "11:00"),
            "window &#39;Tuesday 11:00-11:00&#39;: the end must be after the start on the same day",
        ),
        (("Tuesday", "25:00", "26:00"), "window &#39;Tuesday 25:00-26:00&#39;: hour must be in 0..23"),
        (("Tuesday", "9h", "10h"), "window &#39;Tuesday 9h-10h&#39; is not like &#39;Saturday 12:30-13:00&#39;"),
        (("Tuesday", "09:00", ""), "window on Tuesday: both a start and an end time are needed"),
        (("Tuesday", "10:00", "12:30"), "window Tuesday 10:00-12:30 overlaps 09:00-11:00 on the same day"),
    ],
)
async def test_a_bad_window_is_refused_next_to_its_row_and_nothing_is_saved(
    admin_of: httpx.AsyncClient, db: Database, world: World, window: tuple[str, str, str], message: str
) -> None:
    csrf = csrf_of((await admin_of.get(path(world))).text)
    data = hours(csrf, ("Tuesday", "09:00", "11:00"), ("Friday", "10:00", "11:00"))
    data["w-Tuesday-7-start"], data["w-Tuesday-7-end"] = window[1], window[2]
    response = await admin_of.post(path(world), data=data)
    assert response.status_code == 400
    assert f'<p class="error" id="w-Tuesday-7-error">{message}</p>' in response.text
    assert "Some windows need a change" in response.text
    # The form keeps what was typed, the good rows included.
    assert 'name="w-Friday-1-start" value="10:00"' in response.text
    assert f'name="w-Tuesday-7-start" value="{window[1]}"' in response.text
    assert await saved(db, world) is None


async def test_name_slots_and_an_empty_week_are_checked_too(
    admin_of: httpx.AsyncClient, db: Database, world: World
) -> None:
    csrf = csrf_of((await admin_of.get(path(world))).text)
    response = await admin_of.post(path(world), data=hours(csrf, ("Monday", "09:00", "10:00"), name=" "))
    assert response.status_code == 400
    assert '<p class="error" id="name-error">cmb config name must be 1-100 characters</p>' in response.text
    response = await admin_of.post(path(world), data=hours(csrf, ("Monday", "09:00", "10:00"), slot_minutes="7"))
    assert response.status_code == 400
    assert "slot length must be one of 15, 30, 60 or 120 minutes" in response.text
    response = await admin_of.post(path(world), data=hours(csrf, name="Call\u202eus"))
    assert response.status_code == 400
    assert "cmb config name contains characters that cannot be displayed" in response.text
    assert "at least one callback window is needed" in response.text
    # Removing every window is an empty week too.
    data = hours(csrf, ("Monday", "09:00", "10:00"))
    response = await admin_of.post(path(world), data={**data, "w-Monday-0-remove": "on"})
    assert response.status_code == 400 and "at least one callback window is needed" in response.text
    assert await saved(db, world) is None


async def test_removing_windows_and_keeping_each_window_as_one_slot(
    admin_of: httpx.AsyncClient, db: Database, world: World
) -> None:
    csrf = csrf_of((await admin_of.get(path(world))).text)
    data = hours(
        csrf,
        ("Monday", "09:00", "09:50"),
        ("Monday", "09:50", "11:00"),
        ("Friday", "08:00", "09:00"),
        slot_minutes="window",
    )
    data["w-Friday-2-remove"] = "on"
    assert (await admin_of.post(path(world), data=data)).status_code == 303
    config = await saved(db, world)
    assert config is not None
    assert config.windows == [
        {"weekday": "Monday", "start": "09:00", "end": "09:50"},
        {"weekday": "Monday", "start": "09:50", "end": "11:00"},
    ]
    page = await admin_of.get(path(world))
    # 50 and 70 minutes are no offered slot length: each window is shown and kept as it is.
    assert '<option value="window" selected>Each window is one slot</option>' in page.text
    assert rows_of(page.text)["Monday"] == ["09:00", "09:50", ""]


async def test_add_window_without_and_with_javascript(admin_of: httpx.AsyncClient, db: Database, world: World) -> None:
    csrf = csrf_of((await admin_of.get(path(world))).text)
    # Without JavaScript the button posts the form back with one more row for its day; nothing is saved.
    data = {**hours(csrf, ("Monday", "09:00", "10:00")), "w-Monday-n1-start": "", "w-Monday-n1-end": ""}
    response = await admin_of.post(path(world), data={**data, "add": "Monday"})
    assert response.status_code == 200
    assert rows_of(response.text)["Monday"] == ["09:00", "", ""]
    assert await saved(db, world) is None
    # With htmx it fetches one empty row (its weekday is the button's value) and appends it.
    fragment = await admin_of.get(f"{path(world)}/window", params={"add": "Friday"})
    assert fragment.status_code == 200 and "<!doctype html>" not in fragment.text
    assert re.search(r'name="w-Friday-a[0-9a-f]{8}-start" value=""', fragment.text)
    assert "(Friday, new window)" in fragment.text
    assert (await admin_of.get(f"{path(world)}/window", params={"add": "Funday"})).status_code == 404


async def test_with_call_me_back_off_the_page_says_so_and_nothing_is_saved(
    admin_of: httpx.AsyncClient, db: Database, world: World
) -> None:
    async with db.transaction() as session:
        fs = await session.get(FeatureSet, uuid.UUID(world.objects["feature_set_id"]))
        assert fs is not None
        fs.call_me_back = False
    page = await admin_of.get(path(world))
    assert page.status_code == 200
    assert "Call Me Back is off for this feature set" in page.text and "Save Call Me Back" not in page.text
    response = await admin_of.post(path(world), data=hours(csrf_of(page.text), ("Monday", "09:00", "10:00")))
    assert response.status_code == 400
    assert f"call me back is not enabled on feature set {world.objects['feature_set_id']}" in response.text
    assert await saved(db, world) is None


def test_hours_and_slots_turn_back_into_exactly_the_stored_windows() -> None:
    defaults = cmb.hours_of(DEFAULT_WINDOWS)
    assert defaults.slot_minutes == 30
    assert defaults.windows[0] == {"weekday": "Monday", "start": "10:00", "end": "18:00"} and len(defaults.windows) == 6
    assert cmb.split_into_slots(defaults.windows, defaults.slot_minutes) == DEFAULT_WINDOWS
    odd = [
        {"weekday": "Sunday", "start": "10:00", "end": "10:20"},
        {"weekday": "Sunday", "start": "10:20", "end": "11:00"},
    ]
    kept = cmb.hours_of(odd)
    assert (kept.windows, kept.slot_minutes) == (odd, None)
    assert cmb.hours_of([]).windows == []
    windows, problems = cmb.check_callback_windows(
        [
            cmb.WindowRow("Monday", "10:00", "14:00"),
            cmb.WindowRow("Monday", "11:00", "12:00"),
            cmb.WindowRow("Monday", "13:00", "15:00"),  # overlaps the first, not the second
            cmb.WindowRow("Monday", "15:00", "15:30"),  # touching is fine
        ]
    )
    assert set(problems) == {1, 2} and "overlaps 10:00-14:00" in problems[2]
    assert [w["start"] for w in windows] == ["10:00", "11:00", "13:00", "15:00"]
