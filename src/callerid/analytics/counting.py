"""What the writers of counted facts share (issue 13, figures): the accounts' timezones (a figures day is a day in
the account's timezone), the call-record upsert that finds the caller's feature set in SQL, and running a ``Tally``
inside a SQLAlchemy session's transaction.

The hot record path (R2) must not read the database once more per request: timezones are kept per process for
``ZONE_TTL_SECONDS`` (an admin may change the account's timezone in the console: every process counts into the new
zone's days within that time), and the feature set of the caller's listing is
looked up by the upsert itself (one primary-key probe of ``business_numbers`` per distinct key, in the write that
already runs), so nothing is cached that a listing could make stale.
"""

from __future__ import annotations

import time
import types
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import MetaData, String, Uuid, bindparam, event, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.accounts.models import ClientAccount
from callerid.analytics.models import COUNTERS, NO_ID, RECORD_COUNTERS, DailyFigures
from callerid.analytics.tally import FiguresKey, Tally, day_in
from callerid.db import Database
from callerid.db.write import OnConflict, Step
from callerid.numbers.models import BusinessNumber

_FIGURES = DailyFigures.__table__
# The same table for the record upsert, which computes a key column (the feature set) in SQL: without this SQLAlchemy
# would add ``RETURNING`` of that key column, which nothing reads (and which a multi-row SQLite INSERT must not have).
_RECORD_FIGURES = _FIGURES.to_metadata(MetaData())
_RECORD_FIGURES.implicit_returning = False
_NUMBERS = BusinessNumber.__table__
_ACCOUNTS = ClientAccount.__table__
_FIGURES_KEY = ("account_id", "day", "label_id", "feature_set_id", "business_number")

# --- account timezones, per process -------------------------------------------------------------------------------

ZONE_TTL_SECONDS = 60.0
_ZONE_OF: dict[uuid.UUID, str] = {}
_ZONES_KEPT = 100_000
_zones_read_at = time.monotonic()  # the whole cache is read again after the TTL: one read per account a minute


def _fresh_zones() -> dict[uuid.UUID, str]:
    global _zones_read_at
    now = time.monotonic()
    if now - _zones_read_at > ZONE_TTL_SECONDS or len(_ZONE_OF) >= _ZONES_KEPT:
        _ZONE_OF.clear()
        _zones_read_at = now
    return _ZONE_OF


_ZONE = select(_ACCOUNTS.c.timezone).where(_ACCOUNTS.c.id == bindparam("account_id"))


def known_timezone(account_id: uuid.UUID) -> str | None:
    """The account's timezone if this process has read it in the last ``ZONE_TTL_SECONDS`` (no I/O)."""
    return _fresh_zones().get(account_id)


