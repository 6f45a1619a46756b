"""Counting into ``daily_figures``: every writer of a counted fact adds ``tally.steps(db)`` to its own write, so the
fact and its count commit together or not at all (exact across crashes and processes, no rollup to fall behind).
R2, the hottest writer, adds its counts as plain rows instead, which readers fold in first (``analytics.deltas``).

One upsert per distinct key of the write (``value = value + excluded.value`` on every counter column: a write adds
zeros to the counters it does not touch), on SQLite and PostgreSQL alike (``OnConflict``). A busy write adds one
statement: an R2 group commit of a few hundred records of one business shows a handful of keys.
"""

from __future__ import annotations

import bisect
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam

from callerid.analytics.models import COUNTERS, NO_ID, NO_NUMBER, DailyFigures, DailyWebhookDelays
from callerid.db.write import OnConflict, Step

_FIGURES = DailyFigures.__table__
_DELAYS = DailyWebhookDelays.__table__
_FIGURES_KEY = ("account_id", "day", "label_id", "feature_set_id", "business_number")

# Upper bounds (ms) of the webhook-delay histogram; the last bucket is everything above. The p95 shown is the upper
# bound of the bucket that holds it: exact to the bucket, from counters that add up across processes and days.
DELAY_BUCKETS_MS = (
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    900_000,
    3_600_000,
    21_600_000,
    86_400_000,
)

_ADD_FIGURES = OnConflict(
    lambda insert: (
        lambda stmt: stmt.on_conflict_do_update(
            index_elements=list(_FIGURES_KEY),
            set_={name: _FIGURES.c[name] + stmt.excluded[name] for name in COUNTERS},
        )
    )(insert(_FIGURES))
)
_ADD_DELAYS = OnConflict(
    lambda insert: (
        lambda stmt: stmt.on_conflict_do_update(
            index_elements=["account_id", "day", "bucket"], set_={"count": _DELAYS.c.count + stmt.excluded.count}
        )
    )(insert(_DELAYS).values(count=bindparam("count")))
)

_ZONES: dict[str, ZoneInfo] = {}


def day_in(timezone: str, instant: datetime) -> date:
    """The day ``instant`` falls on in an account's timezone (the figures' day)."""
    zone = _ZONES.get(timezone)
    if zone is None:
        zone = _ZONES[timezone] = ZoneInfo(timezone)
    return instant.astimezone(zone).date()


def delay_bucket(delay_ms: float) -> int:
    return bisect.bisect_left(DELAY_BUCKETS_MS, delay_ms)


def bucket_upper_ms(bucket: int) -> int | None:
    """The bucket's upper bound; None for the open last bucket."""
    return DELAY_BUCKETS_MS[bucket] if bucket < len(DELAY_BUCKETS_MS) else None


@dataclass(frozen=True, slots=True)
class FiguresKey:
    account_id: uuid.UUID
    day: date
    label_id: uuid.UUID = NO_ID
    feature_set_id: uuid.UUID = NO_ID
    business_number: int = NO_NUMBER


class Tally:
    """Counts gathered while a write is prepared; ``steps`` turns them into that write's statements."""

    __slots__ = ("_counts", "_delays")

    def __init__(self) -> None:
        self._counts: dict[FiguresKey, dict[str, int]] = defaultdict(dict)
        self._delays: dict[tuple[uuid.UUID, date, int], int] = defaultdict(int)

    def add(self, key: FiguresKey, counter: str, amount: int = 1) -> None:
        if counter not in _COUNTER_SET:
            raise KeyError(counter)
        counts = self._counts[key]
        counts[counter] = counts.get(counter, 0) + amount

    def add_delay(self, account_id: uuid.UUID, day: date, delay_ms: float, amount: int = 1) -> None:
        """``amount`` -1 takes a delay back (a webhook event sent again: its new final state counts instead)."""
        self._delays[(account_id, day, delay_bucket(delay_ms))] += amount

    def __bool__(self) -> bool:
        return bool(self._counts) or bool(self._delays)

    def delay_counts(self) -> dict[tuple[uuid.UUID, date, int], int]:
        """The delays counted, by (account, day, bucket) (``analytics.recount``)."""
        return dict(self._delays)

    def rows(self) -> list[dict[str, Any]]:
        """One row per key, in key order (number before feature set, as ``analytics.counting``'s record upsert, which
        does not know the feature set): concurrent upserts of the same keys then lock them in the same order, where
        any two orders could deadlock (PostgreSQL, two processes; tests/analytics/test_figures.py)."""
        rows = []
        for key in sorted(self._counts, key=_lock_order):
            counts = self._counts[key]
            row: dict[str, Any] = {
                "account_id": key.account_id,
                "day": key.day,
                "label_id": key.label_id,
                "feature_set_id": key.feature_set_id,
                "business_number": key.business_number,
            }
            for name in COUNTERS:
                row[name] = counts.get(name, 0)
            rows.append(row)
        return rows

    def steps(self, db: Any) -> list[Step]:
        """The upserts that add these counts (none when nothing was counted); ``db`` is the ``Database``."""
        steps = []
        if self._counts:
            steps.append(Step(_ADD_FIGURES.of_database(db), rows=self.rows()))
        if self._delays:
            delay_rows = [
                {"account_id": account_id, "day": day, "bucket": bucket, "count": count}
                for (account_id, day, bucket), count in sorted(self._delays.items())
            ]
            steps.append(Step(_ADD_DELAYS.of_database(db), rows=delay_rows))
        return steps


_COUNTER_SET = frozenset(COUNTERS)


def _lock_order(key: FiguresKey) -> tuple[Any, ...]:
    return (key.account_id, key.day, key.label_id, key.business_number, key.feature_set_id)
