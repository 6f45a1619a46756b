"""Storing call records durably: a batch with one multi-row INSERT in the same transaction as the job that
delivers it (B1/B2), and the real-time records (R2) through one group commit. Either way a group row, its distinct
texts and its records (``callerid.personalisation.models``), in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import BigInteger, bindparam, insert, literal_column, select

from callerid import clock
from callerid.analytics.counting import RECORD_COUNTER_OF, RecordTally, account_timezone, known_timezone
from callerid.analytics.deltas import delta_step
from callerid.analytics.tally import day_in
from callerid.config import Settings
from callerid.db import Database
from callerid.db.write import Step
from callerid.delivery.service import DeliveryOutcome, PushMessage, deliver_many
from callerid.delivery.service import outcome as delivery_outcome
from callerid.jobs import enqueue_step
from callerid.labels.service import logo_url
from callerid.ops import metrics
from callerid.personalisation.models import (
    DELIVERED_STATE,
    GROUP_SPAN,
    INVALID_STATE,
    OUTCOME_STATES,
    PENDING_STATE,
    REASON_OF_STATE,
    CallBatch,
    CallBatchText,
    CallRecord,
)
from callerid.personalisation.rules import BATCH_FIELD, CheckedRecord, check_record, epoch_ms, labels_for, new_record_id
from callerid.personalisation.schemas import V1, V2
from callerid.personalisation.writer import GroupInserter

if TYPE_CHECKING:
    from callerid.runtime import Runtime

log = structlog.get_logger("callerid.personalisation")
DELIVER_BATCH_JOB = "personalisation.deliver_batch"

_BATCHES = CallBatch.__table__
_TEXTS = CallBatchText.__table__
_RECORDS = CallRecord.__table__


# A record's id from its group's key: the group row is inserted first in the same transaction, and found by its
# UUID (one statement for both databases; the key is the database's to give).
_GROUP_KEY = select(_BATCHES.c.key).where(_BATCHES.c.id == bindparam("group_id")).scalar_subquery()
_INSERT_GROUP = insert(_BATCHES)
_INSERT_TEXTS = insert(_TEXTS).values(batch_key=_GROUP_KEY).inline()
_INSERT_RECORDS = (
    insert(_RECORDS)
    .values(id=_GROUP_KEY * literal_column(str(GROUP_SPAN), BigInteger) + bindparam("position", type_=BigInteger))
    .inline()
)

Text = tuple[uuid.UUID, str, str | None]  # label id, label name, call reason


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to store, before its group gives it a position and numbers its texts."""

    state: int
    ends_at: int  # the window's end; an invalid record's arrival
    caller: int | None = None  # None: not a usable record (failed validation, or in a rejected v1 batch)
    receiver: int | None = None
    starts_at: int | None = None
    text: Text | None = None
    problem: dict[str, Any] | None = None
    # R2 only, for the daily figures: the record's account (its label's) and that account's timezone. None: not
    # counted here (a batch's records are counted when they are delivered; figures may be off: ``analytics_figures``).
    account_id: uuid.UUID | None = None
    timezone: str | None = None


def usable(
    checked: CheckedRecord, state: int, account_id: uuid.UUID | None = None, timezone: str | None = None
) -> NewRecord:
    assert checked.caller and checked.receiver and checked.label is not None and checked.label_name is not None
    assert checked.starts_at is not None and checked.ends_at is not None
    return NewRecord(
        state=state,
        ends_at=checked.ends_at,
        caller=int(checked.caller),
        receiver=int(checked.receiver),
        starts_at=checked.starts_at,
        text=(checked.label.id, checked.label_name, checked.call_reason),
        account_id=account_id,
        timezone=timezone,
    )


def refused(now_ms: int, field: str | None, message: str | None, sent: dict[str, Any] | None) -> NewRecord:
    """A record S1/S2 show as failed validation, with the values to echo."""
    return NewRecord(state=INVALID_STATE, ends_at=now_ms, problem={"field": field, "message": message, "sent": sent})


def _invalid(checked: CheckedRecord, now_ms: int) -> NewRecord:
    return refused(now_ms, checked.v2_field, checked.message, checked.sent)


def _valid_values(checked: CheckedRecord) -> dict[str, Any]:
    assert checked.label is not None
    return {
        "caller": checked.caller,
        "receiver": checked.receiver,
        "label_id": str(checked.label.id),
        "label_name": checked.label_name,
        "call_reason": checked.call_reason,
        "starts_at": checked.starts_at,
        "ends_at": checked.ends_at,
    }


