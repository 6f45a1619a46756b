"""The retry schedule notation: ``2m,6m,30m,1h,5h,1d,2d`` (units s, m, h, d)."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_schedule(value: str) -> list[timedelta]:
    """Delays before each retry, in order. An empty string means no retries."""
    if value.strip() == "":
        return []
    delays: list[timedelta] = []
    for part in value.split(","):
        match = _PART.match(part)
        if match is None:
            raise ValueError(f"retry delay {part.strip()!r} is not a number followed by s, m, h or d")
        delays.append(timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)]))
    return delays
