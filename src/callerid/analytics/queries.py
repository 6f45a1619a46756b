"""Reading the figures (issue 13): sums of ``daily_figures`` over a range of days, grouped by day, label, feature set
or business number, for the analytics API and the console's Analytics page alike.

Each call is one aggregate statement over the account's key range of ``daily_figures`` (its primary key starts with
``(account_id, day)``), with the group's names joined in, plus one over ``daily_webhook_delays`` where a p95 applies.
The rows read are per day x label x feature set x number, not per call, so 90 days of an account with 10 million
records is a few tens of thousands of rows (``bench/analytics.py``). R2's counts not yet folded in are folded first
(``analytics.deltas``): a reader sees every record committed before it asked.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import BigInteger, Select, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.analytics.deltas import fold
from callerid.analytics.models import COUNTERS, NO_ID, NO_NUMBER, RECORD_COUNTERS, DailyFigures, DailyWebhookDelays
from callerid.analytics.tally import DELAY_BUCKETS_MS
from callerid.db import Database
from callerid.failures import InvalidInput
from callerid.labels.models import Label
from callerid.numbers.models import FeatureSet

GROUPS = ("day", "label", "feature_set", "number")
NONE_NAME = "(none)"  # the name of a sentinel group: no label, no feature set, no business number
DERIVED = ("records_total", "answer_rate", "average_talk_seconds", "average_rating", "webhook_p95_ms")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# A figure's name in the API's JSON and in CSV files (camelCase, as the issue 13 extensions' wire names).
WIRE_NAMES = {name: _camel(name) for name in (*COUNTERS, *DERIVED)}

_FIGURES = DailyFigures.__table__
_DELAYS = DailyWebhookDelays.__table__
_GROUP_COLUMN = {
    "day": _FIGURES.c.day,
    "label": _FIGURES.c.label_id,
    "feature_set": _FIGURES.c.feature_set_id,
    "number": _FIGURES.c.business_number,
}
# Sums as BIGINT (PostgreSQL sums BIGINTs as NUMERIC, read as Decimal), 0 for an empty range; in COUNTERS order.
_SUMS = [func.coalesce(cast(func.sum(_FIGURES.c[name]), BigInteger), 0).label(name) for name in COUNTERS]
_N = len(COUNTERS)


@dataclass(frozen=True)
class Scope:
    """What to count: an account's figures over ``start``..``end`` (inclusive days in the account's timezone),
    optionally narrowed to one label, feature set or business number, or to an owner's subtree of feature sets."""

    account_id: uuid.UUID
    start: date
    end: date
    label_id: uuid.UUID | None = None
    feature_set_id: uuid.UUID | None = None
    business_number: int | None = None
    feature_set_ids: frozenset[uuid.UUID] | None = None  # an owner's subtree: only figures of these feature sets

    @property
    def narrowed(self) -> bool:
        """Whether only part of the account is counted; webhook figures are the account's as a whole, so then none
        apply (they are counted on the account's row, which belongs to no label, feature set or number)."""
        return (
            self.label_id is not None
            or self.feature_set_id is not None
            or self.business_number is not None
            or self.feature_set_ids is not None
        )


@dataclass(frozen=True)
class FigureRow:
    """The sums of one group. ``key``: "2026-12-01" | label id | feature set id | "+E164" ("" for no number);
    ``name``: the day, the label's name, the feature set's name or the number, ``(none)`` for a sentinel."""

    key: str
    name: str
    counts: dict[str, int]  # every COUNTER, zeros included
    webhook_p95_ms: int | None = field(default=None)  # day grouping and totals only; None without deliveries

    @property
    def records_total(self) -> int:
        return sum(self.counts[name] for name in RECORD_COUNTERS)

    @property
    def answer_rate(self) -> float | None:
        """answered / (answered + missed + rejected), 4 decimals."""
        calls = self.counts["answered"] + self.counts["missed"] + self.counts["rejected"]
        return round(self.counts["answered"] / calls, 4) if calls else None

    @property
    def average_talk_seconds(self) -> float | None:
        ended = self.counts["ended"]
        return round(self.counts["talk_seconds"] / ended, 1) if ended else None

    @property
    def average_rating(self) -> float | None:
        ratings = self.counts["ratings"]
        return round(self.counts["rating_sum"] / ratings, 2) if ratings else None

    def derived(self) -> dict[str, int | float | None]:
        """The derived figures by name, in ``DERIVED`` order."""
        return {name: getattr(self, name) for name in DERIVED}


def parse_day(value: str | None, field: str) -> date:
    """A ``YYYY-MM-DD`` parameter, else InvalidInput naming ``field``."""
    if value is None or not value.strip():
        raise InvalidInput(f"{field} is required", field=field)
    try:
        if len(value.strip()) != 10:
            raise ValueError(value)
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"{field} is invalid: a day as YYYY-MM-DD", field=field) from None


