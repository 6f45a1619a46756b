"""Delivering a stored batch to phones, and writing its records' outcomes back: one UPDATE of the batch row."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, type_coerce, update

from callerid.analytics.counting import RECORD_COUNTER_OF, RecordTally, account_timezone
from callerid.analytics.tally import day_in
from callerid.config import Settings
from callerid.db import Database
from callerid.db.base import UuidText
from callerid.db.values import in_values
from callerid.db.write import Step, WriteConflict
from callerid.delivery.service import PushMessage, plan_delivery, push_planned
from callerid.delivery.service import outcome as delivery_outcome
from callerid.labels.service import logo_url
from callerid.labels.shared import LABELS
from callerid.ops import metrics
from callerid.personalisation.models import PENDING_STATE, CallBatch, CallBatchText, CallRecord, first_id, record_uuid
from callerid.personalisation.outcomes import Outcome, encode_outcomes
from callerid.personalisation.reading import IN_GROUP, RECORDS_WITH_TEXTS, group_range

if TYPE_CHECKING:
    from callerid.runtime import Runtime

_BATCHES = CallBatch.__table__
OUTCOME_OF_COUNTER = {counter: reason or "delivered" for reason, counter in RECORD_COUNTER_OF.items()}
_RECORDS = CallRecord.__table__.c
_TEXTS = CallBatchText.__table__.c
_BATCH = select(_BATCHES.c.key, _BATCHES.c.outcomes, _BATCHES.c.account_id, _BATCHES.c.created_at).where(
    _BATCHES.c.id == bindparam("batch_id")
)
# A batch's records still to deliver, in submission order: first only who receives them (most receivers of a batch
# are usually not app users, and their records need nothing more), ...
_PENDING_RECEIVERS = (
    select(_RECORDS.id, _RECORDS.receiver, _RECORDS.caller, _RECORDS.display)
    .where(IN_GROUP, _RECORDS.state == PENDING_STATE)
    .order_by(_RECORDS.id)
)
# The labels of a batch's texts (a batch mostly has one), for its records' daily figures.
_TEXT_LABELS = select(_TEXTS.number, _TEXTS.label_id).where(_TEXTS.batch_key == bindparam("key"))
# ... then everything a push message needs, for the records that get pushed (ids as text: they only go into the
# messages). The ids are one list parameter, so that one statement built once serves any number of them.
_TO_PUSH = (
    select(
        _RECORDS.id,
        type_coerce(_RECORDS.legacy_id, UuidText()).label("legacy_id"),
        _RECORDS.caller,
        _RECORDS.receiver,
        type_coerce(_TEXTS.label_id, UuidText()).label("label_id"),
        _TEXTS.label_name,
        _TEXTS.call_reason,
        _RECORDS.starts_at,
        _RECORDS.ends_at,
        LABELS.c.logo_key,
    )
    .select_from(RECORDS_WITH_TEXTS)
    .where(in_values(_RECORDS.id, "ids"))
    .order_by(_RECORDS.id)
)
# A batch's outcomes, once: a second writer (a job run again after its lease ran out) changes nothing.
_SET_OUTCOMES = (
    update(_BATCHES)
    .where(_BATCHES.c.key == bindparam("key"), _BATCHES.c.outcomes.is_(None))
    .values(outcomes=bindparam("new_outcomes", type_=_BATCHES.c.outcomes.type))
)


@dataclass(frozen=True)
class _Pending:
    key: int  # the batch's group key
    ids: list[int]
    receivers: list[str]
    account_id: uuid.UUID
    created_at: datetime
    callers: list[int]
    displays: list[int]


async def _pending(db: Database, batch_id: uuid.UUID) -> _Pending | None:
    """A batch's records still to deliver; None when there are none (delivered already, or no valid record)."""
    async with db.point_session() as session:
        batch = (await session.execute(_BATCH, {"batch_id": batch_id})).first()
        if batch is None or batch.outcomes is not None:
            return None
        rows = (await session.execute(_PENDING_RECEIVERS, group_range(batch.key))).all()
    if not rows:
        return None
    return _Pending(
        batch.key,
        [row.id for row in rows],
        [str(row.receiver) for row in rows],
        batch.account_id,
        batch.created_at,
        [row.caller for row in rows],
        [row.display for row in rows],
    )


