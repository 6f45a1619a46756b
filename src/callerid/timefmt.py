"""Wire formats for time values (SPEC §2.6)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_z(value: datetime) -> str:
    """ISO-8601 UTC with ``Z``, 1-6 fractional digits with trailing zeros dropped: ``2025-07-10T06:59:05.72Z``."""
    value = value.astimezone(UTC)
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{value.microsecond:06d}".rstrip("0") or "0"
    return f"{base}.{fraction}Z"


def epoch_seconds_str(value: datetime) -> str:
    return str(int(value.timestamp()))


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)