def parse_range(start: str | None, end: str | None, max_days: int) -> tuple[date, date]:
    """``from`` and ``to`` (inclusive days): both required, ``from`` <= ``to``, at most ``max_days`` days."""
    first, last = parse_day(start, "from"), parse_day(end, "to")
    if last < first:
        raise InvalidInput("to is before from", field="to")
    if (last - first).days + 1 > max_days:
        raise InvalidInput(f"to is more than {max_days} days after from (at most {max_days} days)", field="to")
    return first, last


def parse_group(value: str | None) -> str:
    """``group_by``: one of ``GROUPS``; ``day`` when absent."""
    if value is None or value == "":
        return "day"
    if value not in GROUPS:
        raise InvalidInput(f"group_by is invalid: one of {', '.join(GROUPS)}", field="group_by")
    return value


def _where(scope: Scope) -> list[Any]:
    c = _FIGURES.c
    where: list[Any] = [c.account_id == scope.account_id, c.day >= scope.start, c.day <= scope.end]
    if scope.label_id is not None:
        where.append(c.label_id == scope.label_id)
    if scope.feature_set_id is not None:
        where.append(c.feature_set_id == scope.feature_set_id)
    if scope.business_number is not None:
        where.append(c.business_number == scope.business_number)
    if scope.feature_set_ids is not None:
        where.append(c.feature_set_id.in_(sorted(scope.feature_set_ids)))
    return where


def _counts(values: Sequence[Any]) -> dict[str, int]:
    """The counters from ``values``, the sums in ``COUNTERS`` order."""
    return dict(zip(COUNTERS, map(int, values), strict=True))


def _zero_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


# Label sums are taken in two steps: first per (day, label), a prefix of the primary key, so the rows are summed in
# the order they are read without sorting them, then per label over those few partial sums. On SQLite this cut a
# label grouping's CPU from 186 to 111 ms (bench/analytics.py; PostgreSQL unchanged). Per (day, label, feature set)
# first did not pay for feature sets (too many partial sums: 206 instead of 78 ms of PostgreSQL's CPU).
_PARTIAL_BY = {"label": (_FIGURES.c.day, _FIGURES.c.label_id)}


def _grouped(scope: Scope, group_by: str) -> Select[Any]:
    column = _GROUP_COLUMN[group_by]
    partial_by = _PARTIAL_BY.get(group_by)
    if partial_by is None:
        sums = select(column.label("key"), *_SUMS).where(*_where(scope)).group_by(column).subquery()
    else:
        partial = (
            select(column.label("key"), *(func.sum(_FIGURES.c[name]).label(name) for name in COUNTERS))
            .where(*_where(scope))
            .group_by(*partial_by)
            .subquery()
        )
        totals = [func.coalesce(cast(func.sum(partial.c[name]), BigInteger), 0).label(name) for name in COUNTERS]
        sums = select(partial.c.key, *totals).group_by(partial.c.key).subquery()
    if group_by == "label":
        return select(sums, Label.name).outerjoin(Label, Label.id == sums.c.key)
    if group_by == "feature_set":
        return select(sums, FeatureSet.name).outerjoin(FeatureSet, FeatureSet.id == sums.c.key)
    return select(sums)


def _p95(buckets: Iterable[tuple[int, int]]) -> int | None:
    """The upper bound of the bucket holding the 95th percentile delay; the open last bucket reads as the last
    bound (the delay was at least that)."""
    counts = sorted(buckets)
    total = sum(count for _bucket, count in counts)
    if total == 0:
        return None
    rank = 0.95 * total
    seen = 0
    for bucket, count in counts:
        seen += count
        if seen >= rank:
            return DELAY_BUCKETS_MS[min(bucket, len(DELAY_BUCKETS_MS) - 1)]
    return DELAY_BUCKETS_MS[-1]


async def _delay_buckets(session: AsyncSession, scope: Scope, by_day: bool) -> dict[date | None, list[tuple[int, int]]]:
    d = _DELAYS.c
    columns = [d.day, d.bucket] if by_day else [d.bucket]
    query = (
        select(*columns, func.sum(d.count).label("count"))
        .where(d.account_id == scope.account_id, d.day >= scope.start, d.day <= scope.end)
        .group_by(*columns)
    )
    buckets: dict[date | None, list[tuple[int, int]]] = {}
    for row in await session.execute(query):
        day = _as_date(row.day) if by_day else None
        buckets.setdefault(day, []).append((int(row.bucket), int(row.count or 0)))
    return buckets


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]


def _sort_named(rows: list[FigureRow]) -> list[FigureRow]:
    # By name, the sentinel group last; ties (same names) by key so the order is stable.
    return sorted(rows, key=lambda row: (row.name == NONE_NAME, row.name.casefold(), row.key))