async def _outcomes_step(
    db: Database, settings: Settings, pending: _Pending, outcomes: Sequence[str | None]
) -> tuple[list[Step], RecordTally]:
    """The daily figures of the batch's records by outcome (``outcomes``: each pending record's reason, None for
    delivered), keyed by the day the batch arrived in its account's timezone; empty when figures are off."""
    figures = RecordTally()
    if not settings.analytics_figures:
        return [], figures
    timezone = await account_timezone(db, pending.account_id)
    day = day_in(timezone, pending.created_at)
    async with db.point_session() as session:
        labels = {row.number: row.label_id for row in await session.execute(_TEXT_LABELS, {"key": pending.key})}
    for caller, display, reason in zip(pending.callers, pending.displays, outcomes, strict=True):
        figures.add((pending.account_id, day, labels[display], caller), RECORD_COUNTER_OF[reason])
    return figures.steps(db), figures


async def _write_outcomes(db: Database, pending: _Pending, encoded: list[Any], figures: list[Step]) -> bool:
    """The batch's outcomes and their figures in one write; False when another run wrote them first (nothing
    changed: the figures are counted once, with the outcomes that were kept)."""
    outcomes = Step(_SET_OUTCOMES, {"key": pending.key, "new_outcomes": encoded}, expect=1 if figures else None)
    try:
        await db.write([outcomes, *figures])
    except WriteConflict:
        return False
    return True


def _count(figures: RecordTally) -> None:
    for counter, amount in figures.by_counter().items():
        metrics.CALL_RECORDS.labels(outcome=OUTCOME_OF_COUNTER[counter]).inc(amount)


async def deliver_batch(runtime: Runtime, batch_id: uuid.UUID) -> int:
    """Deliver a batch's pending records and store their outcomes, in one write. Idempotent: a delivered batch has
    its outcomes and is not delivered again; a job run again after a crash before that write delivers it again."""
    db, settings = runtime.db, runtime.settings
    pending = await _pending(db, batch_id)
    if pending is None:
        return 0
    first = first_id(pending.key)
    plan = await plan_delivery(db, settings, pending.receivers)
    messages: list[PushMessage] = []
    if plan.pushes:
        ids = [pending.ids[index] for index, _ in plan.pushes]
        async with db.point_session() as session:
            details = (await session.execute(_TO_PUSH, {"ids": ids})).all()
        logo_urls: dict[str, str] = {}  # a batch mostly uses one or a few labels
        for row in details:
            url = logo_urls.get(row.logo_key)
            if url is None:
                url = logo_urls[row.logo_key] = logo_url(settings, row.logo_key)
            messages.append(
                PushMessage(
                    record_id=row.legacy_id or record_uuid(batch_id, row.id - first),
                    caller=str(row.caller),
                    receiver=str(row.receiver),
                    label_id=row.label_id,
                    label_name=row.label_name,
                    logo_url=url,
                    call_reason=row.call_reason,
                    starts_at=row.starts_at,
                    ends_at=row.ends_at,
                )
            )
    outcomes = await push_planned(runtime.hub, plan, messages)
    # Outcomes are few (delivered, or one of four reasons): stored by position ranges (personalisation.outcomes).
    by_outcome: dict[Outcome, list[int]] = defaultdict(list)
    for record_id, outcome in zip(pending.ids, outcomes, strict=True):
        by_outcome[(outcome.reason, outcome.message)].append(record_id - first)
    steps, figures = await _outcomes_step(db, settings, pending, [outcome.reason for outcome in outcomes])
    if await _write_outcomes(db, pending, encode_outcomes(by_outcome), steps):
        _count(figures)
    return len(pending.ids)


async def fail_pending(db: Database, settings: Settings, batch_id: uuid.UUID) -> None:
    """Give a batch's still-pending records the final ``failed_to_push`` outcome (SPEC §8 #4)."""
    pending = await _pending(db, batch_id)
    if pending is None:
        return
    gave_up = delivery_outcome(settings, "failed_to_push")
    first = first_id(pending.key)
    positions = {(gave_up.reason, gave_up.message): [record_id - first for record_id in pending.ids]}
    steps, figures = await _outcomes_step(db, settings, pending, [gave_up.reason] * len(pending.ids))
    if await _write_outcomes(db, pending, encode_outcomes(positions), steps):
        _count(figures)
