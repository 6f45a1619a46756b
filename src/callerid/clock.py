"""The one source of "now".

All code asks this module for the time so that tests can move it instead of sleeping. Times are
timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_system: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731
_offset = timedelta(0)
_frozen: datetime | None = None


def now() -> datetime:
    if _frozen is not None:
        return _frozen
    return _system() + _offset


def now_ms() -> int:
    return int(now().timestamp() * 1000)


def freeze(at: datetime) -> None:
    """Stop the clock at ``at`` (tests only)."""
    global _frozen
    _frozen = at.astimezone(UTC)


def advance(delta: timedelta | float) -> None:
    """Move time forward by ``delta`` (a timedelta or seconds), frozen or not (tests only)."""
    global _frozen, _offset
    step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
    if _frozen is not None:
        _frozen += step
    else:
        _offset += step


def reset() -> None:
    """Back to real time."""
    global _frozen, _offset
    _frozen = None
    _offset = timedelta(0)
