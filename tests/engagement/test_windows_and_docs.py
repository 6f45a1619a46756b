"""Callback windows (parsing, next window across weeks and DST) and the OpenAPI document of the engagement API."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from callerid.app import create_app
from callerid.config import Settings
from callerid.engagement.windows import DEFAULT_WINDOWS, WindowError, next_window, parse_window


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Saturday 12:30-13:00", {"weekday": "Saturday", "start": "12:30", "end": "13:00"}),
        ("  mon 9:00 - 9:30 ", {"weekday": "Monday", "start": "09:00", "end": "09:30"}),
        ("SUNDAY 23:00-23:59", {"weekday": "Sunday", "start": "23:00", "end": "23:59"}),
    ],
)
def test_parse_window(text: str, expected: dict[str, str]) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Saturday", "is not like"),
        ("Funday 10:00-10:30", "is not a weekday"),
        ("Monday 24:00-24:30", "hour must be in 0..23"),
        ("Monday 10:60-11:00", "minute must be in 0..59"),
        ("Monday 10:30-10:30", "end must be after the start"),
    ],
)
def test_bad_windows(text: str, message: str) -> None:
    with pytest.raises(WindowError, match=message):
        parse_window(text)


def test_default_windows() -> None:
    assert len(DEFAULT_WINDOWS) == 6 * 16
    assert DEFAULT_WINDOWS[0] == {"weekday": "Monday", "start": "10:00", "end": "10:30"}
    assert DEFAULT_WINDOWS[-1] == {"weekday": "Saturday", "start": "17:30", "end": "18:00"}
    assert {w["weekday"] for w in DEFAULT_WINDOWS} == {
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    }


def test_next_window() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    weekly = [parse_window("Wednesday 10:00-10:30")]
    # Wednesday 2025-11-05 10:00 IST exactly: this week's window has started, so next week's.
    start, end = next_window(weekly, datetime(2025, 11, 5, 4, 30, tzinfo=UTC), kolkata) or (None, None)
    assert (start, end) == (
        datetime(2025, 11, 12, 10, 0, tzinfo=kolkata),
        datetime(2025, 11, 12, 10, 30, tzinfo=kolkata),
    )
    # One second earlier: today's.
    found = next_window(weekly, datetime(2025, 11, 5, 4, 29, 59, tzinfo=UTC), kolkata)
    assert found is not None and found[0] == datetime(2025, 11, 5, 10, 0, tzinfo=kolkata)
    assert next_window([], datetime(2025, 11, 5, tzinfo=UTC), kolkata) is None


def test_next_window_across_a_dst_change() -> None:
    new_york = ZoneInfo("America/New_York")
    # Saturday 2025-11-01 12:00 EDT; the clocks go back on Sunday: Monday 09:00 is EST (14:00Z).
    found = next_window([parse_window("Monday 09:00-09:30")], datetime(2025, 11, 1, 16, 0, tzinfo=UTC), new_york)
    assert found is not None
    assert (found[0].astimezone(UTC), found[1].astimezone(UTC)) == (
        datetime(2025, 11, 3, 14, 0, tzinfo=UTC),
        datetime(2025, 11, 3, 14, 30, tzinfo=UTC),
    )


def test_engagement_endpoints_are_documented() -> None:
    spec = create_app(Settings()).openapi()
    paths = spec["paths"]
    for path in ("/app/v1/call-me-back", "/app/v1/surveys/{survey_id}/responses"):
        operation = paths[path]["post"]
        assert operation["security"] == [{"DeviceToken": []}, {"DeviceTokenQuery": []}]
        assert "201" in operation["responses"]
        assert "business_number" in operation["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert paths["/app/v1/surveys"]["get"]["security"] == [{"DeviceToken": []}, {"DeviceTokenQuery": []}]
    cmb = paths["/clients/{clientAccountId}/openapi/callback-logs/summary"]["get"]
    assert [(p["name"], p["required"]) for p in cmb["parameters"] if p["in"] == "query"] == [
        ("from", True),
        ("to", True),
    ]
    uf = paths["/clients/{clientAccountId}/openapi/feedback_stack/{surveyId}/export_report"]["get"]
    assert [(p["name"], p["required"]) for p in uf["parameters"] if p["in"] == "query"] == [
        ("from_date", True),
        ("to_date", False),
    ]
    assert "text/csv" in paths["/downloads/{token}"]["get"]["responses"]["200"]["content"]
