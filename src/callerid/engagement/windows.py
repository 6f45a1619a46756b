"""Call Me Back callback windows: parsing ``Saturday 12:30-13:00`` and finding the next one (SPEC §10.4, §12 #35).

A window is a weekday and a start/end time of day in the account's timezone. Without a slot picker the platform
fills a request with the first window that starts after the request time.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WEEKDAY_BY_NAME = {name.lower(): name for name in WEEKDAYS} | {name[:3].lower(): name for name in WEEKDAYS}
_WINDOW = re.compile(r"^\s*([A-Za-z]+)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class WindowError(ValueError):
    """A callback window that cannot be read; the message says which and why."""


def _default_windows() -> list[dict[str, str]]:
    # Monday to Saturday, 30-minute windows (as in the reference's examples) from 10:00 to 18:00.
    windows: list[dict[str, str]] = []
    for weekday in WEEKDAYS[:6]:
        for minutes in range(10 * 60, 18 * 60, 30):
            start = f"{minutes // 60:02d}:{minutes % 60:02d}"
            end = f"{(minutes + 30) // 60:02d}:{(minutes + 30) % 60:02d}"
            windows.append({"weekday": weekday, "start": start, "end": end})
    return windows


DEFAULT_WINDOWS: list[dict[str, str]] = _default_windows()


def parse_window(text: str) -> dict[str, str]:
    """``Saturday 12:30-13:00`` (or ``sat 12:30-13:00``) -> ``{"weekday", "start", "end"}``; end after start."""
    match = _WINDOW.match(text)
    if match is None:
        raise WindowError(f"window {text!r} is not like 'Saturday 12:30-13:00'")
    day, start_h, start_m, end_h, end_m = match.groups()
    weekday = _WEEKDAY_BY_NAME.get(day.lower())
    if weekday is None:
        raise WindowError(f"window {text!r}: {day!r} is not a weekday")
    try:
        start = time(int(start_h), int(start_m))
        end = time(int(end_h), int(end_m))
    except ValueError as exc:
        raise WindowError(f"window {text!r}: {exc}") from None
    if end <= start:
        raise WindowError(f"window {text!r}: the end must be after the start on the same day")
    return {"weekday": weekday, "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}


def next_window(windows: list[Any], after: datetime, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """Bounds (aware datetimes) of the first window starting strictly after ``after``; None without windows."""
    local_now = after.astimezone(zone)
    best: tuple[datetime, datetime] | None = None
    # Eight days ahead covers every weekday, including today's weekday next week.
    for offset in range(8):
        day = local_now.date() + timedelta(days=offset)
        weekday = WEEKDAYS[day.weekday()]
        for window in windows:
            if window["weekday"] != weekday:
                continue
            start = datetime.combine(day, time.fromisoformat(window["start"]), zone)
            end = datetime.combine(day, time.fromisoformat(window["end"]), zone)
            if start > after and (best is None or start < best[0]):
                best = (start, end)
        if best is not None:
            return best
    return None
