"""Wire shapes of the analytics domain's app endpoint ``POST /app/v1/call-signals``: the body parsed by hand, so that
every error names its field (``signals[2].occurredAt``) as the rest of the app API does, and the OpenAPI models that
document the body and the answer. (The analytics API's own shapes live in ``analytics.api_schemas``.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from callerid.failures import InvalidInput
from callerid.openapi import PHONE_DESCRIPTION, PHONE_PATTERN
from callerid.phone import normalise_phone

# What happened to a call the phone looked up, in the order a call goes through them.
KINDS = ("displayed", "answered", "missed", "rejected", "ended")
ENDED = "ended"
MAX_DURATION_SECONDS = 86_400  # a call of a day or more is not a call
EVENT_ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
_MAX_TIME_LENGTH = 40  # "2026-12-03T13:24:55.123456+05:30" is 32


@dataclass(frozen=True, slots=True)
class SignalIn:
    """One signal as sent, checked for shape (its time is checked against the clock by ``analytics.signals``)."""

    index: int  # its position in ``signals``, for error messages
    event_id: str
    kind: str
    caller: str  # normalised (``callerid.phone``)
    occurred_at: datetime  # UTC
    duration_seconds: int | None  # ended only

    def field(self, name: str) -> str:
        return signal_field(self.index, name)


def signal_field(index: int, name: str) -> str:
    return f"signals[{index}].{name}"


def parse_call_signals(body: dict[str, Any], max_signals: int) -> list[SignalIn]:
    """The signals of a request body, or ``InvalidInput`` naming the first bad field (nothing is written then)."""
    signals = body.get("signals")
    if signals is None:
        raise InvalidInput("signals is required", field="signals")
    if not isinstance(signals, list) or not 1 <= len(signals) <= max_signals:
        raise InvalidInput(f"signals must be a list of 1 to {max_signals} signals", field="signals")
    return [_parse_signal(index, item) for index, item in enumerate(signals)]


def _parse_signal(index: int, item: object) -> SignalIn:
    if not isinstance(item, dict):
        raise InvalidInput(f"signals[{index}] must be an object", field=f"signals[{index}]")

    def required(name: str) -> object:
        value = item.get(name)
        if value is None:
            raise InvalidInput(f"{signal_field(index, name)} is required", field=signal_field(index, name))
        return value

    event_id = required("eventId")
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        name = signal_field(index, "eventId")
        raise InvalidInput(f"{name} must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -", field=name)
    kind = required("kind")
    if kind not in KINDS:
        name = signal_field(index, "kind")
        raise InvalidInput(f"{name} must be one of {', '.join(KINDS)}", field=name)
    caller = normalise_phone(required("caller"))
    if caller is None:
        name = signal_field(index, "caller")
        raise InvalidInput(f"{name} is invalid", field=name)
    occurred_at = _instant(required("occurredAt"), signal_field(index, "occurredAt"))
    duration = item.get("durationSeconds")
    name = signal_field(index, "durationSeconds")
    if kind == ENDED:
        if duration is None:
            raise InvalidInput(f"{name} is required for an ended signal", field=name)
        if isinstance(duration, bool) or not isinstance(duration, int) or not 0 <= duration <= MAX_DURATION_SECONDS:
            raise InvalidInput(f"{name} must be a whole number of seconds from 0 to {MAX_DURATION_SECONDS}", field=name)
    elif duration is not None:
        raise InvalidInput(f"{name} is only for an ended signal", field=name)
    return SignalIn(index, event_id, str(kind), caller, occurred_at, duration)


def _instant(value: object, name: str) -> datetime:
    """An ISO-8601 date and time with its UTC offset (``Z`` or ``+05:30``), as UTC."""
    problem = f"{name} must be an ISO-8601 date and time with its offset, e.g. 2026-12-03T18:54:55+05:30"
    if not isinstance(value, str) or len(value) > _MAX_TIME_LENGTH or "T" not in value.upper():
        raise InvalidInput(problem, field=name)
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise InvalidInput(problem, field=name)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # not a time, or one at the ends of the calendar (year 1 or 9999)
        raise InvalidInput(problem, field=name) from None


# --- documentation (OpenAPI) ---------------------------------------------------------------------------------------


class CallSignalDoc(BaseModel):
    eventId: str = Field(
        title="eventId",
        description="the phone's own id of this event, unique per phone: a resent id is accepted once",
        pattern=EVENT_ID_PATTERN,
    )
    kind: str = Field(
        description="`displayed`: the verified identity was shown; `answered`, `missed` (rang out or was let ring), "
        "`rejected` (declined); `ended`: an answered call ended (with `durationSeconds`)",
        json_schema_extra={"enum": list(KINDS)},
    )
    caller: str = Field(description=f"the number that called: {PHONE_DESCRIPTION}", pattern=PHONE_PATTERN)
    occurredAt: str = Field(
        title="occurredAt",
        description="when it happened, ISO-8601 with its offset; at most `CALLERID_SIGNAL_MAX_SKEW_SECONDS` (300) "
        "ahead of the server's clock and at most `CALLERID_SIGNAL_MAX_AGE_DAYS` (7) old",
        json_schema_extra={"format": "date-time"},
    )
    durationSeconds: int | None = Field(
        title="durationSeconds",
        default=None,
        description=f"`ended` only (required there): seconds talked, 0 to {MAX_DURATION_SECONDS}",
        ge=0,
        le=MAX_DURATION_SECONDS,
    )


class CallSignalsBody(BaseModel):
    """Documentation of ``POST /app/v1/call-signals`` (the route parses the body itself)."""

    signals: list[CallSignalDoc] = Field(
        description="one signal, or a queue of them (at most `CALLERID_SIGNAL_MAX_PER_REQUEST`, 50)",
        min_length=1,
        max_length=50,
    )

    model_config = {
        "json_schema_extra": {
            "example": {
                "signals": [
                    {
                        "eventId": "c81f-1-displayed",
                        "kind": "displayed",
                        "caller": "911234567898",
                        "occurredAt": "2026-12-03T18:54:55+05:30",
                    },
                    {
                        "eventId": "c81f-2-answered",
                        "kind": "answered",
                        "caller": "911234567898",
                        "occurredAt": "2026-12-03T18:55:02+05:30",
                    },
                    {
                        "eventId": "c81f-3-ended",
                        "kind": "ended",
                        "caller": "911234567898",
                        "occurredAt": "2026-12-03T18:57:10+05:30",
                        "durationSeconds": 128,
                    },
                ]
            }
        }
    }


class CallSignalsAnswer(BaseModel):
    """Every event id sent is in exactly one of the three lists, in the order sent."""

    accepted: list[str] = Field(description="new signals: stored and counted")
    duplicates: list[str] = Field(
        description="ids this phone sent before (or earlier in this request): already counted, nothing changed"
    )
    ignored: list[str] = Field(
        description="callers with no verified identity for this phone at that time (no call record for the pair, "
        "and not a listed number or one under secure branding): nothing was shown, so nothing is stored or counted"
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"accepted": ["c81f-1-displayed", "c81f-2-answered", "c81f-3-ended"], "duplicates": [], "ignored": []},
                {"accepted": ["c81f-3-ended"], "duplicates": ["c81f-1-displayed", "c81f-2-answered"], "ignored": []},
            ]
        }
    }