def group_steps(
    group_id: uuid.UUID,
    account_id: uuid.UUID | None,
    version: str,
    created_at: datetime,
    records: list[NewRecord],
    figures: RecordTally | None = None,
) -> list[Step]:
    """The statements that store a group: its row, its distinct texts (numbered in order of appearance), its records
    (positioned in order). Every record row has the same keys, so the records are one many-row INSERT.
    ``figures``: where the records stored with their outcome (R2) are counted (its steps are the caller's to add)."""
    texts: dict[Text, int] = {}
    rows = []
    days: dict[str, date] = {}  # the group's day by timezone (its records mostly share one)
    for position, record in enumerate(records):
        if figures is not None and record.account_id is not None and record.text is not None:
            assert record.timezone is not None and record.caller is not None
            day = days.get(record.timezone)
            if day is None:
                day = days[record.timezone] = day_in(record.timezone, created_at)
            figures.add(
                (record.account_id, day, record.text[0], record.caller),
                RECORD_COUNTER_OF[REASON_OF_STATE.get(record.state)],
            )
        rows.append(
            {
                "position": position,
                "caller": record.caller,
                "receiver": record.receiver,
                "starts_at": record.starts_at,
                "ends_at": record.ends_at,
                "display": None if record.text is None else texts.setdefault(record.text, len(texts)),
                "state": record.state,
                "problem": record.problem,
            }
        )
    group = {"id": group_id, "account_id": account_id, "version": version, "record_count": len(records)}
    group["created_at"] = created_at
    shared = {"group_id": group_id}
    steps = [Step(_INSERT_GROUP, group)]
    if texts:
        text_rows = [
            {"number": number, "label_id": label_id, "label_name": name, "call_reason": reason}
            for (label_id, name, reason), number in texts.items()
        ]
        steps.append(Step(_INSERT_TEXTS, rows=text_rows, shared=shared))
    steps.append(Step(_INSERT_RECORDS, rows=rows, shared=shared))
    return steps


async def _store_batch(
    db: Database,
    *,
    account_id: uuid.UUID,
    batch_id: uuid.UUID,
    version: str,
    created_at: datetime,
    records: list[NewRecord],
    deliver: bool,
    also: Step | None = None,
) -> None:
    """Batch, records and (when some are valid) the delivery job, in one transaction: once this returns
    the batch cannot be lost, and its processing is already queued. ``also``: one more statement of the same
    transaction (the request's idempotency answer)."""
    steps = group_steps(batch_id, account_id, version, created_at, records)
    if deliver:
        steps.append(enqueue_step(DELIVER_BATCH_JOB, {"batch_id": str(batch_id)}))
    if also is not None:
        steps.append(also)
    await db.write(steps)


@dataclass(frozen=True)
class V1Result:
    batch_id: uuid.UUID
    error: str | None  # the first error (v1 text, indexed when not the first record); None = accepted


# What a caller may store with a submission's own write, given its result: the request's idempotency answer
# (``idempotency.Claim.answer_step``), so that the answer and the work commit together or not at all.
AnswerStep = Callable[[Any], Step]


async def submit_v1(
    db: Database, account_id: uuid.UUID, records: list[dict[str, Any]], *, answer: AnswerStep | None = None
) -> V1Result:
    """R1 (one record) and B1: all-or-nothing (SPEC §5.5). The batch is stored either way, so that its
    BatchID can be queried; only an accepted batch is delivered. ``answer(result)``: a statement for the same
    write."""
    now = clock.now()
    labels = await labels_for(db, account_id, records)
    now_ms = epoch_ms(now)
    checked = [check_record(record, V1, labels, now_ms, i) for i, record in enumerate(records)]
    batch_id = new_record_id()
    first_bad = next((c for c in checked if not c.valid), None)
    if first_bad is None:
        stored = [usable(c, PENDING_STATE) for c in checked]
        error = None
    else:
        error = (
            first_bad.message if first_bad.position == 0 else f"call_records[{first_bad.position}]: {first_bad.message}"
        )
        # Valid records of a rejected batch are not delivered and say why; they are not usable records.
        rejected = f"batch rejected, call_records[{first_bad.position}]: {first_bad.message}"
        stored = [
            _invalid(c, now_ms) if not c.valid else refused(now_ms, BATCH_FIELD, rejected, _valid_values(c))
            for c in checked
        ]
    await _store_batch(
        db,
        account_id=account_id,
        batch_id=batch_id,
        version=V1,
        created_at=now,
        records=stored,
        deliver=error is None,
        also=None if answer is None else answer(V1Result(batch_id=batch_id, error=error)),
    )
    return V1Result(batch_id=batch_id, error=error)


