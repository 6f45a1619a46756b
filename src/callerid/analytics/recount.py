"""The daily figures recounted from raw data (issue 13): what ``daily_figures`` must hold while the raw per-call data
is retained, with the same key rules as the writers that count as they write (``analytics.counting``, the signal and
blocked-attempt writers). For the tests (figures == recount), ``callerid analytics verify`` and, for days stored
before analytics existed, ``callerid analytics rebuild``.

Key rules, per fact (day: the account's timezone):
- call records, by delivery outcome: the label's account, the day the record's group arrived (``call_batches.
  created_at``), the text's label, the feature set of the caller's listing in that account, the caller; invalid
  records and records whose batch is not delivered yet are not counted;
- call signals: their row's account / label / feature set / caller, the day they occurred; ``ended`` adds its
  duration to ``talk_seconds``; blocked attempts: their row's, the day they happened;
- Call Me Back requests and survey responses: no label, their feature set and business number, the day they were
  made; a survey answer to a rating question (by the survey's current questions) is a rating;
- webhook events (not test events) in a final state, success or failed: the account's row of the day the event was
  created; a success's delay (from creation to the end of its last attempt) in the histogram.

Reads go day by day of the account's range, one statement per source: figures, not a stream of rows per call.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, select, text

from callerid.accounts.models import ClientAccount
from callerid.analytics.counting import (
    RECORD_COUNTER_OF,
    WEBHOOK_COUNTER,
    add_survey_response,
    add_webhook_delivery,
    delivery_delay_ms,
    engagement_key,
)
from callerid.analytics.deltas import fold, fold_in_session
from callerid.analytics.models import (
    COUNTERS,
    NO_ID,
    BlockedAttempt,
    CallSignal,
    DailyFigures,
    DailyWebhookDelays,
)
from callerid.analytics.tally import DELAY_BUCKETS_MS, FiguresKey, Tally, bucket_upper_ms, day_in
from callerid.config import Settings
from callerid.db import Database
from callerid.engagement.models import CmbRequest, Survey, SurveyResponse
from callerid.engagement.questions import RATING, from_stored
from callerid.labels.models import Label
from callerid.numbers.models import BusinessNumber
from callerid.personalisation.models import (
    GROUP_SPAN,
    INVALID_STATE,
    PENDING_STATE,
    REASON_OF_STATE,
    CallBatch,
    CallBatchText,
    CallRecord,
    first_id,
)
from callerid.personalisation.outcomes import outcomes_by_position
from callerid.webhooks.models import WebhookAttempt, WebhookEvent

Figures = dict[FiguresKey, dict[str, int]]
Delays = dict[tuple[date, int], int]  # (day, bucket) -> count

_SIGNAL_COUNTER = {"displayed": "shown", "answered": "answered", "missed": "missed", "rejected": "rejected"}
_SIGNAL_COUNTER["ended"] = "ended"

_BATCHES, _TEXTS, _RECORDS = CallBatch.__table__, CallBatchText.__table__, CallRecord.__table__
_RECORD_ROWS = (
    select(
        _BATCHES.c.key,
        _BATCHES.c.created_at,
        _BATCHES.c.outcomes,
        _RECORDS.c.id,
        _RECORDS.c.caller,
        _RECORDS.c.state,
        _TEXTS.c.label_id,
    )
    .select_from(_BATCHES)
    .join(
        _RECORDS,
        and_(_RECORDS.c.id >= _BATCHES.c.key * GROUP_SPAN, _RECORDS.c.id < (_BATCHES.c.key + 1) * GROUP_SPAN),
    )
    .join(_TEXTS, and_(_TEXTS.c.batch_key == _BATCHES.c.key, _TEXTS.c.number == _RECORDS.c.display))
    .join(Label.__table__, Label.__table__.c.id == _TEXTS.c.label_id)
    .where(_RECORDS.c.state != INVALID_STATE)
)


def _day_bounds(zone: ZoneInfo, start: date, end: date) -> tuple[datetime, datetime]:
    """The instants (UTC) where ``start`` begins and the day after ``end`` begins in ``zone``."""
    low = datetime.combine(start, time(0), tzinfo=zone).astimezone(UTC)
    high = datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return low, high


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


async def account_timezone_of(db: Database, account_id: uuid.UUID) -> str:
    async with db.session() as session:
        zone = await session.scalar(select(ClientAccount.timezone).where(ClientAccount.id == account_id))
    if zone is None:
        raise LookupError(f"account {account_id} not found")
    return str(zone)


async def recount_all(db: Database, account_id: uuid.UUID, start_day: date, end_day: date) -> tuple[Figures, Delays]:
    """The figures and webhook delays of ``start_day``..``end_day`` (inclusive) recounted from raw data."""
    timezone = await account_timezone_of(db, account_id)
    async with db.session() as session:
        return await _recount_in(session, account_id, timezone, start_day, end_day)


async def _recount_in(
    session: Any, account_id: uuid.UUID, timezone: str, start_day: date, end_day: date
) -> tuple[Figures, Delays]:
    zone = ZoneInfo(timezone)
    tally = Tally()
    delays: Delays = defaultdict(int)
    numbers = {
        int(row.phone_number): row.feature_set_id or NO_ID
        for row in await session.execute(
            select(BusinessNumber.phone_number, BusinessNumber.feature_set_id).where(
                BusinessNumber.account_id == account_id
            )
        )
    }
    for day in _days(start_day, end_day):
        low, high = _day_bounds(zone, day, day)
        await _records(session, tally, account_id, timezone, numbers, low, high)
        await _signals(session, tally, account_id, timezone, low, high)
        await _engagement(session, tally, account_id, timezone, low, high)
        await _webhooks(session, tally, delays, account_id, timezone, low, high)
    figures: Figures = {}
    for row in tally.rows():
        key = FiguresKey(row["account_id"], row["day"], row["label_id"], row["feature_set_id"], row["business_number"])
        counts = {name: row[name] for name in COUNTERS if row[name]}
        if counts:
            figures[key] = counts
    for (_, day, bucket), count in tally.delay_counts().items():
        delays[(day, bucket)] += count
    return figures, {key: count for key, count in delays.items() if count}


async def recount(db: Database, account_id: uuid.UUID, start_day: date, end_day: date) -> Figures:
    """The counters of ``daily_figures`` for the account's days ``start_day``..``end_day``, from raw data: per key
    the counters that are not zero (keys with none are absent)."""
    figures, _ = await recount_all(db, account_id, start_day, end_day)
    return figures


async def _records(
    session: Any,
    tally: Tally,
    account_id: uuid.UUID,
    timezone: str,
    numbers: dict[int, uuid.UUID],
    low: datetime,
    high: datetime,
) -> None:
    query = _RECORD_ROWS.where(
        Label.__table__.c.account_id == account_id, _BATCHES.c.created_at >= low, _BATCHES.c.created_at < high
    )
    outcomes: dict[int, dict[int, Any]] = {}
    for row in await session.execute(query):
        if row.state == PENDING_STATE:
            by_position = outcomes.get(row.key)
            if by_position is None:
                by_position = outcomes[row.key] = outcomes_by_position(row.outcomes)
            outcome = by_position.get(row.id - first_id(row.key))
            if outcome is None:
                continue  # not delivered yet
            reason = outcome[0]
        else:
            reason = REASON_OF_STATE.get(row.state)
        key = FiguresKey(
            account_id, day_in(timezone, row.created_at), row.label_id, numbers.get(row.caller, NO_ID), row.caller
        )
        tally.add(key, RECORD_COUNTER_OF[reason])


async def _signals(
    session: Any, tally: Tally, account_id: uuid.UUID, timezone: str, low: datetime, high: datetime
) -> None:
    signals = select(CallSignal).where(
        CallSignal.account_id == account_id, CallSignal.occurred_at >= low, CallSignal.occurred_at < high
    )
    for signal in (await session.execute(signals)).scalars():
        key = FiguresKey(
            account_id,
            day_in(timezone, signal.occurred_at),
            signal.label_id,
            signal.feature_set_id,
            signal.business_number,
        )
        tally.add(key, _SIGNAL_COUNTER[signal.kind])
        if signal.kind == "ended":
            tally.add(key, "talk_seconds", signal.duration_seconds or 0)
    blocked = select(BlockedAttempt).where(
        BlockedAttempt.account_id == account_id, BlockedAttempt.at >= low, BlockedAttempt.at < high
    )
    for attempt in (await session.execute(blocked)).scalars():
        key = FiguresKey(
            account_id, day_in(timezone, attempt.at), attempt.label_id, attempt.feature_set_id, attempt.business_number
        )
        tally.add(key, "blocked")


async def _engagement(
    session: Any, tally: Tally, account_id: uuid.UUID, timezone: str, low: datetime, high: datetime
) -> None:
    requests = select(CmbRequest.feature_set_id, CmbRequest.business_number, CmbRequest.requested_at).where(
        CmbRequest.account_id == account_id, CmbRequest.requested_at >= low, CmbRequest.requested_at < high
    )
    for row in await session.execute(requests):
        key = engagement_key(account_id, timezone, row.requested_at, row.feature_set_id, row.business_number)
        tally.add(key, "call_me_back_requests")
    responses = (
        select(
            SurveyResponse.business_number,
            SurveyResponse.requested_at,
            SurveyResponse.answers,
            Survey.feature_set_id,
            Survey.questions,
        )
        .join(Survey, Survey.id == SurveyResponse.survey_id)
        .where(
            SurveyResponse.account_id == account_id,
            SurveyResponse.requested_at >= low,
            SurveyResponse.requested_at < high,
        )
    )
    for row in await session.execute(responses):
        rated = {question.text for question in map(from_stored, row.questions) if question.kind == RATING}
        key = engagement_key(account_id, timezone, row.requested_at, row.feature_set_id, row.business_number)
        add_survey_response(tally, key, row.answers, rated)


async def _webhooks(
    session: Any,
    tally: Tally,
    delays: Delays,
    account_id: uuid.UUID,
    timezone: str,
    low: datetime,
    high: datetime,
) -> None:
    last_attempt = and_(
        WebhookAttempt.event_id == WebhookEvent.id, WebhookAttempt.number == WebhookEvent.attempts_made - 1
    )
    events = (
        select(WebhookEvent.created_at, WebhookEvent.state, WebhookAttempt.started_at, WebhookAttempt.duration_ms)
        .outerjoin(WebhookAttempt, last_attempt)
        .where(
            WebhookEvent.account_id == account_id,
            WebhookEvent.created_at >= low,
            WebhookEvent.created_at < high,
            WebhookEvent.is_test.is_(False),
            WebhookEvent.state.in_(list(WEBHOOK_COUNTER)),
        )
    )
    for row in await session.execute(events):
        delay = None
        if row.started_at is not None:
            delay = delivery_delay_ms(row.created_at, row.started_at, row.duration_ms)
        add_webhook_delivery(tally, account_id, timezone, row.created_at, row.state, delay)


# --- what is stored, and the operator's verify / rebuild ------------------------------------------------------------

_FIGURES, _DELAYS = DailyFigures.__table__, DailyWebhookDelays.__table__


async def stored_all(db: Database, account_id: uuid.UUID, start_day: date, end_day: date) -> tuple[Figures, Delays]:
    """What ``daily_figures`` / ``daily_webhook_delays`` hold for those days, in ``recount_all``'s shape."""
    figures: Figures = {}
    delays: Delays = {}
    await fold(db)
    async with db.session() as session:
        rows = await session.execute(
            select(_FIGURES).where(
                _FIGURES.c.account_id == account_id, _FIGURES.c.day >= start_day, _FIGURES.c.day <= end_day
            )
        )
        for row in rows.mappings():
            counts = {name: int(row[name]) for name in COUNTERS if row[name]}
            if counts:
                key = FiguresKey(
                    row["account_id"], row["day"], row["label_id"], row["feature_set_id"], row["business_number"]
                )
                figures[key] = counts
        for row in await session.execute(
            select(_DELAYS.c.day, _DELAYS.c.bucket, _DELAYS.c.count).where(
                _DELAYS.c.account_id == account_id, _DELAYS.c.day >= start_day, _DELAYS.c.day <= end_day
            )
        ):
            if row.count:
                delays[(row.day, row.bucket)] = int(row.count)
    return figures, delays