async def report(db: Database, scope: Scope, group_by: str) -> tuple[list[FigureRow], FigureRow]:
    """``figures`` and ``totals`` of one scope together, in two statements (the totals are the rows' sums: every
    group of the scope is one of the rows)."""
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {GROUPS}")
    delays: dict[date | None, list[tuple[int, int]]] = {}
    await fold(db)
    async with db.session() as session:
        result = (await session.execute(_grouped(scope, group_by))).all()
        if not scope.narrowed:
            delays = await _delay_buckets(session, scope, by_day=group_by == "day")
    rows = _rows(scope, group_by, result, delays)
    summed = _zero_counts()
    for row in rows:
        for name in COUNTERS:
            summed[name] += row.counts[name]
    all_buckets: dict[int, int] = {}
    for buckets in delays.values():
        for bucket, count in buckets:
            all_buckets[bucket] = all_buckets.get(bucket, 0) + count
    return rows, _totals_row(scope, summed, all_buckets.items())


async def figures(db: Database, scope: Scope, group_by: str) -> list[FigureRow]:
    """The figures of ``scope`` per group. ``day``: every day of the range in order, zeros included, each with its
    webhook p95; the other groups: only those with figures in the range, by name (numbers in order)."""
    rows, _totals = await report(db, scope, group_by)
    return rows


async def totals(db: Database, scope: Scope) -> FigureRow:
    """The figures of the whole scope; key and name are the range (``start/end``)."""
    await fold(db)
    async with db.session() as session:
        row = (await session.execute(select(*_SUMS).where(*_where(scope)))).one()
        delays = {} if scope.narrowed else await _delay_buckets(session, scope, by_day=False)
    return _totals_row(scope, _counts(row), delays.get(None, ()))


def _totals_row(scope: Scope, counts: dict[str, int], buckets: Iterable[tuple[int, int]]) -> FigureRow:
    span = f"{scope.start.isoformat()}/{scope.end.isoformat()}"
    return FigureRow(key=span, name=span, counts=counts, webhook_p95_ms=_p95(buckets))


def _rows(
    scope: Scope, group_by: str, result: Sequence[Any], delays: dict[date | None, list[tuple[int, int]]]
) -> list[FigureRow]:
    if group_by == "day":
        by_day = {_as_date(row[0]): _counts(row[1 : 1 + _N]) for row in result}
        return [
            FigureRow(
                key=day.isoformat(),
                name=day.isoformat(),
                counts=by_day.get(day, _zero_counts()),
                webhook_p95_ms=_p95(delays.get(day, ())),
            )
            for day in _days(scope.start, scope.end)
        ]
    if group_by == "number":
        numbers = sorted(result, key=lambda row: (int(row.key) == NO_NUMBER, int(row.key)))
        return [_number_row(int(row[0]), _counts(row[1 : 1 + _N])) for row in numbers]
    rows = []
    for row in result:
        group_id = row.key if isinstance(row.key, uuid.UUID) else uuid.UUID(str(row.key))
        name = row.name if row.name is not None else str(group_id)  # a label or feature set deleted since: its id
        if group_id == NO_ID:
            name = NONE_NAME
        rows.append(FigureRow(key=str(group_id), name=name, counts=_counts(row[1 : 1 + _N])))
    return _sort_named(rows)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _number_row(number: int, counts: dict[str, int]) -> FigureRow:
    if number == NO_NUMBER:
        return FigureRow(key="", name=NONE_NAME, counts=counts)
    text = f"+{number}"
    return FigureRow(key=text, name=text, counts=counts)


def csv_columns(group_by: str) -> tuple[str, ...]:
    """The CSV header: the group's key, its name, every counter, then the derived figures (``WIRE_NAMES``)."""
    return (_camel(group_by), "name", *(WIRE_NAMES[name] for name in (*COUNTERS, *DERIVED)))


def as_json(row: FigureRow) -> dict[str, Any]:
    """A row as the API answers it: key, name, every counter and the derived figures by ``WIRE_NAMES``."""
    body: dict[str, Any] = {"key": row.key, "name": row.name}
    for name in COUNTERS:
        body[WIRE_NAMES[name]] = row.counts[name]
    for name, value in row.derived().items():
        body[WIRE_NAMES[name]] = value
    return body


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def to_csv(rows: Sequence[FigureRow], group_by: str) -> str:
    """Header row then one line per row (RFC 4180, CRLF), columns in ``csv_columns`` order; empty for None."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(csv_columns(group_by))
    for row in rows:
        derived = row.derived()
        writer.writerow(
            [row.key, row.name, *(row.counts[name] for name in COUNTERS), *(_cell(derived[n]) for n in DERIVED)]
        )
    return buffer.getvalue()