async def submit_v2_batch(
    db: Database, account_id: uuid.UUID, records: list[dict[str, Any]], *, answer: AnswerStep | None = None
) -> uuid.UUID:
    """B2: each record validated at receipt; invalid ones stored with their error, valid ones queued.
    ``answer(batch_id)``: a statement for the same write."""
    now = clock.now()
    labels = await labels_for(db, account_id, records)
    now_ms = epoch_ms(now)
    checked = [check_record(record, V2, labels, now_ms, i) for i, record in enumerate(records)]
    batch_id = new_record_id()
    stored = [usable(c, PENDING_STATE) if c.valid else _invalid(c, now_ms) for c in checked]
    await _store_batch(
        db,
        account_id=account_id,
        batch_id=batch_id,
        version=V2,
        created_at=now,
        records=stored,
        deliver=any(c.valid for c in checked),
        also=None if answer is None else answer(batch_id),
    )
    return batch_id


@dataclass(frozen=True)
class RealtimeResult:
    record: CheckedRecord
    outcome: DeliveryOutcome | None  # None when the record is invalid
    record_id: str | None = None  # the id its push message had (R2 records are never shown again: not stored)


def push_message(settings: Settings, checked: CheckedRecord, record_id: str) -> PushMessage:
    assert checked.label is not None and checked.caller and checked.receiver
    assert checked.label_name is not None and checked.starts_at is not None and checked.ends_at is not None
    return PushMessage(
        record_id=record_id,
        caller=checked.caller,
        receiver=checked.receiver,
        label_id=str(checked.label.id),
        label_name=checked.label_name,
        logo_url=logo_url(settings, checked.label.logo_key),
        call_reason=checked.call_reason,
        starts_at=checked.starts_at,
        ends_at=checked.ends_at,
    )


async def submit_realtime_v2(
    runtime: Runtime, account_id: uuid.UUID, record: dict[str, Any], *, answer: AnswerStep | None = None
) -> RealtimeResult:
    """R2: validate, push synchronously, then store the record with its outcome in one write. With
    ``answer(result)`` the record is stored in a write of its own with that statement, not in the group commit
    (whose other records must not roll back with it)."""
    db, settings = runtime.db, runtime.settings
    now = clock.now()
    labels = await labels_for(db, account_id, [record])
    now_ms = epoch_ms(now)
    checked = check_record(record, V2, labels, now_ms)
    outcome: DeliveryOutcome | None = None
    record_id: str | None = None
    if checked.valid:
        record_id = str(new_record_id(now_ms))
        try:
            outcome = (await deliver_many(runtime, [push_message(settings, checked, record_id)]))[0]
        except Exception:
            # The push could not be attempted: that is the record's outcome (SPEC §8 #4), not a 500 for a valid record.
            log.exception("realtime_push_failed", record_id=record_id)
            outcome = delivery_outcome(settings, "failed_to_push")
        state = DELIVERED_STATE if outcome.reason is None else OUTCOME_STATES[outcome.reason]
        if settings.analytics_figures:
            # Counted in the group's write (``_realtime_group``): the day of the group's arrival in this timezone.
            timezone = known_timezone(account_id) or await account_timezone(db, account_id)
            stored = usable(checked, state, account_id, timezone)
        else:
            stored = usable(checked, state)
    else:
        stored = _invalid(checked, now_ms)
    result = RealtimeResult(record=checked, outcome=outcome, record_id=record_id)
    if answer is None:
        await runtime.realtime_inserter.insert(stored)
    else:
        await db.write([*_realtime_group([stored]), answer(result)])
        _count_records([stored])
    return result


def _realtime_group(records: list[NewRecord]) -> list[Step]:
    """One group commit of R2 records: a group of its own, with an internal id (time-ordered, as batch ids: new ones
    append to their index) and no account; and their counts for the daily figures, in the same write (as deltas,
    which ``analytics.deltas`` folds in: cheaper here than an upsert)."""
    figures = RecordTally()
    steps = group_steps(new_record_id(), None, V2, clock.now(), records, figures)
    return [*steps, delta_step(figures)] if figures else steps


def _count_records(records: list[NewRecord]) -> None:
    """The Prometheus counter of records by outcome, once a group is committed: one increment per outcome."""
    counts: dict[int, int] = {}
    for record in records:
        if record.text is not None:
            counts[record.state] = counts.get(record.state, 0) + 1
    for state, count in counts.items():
        metrics.CALL_RECORDS.labels(outcome=REASON_OF_STATE.get(state) or "delivered").inc(count)


def new_realtime_inserter(db: Database) -> GroupInserter[NewRecord]:
    """The R1/R2 group commit, one per process (``Runtime.realtime_inserter``)."""
    # Together: the group's row, texts and records are new rows, the texts and records find the group by its id.
    return GroupInserter(db, _realtime_group, name="call-records", together=True, committed=_count_records)