async def stored(db: Database, account_id: uuid.UUID, start_day: date, end_day: date) -> Figures:
    return (await stored_all(db, account_id, start_day, end_day))[0]


def differences(
    expected: tuple[Figures, Delays], found: tuple[Figures, Delays]
) -> list[tuple[str, Any, dict[str, int], dict[str, int]]]:
    """Where ``found`` (stored) differs from ``expected`` (recounted): (what, key, recounted, stored), sorted."""
    out: list[tuple[str, Any, dict[str, int], dict[str, int]]] = []
    figures_expected, delays_expected = expected
    figures_found, delays_found = found
    for key in sorted(set(figures_expected) | set(figures_found), key=_sort_key):
        want, have = figures_expected.get(key, {}), figures_found.get(key, {})
        if want != have:
            out.append(("figures", key, want, have))
    for day_bucket in sorted(set(delays_expected) | set(delays_found)):
        want_count, have_count = delays_expected.get(day_bucket, 0), delays_found.get(day_bucket, 0)
        if want_count != have_count:
            out.append(("webhook_delays", day_bucket, {"count": want_count}, {"count": have_count}))
    return out


def _sort_key(key: FiguresKey) -> tuple[Any, ...]:
    return (key.day, str(key.label_id), str(key.feature_set_id), key.business_number)


