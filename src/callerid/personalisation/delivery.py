"""Delivering a stored batch to phones, and writing its records' outcomes back: one UPDATE of the batch row."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select, type_coerce, update

from callerid.config import Settings
from callerid.db import Database
from callerid.db.base import UuidText
from callerid.db.values import in_values
from callerid.db.write import Step
from callerid.delivery.service import PushMessage, plan_delivery, push_planned
from callerid.delivery.service import outcome as delivery_outcome
from callerid.labels.service import logo_url
from callerid.labels.shared import LABELS
from callerid.personalisation.models import PENDING_STATE, CallBatch, CallBatchText, CallRecord, first_id, record_uuid
from callerid.personalisation.outcomes import Outcome, encode_outcomes
from callerid.personalisation.reading import IN_GROUP, RECORDS_WITH_TEXTS, group_range

if TYPE_CHECKING:
    from callerid.runtime import Runtime

_BATCHES = CallBatch.__table__
_RECORDS = CallRecord.__table__.c
_TEXTS = CallBatchText.__table__.c
_BATCH = select(_BATCHES.c.key, _BATCHES.c.outcomes).where(_BATCHES.c.id == bindparam("batch_id"))
# A batch's records still to deliver, in submission order: first only who receives them (most receivers of a batch
# are usually not app users, and their records need nothing more), ...
_PENDING_RECEIVERS = (
    select(_RECORDS.id, _RECORDS.receiver).where(IN_GROUP, _RECORDS.state == PENDING_STATE).order_by(_RECORDS.id)
)
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


async def _pending(db: Database, batch_id: uuid.UUID) -> _Pending | None:
    """A batch's records still to deliver; None when there are none (delivered already, or no valid record)."""
    async with db.point_session() as session:
        batch = (await session.execute(_BATCH, {"batch_id": batch_id})).first()
        if batch is None or batch.outcomes is not None:
            return None
        rows = (await session.execute(_PENDING_RECEIVERS, group_range(batch.key))).all()
    if not rows:
        return None
    return _Pending(batch.key, [row.id for row in rows], [str(row.receiver) for row in rows])


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
    await db.write([Step(_SET_OUTCOMES, {"key": pending.key, "new_outcomes": encode_outcomes(by_outcome)})])
    return len(pending.ids)


async def fail_pending(db: Database, settings: Settings, batch_id: uuid.UUID) -> None:
    """Give a batch's still-pending records the final ``failed_to_push`` outcome (SPEC §8 #4)."""
    pending = await _pending(db, batch_id)
    if pending is None:
        return
    gave_up = delivery_outcome(settings, "failed_to_push")
    first = first_id(pending.key)
    positions = {(gave_up.reason, gave_up.message): [record_id - first for record_id in pending.ids]}
    await db.write([Step(_SET_OUTCOMES, {"key": pending.key, "new_outcomes": encode_outcomes(positions)})])