async def account_timezones(db: Database, account_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The timezones of ``account_ids`` (unknown accounts are absent): read once per process and TTL, then from
    memory."""
    zones = _fresh_zones()
    found = {account_id: zones[account_id] for account_id in account_ids if account_id in zones}
    missing = [account_id for account_id in account_ids if account_id not in found]
    if missing:
        async with db.point_session() as session:
            for account_id in missing:  # nearly always one: a batch, an R2 request, a webhook batch's few accounts
                zone = (await session.execute(_ZONE, {"account_id": account_id})).scalar()
                if zone is not None:
                    found[account_id] = _ZONE_OF[account_id] = zone
    return found


async def account_timezone(db: Database, account_id: uuid.UUID) -> str:
    zone = _fresh_zones().get(account_id)
    if zone is None:
        zone = (await account_timezones(db, [account_id])).get(account_id, "UTC")
    return zone


# --- call records by delivery outcome -----------------------------------------------------------------------------

# The counter of each delivery outcome (SPEC §8 reason; None: delivered).
RECORD_COUNTER_OF: dict[str | None, str] = {
    None: "records_delivered",
    "not_app_user": "records_not_app_user",
    "os_not_supported": "records_os_not_supported",
    "app_version_not_supported": "records_app_version_not_supported",
    "failed_to_push": "records_failed_to_push",
}

# The feature set of the caller's listing in the record's account (a number belongs to at most one account), or
# NO_ID: the key's feature set is found in the same statement that adds the counts.
_LISTING_FEATURE_SET = func.coalesce(
    select(_NUMBERS.c.feature_set_id)
    .where(
        _NUMBERS.c.phone_number == bindparam("b_number", type_=String()),
        _NUMBERS.c.account_id == bindparam("b_account", type_=Uuid()),
    )
    .scalar_subquery(),
    bindparam("b_none", type_=Uuid()),  # NO_ID, given with every row (a literal would be a parameter too)
)
# The counters a record does not touch, as SQL zeros: as their Python default, each would be a parameter per row.
_NO_OTHER_COUNTS = {name: literal_column("0") for name in COUNTERS if name not in RECORD_COUNTERS}
_ADD_RECORDS = OnConflict(
    lambda insert: (
        lambda stmt: stmt.on_conflict_do_update(
            index_elements=list(_FIGURES_KEY),
            set_={name: _RECORD_FIGURES.c[name] + stmt.excluded[name] for name in RECORD_COUNTERS},
        )
    )(insert(_RECORD_FIGURES).values(feature_set_id=_LISTING_FEATURE_SET, **_NO_OTHER_COUNTS))
)

RecordKey = tuple[uuid.UUID, date, uuid.UUID, int]  # account, day, label, caller (the feature set is found in SQL)


class RecordTally:
    """Call records counted by (account, day, label, caller) and outcome, for one write."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[RecordKey, dict[str, int]] = defaultdict(dict)

    def add(self, key: RecordKey, counter: str, amount: int = 1) -> None:
        counts = self.counts[key]
        counts[counter] = counts.get(counter, 0) + amount

    def __bool__(self) -> bool:
        return bool(self.counts)

    def by_counter(self) -> dict[str, int]:
        """Totals per counter (for the Prometheus counters, added once per write)."""
        totals: dict[str, int] = defaultdict(int)
        for counts in self.counts.values():
            for name, amount in counts.items():
                totals[name] += amount
        return totals

    def steps(self, db: Any) -> list[Step]:
        if not self.counts:
            return []
        rows = []
        # In key order, as ``Tally.rows`` (the same keys locked in the same order: no deadlock between writers).
        for (account_id, day, label_id, caller), counts in sorted(self.counts.items(), key=lambda item: item[0]):
            row: dict[str, Any] = {
                "account_id": account_id,
                "day": day,
                "label_id": label_id,
                "business_number": caller,
                "b_number": str(caller),
                "b_account": account_id,
                "b_none": NO_ID,
            }
            for name in RECORD_COUNTERS:
                row[name] = counts.get(name, 0)
            rows.append(row)
        return [Step(_ADD_RECORDS.of_database(db), rows=rows)]


def record_day(timezone: str, created_at: datetime) -> date:
    return day_in(timezone, created_at)


# --- in a session's transaction -----------------------------------------------------------------------------------


def _dialect_of(session: AsyncSession) -> Any:
    return types.SimpleNamespace(is_sqlite=session.get_bind().dialect.name == "sqlite")


async def add_in_session(session: AsyncSession, tally: Tally | RecordTally) -> None:
    """Run ``tally``'s upserts in ``session``'s transaction (writers that hold an ORM session)."""
    for step in tally.steps(_dialect_of(session)):
        assert step.rows is not None
        await session.execute(step.statement, [dict(row) for row in step.rows])


async def add_in_tx(tx: Any, db: Any, tally: Tally | RecordTally) -> None:
    """Run ``tally``'s upserts in a ``Database.transact`` transaction (``tx`` a ``WriteTx``)."""
    for step in tally.steps(db):
        assert step.rows is not None
        await tx.executemany(step.statement, step.rows)


def sum_counts(tallies: Iterable[dict[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for counts in tallies:
        for name, amount in counts.items():
            totals[name] += amount
    return dict(totals)


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Call ``callback`` once ``session``'s transaction commits (a Prometheus counter of what it wrote); never if it
    rolls back."""
    sync = session.sync_session
    done = False

    def committed(_session: Any) -> None:
        nonlocal done
        if not done:
            done = True
            callback()

    def rolled_back(_session: Any) -> None:
        nonlocal done
        done = True

    event.listen(sync, "after_commit", committed, once=True)
    event.listen(sync, "after_rollback", rolled_back, once=True)


# --- engagement: Call Me Back requests and survey responses --------------------------------------------------------


def engagement_key(
    account_id: uuid.UUID, timezone: str, at: datetime, feature_set_id: uuid.UUID | None, business_number: str
) -> FiguresKey:
    """The figures key of a Call Me Back request or a survey response: no label (neither is about a call record),
    the feature set and number the phone answered for, the day it was made in the account's timezone."""
    return FiguresKey(account_id, day_in(timezone, at), NO_ID, feature_set_id or NO_ID, int(business_number))


def add_survey_response(
    tally: Tally, key: FiguresKey, answers: Iterable[dict[str, Any]], rated: Collection[str]
) -> None:
    """One response, and each answer to a rating question (``rated``: their texts) as a rating."""
    tally.add(key, "survey_responses")
    for answer in answers:
        if answer.get("question") in rated:
            tally.add(key, "ratings")
            tally.add(key, "rating_sum", int(answer["response"]))


# --- webhook deliveries --------------------------------------------------------------------------------------------

WEBHOOK_COUNTER = {"success": "webhooks_succeeded", "failed": "webhooks_failed"}  # by the event's final state


def delivery_delay_ms(created_at: datetime, started_at: datetime, duration_ms: int) -> float:
    """From the event's creation to the end of the attempt that delivered it."""
    return (started_at - created_at) / timedelta(milliseconds=1) + duration_ms


def add_webhook_delivery(
    tally: Tally,
    account_id: uuid.UUID,
    timezone: str,
    created_at: datetime,
    state: str,
    delay_ms: float | None,
    amount: int = 1,
) -> None:
    """An event that reached ``state`` (success or failed), on the account's row of the day it was created; a
    success's delay too. ``amount`` -1: the event was sent again, so that state no longer counts."""
    day = day_in(timezone, created_at)
    tally.add(FiguresKey(account_id, day), WEBHOOK_COUNTER[state], amount)
    if state == "success" and delay_ms is not None:
        tally.add_delay(account_id, day, delay_ms, amount)