def oldest_rebuildable_day(settings: Settings, timezone: str, now: datetime) -> date:
    """The first day whose raw data no retention purge can have touched yet: every source is kept at least its
    retention after the fact (records after their window ended, which is after they arrived), so a day that began
    within the shortest retention is whole."""
    shortest = min(
        settings.call_record_retention_days,
        settings.signal_retention_days,
        settings.blocked_attempt_retention_days,
        settings.cmb_request_retention_days,
        settings.survey_response_retention_days,
        settings.webhook_log_retention_days,
    )
    cutoff = now - timedelta(days=shortest)
    first = day_in(timezone, cutoff)
    # The day the cutoff falls in may have lost its first hours: the next one is the first whole day.
    return first + timedelta(days=1)


async def rebuild(
    db: Database, settings: Settings, account_id: uuid.UUID, start_day: date, end_day: date, now: datetime
) -> int:
    """Replace the account's figures of ``start_day``..``end_day`` by a recount of the raw data (for data stored
    before analytics existed); returns the keys written. Refuses (``ValueError``) days whose raw data may have been
    purged already. The recount and the replacement are one transaction, which the writers that count as they write
    wait for (PostgreSQL: the table lock below; SQLite: the DELETEs come first and take its one write lock), so
    nothing is counted twice or lost."""
    timezone = await account_timezone_of(db, account_id)
    oldest = oldest_rebuildable_day(settings, timezone, now)
    if start_day < oldest:
        raise ValueError(f"raw data before {oldest.isoformat()} may have been purged: those days cannot be rebuilt")
    if end_day < start_day:
        raise ValueError("--to is before --from")
    async with db.transaction() as session:
        if db.is_postgres:
            await session.execute(
                # figure_deltas first, in the order a fold takes them (deltas, then figures): else a fold holding
                # the deltas and a rebuild holding the figures would each wait for the other.
                text("LOCK TABLE figure_deltas, daily_figures, daily_webhook_delays IN SHARE ROW EXCLUSIVE MODE")
            )
        await fold_in_session(session, db.is_postgres)  # counts of raw data the recount below counts again
        await session.execute(
            delete(_FIGURES).where(
                _FIGURES.c.account_id == account_id, _FIGURES.c.day >= start_day, _FIGURES.c.day <= end_day
            )
        )
        await session.execute(
            delete(_DELAYS).where(
                _DELAYS.c.account_id == account_id, _DELAYS.c.day >= start_day, _DELAYS.c.day <= end_day
            )
        )
        figures, delays = await _recount_in(session, account_id, timezone, start_day, end_day)
        tally = Tally()
        for key, counts in figures.items():
            for counter, amount in counts.items():
                tally.add(key, counter, amount)
        for (day, bucket), count in delays.items():
            upper = bucket_upper_ms(bucket)  # a delay in that bucket
            tally.add_delay(account_id, day, DELAY_BUCKETS_MS[-1] + 1 if upper is None else upper, count)
        for step in tally.steps(db):
            await session.execute(step.statement, [dict(row) for row in step.rows or ()])
    return len(figures)


__all__ = [
    "Delays",
    "Figures",
    "differences",
    "rebuild",
    "recount",
    "recount_all",
    "stored",
    "stored_all",
]
