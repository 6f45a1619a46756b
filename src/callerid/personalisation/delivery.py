"""Delivering a stored batch to phones, and writing each record's outcome back: one UPDATE per distinct outcome."""

from __future__ import annotations

import uuid
from collections import defaultdict
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
from callerid.personalisation.models import ERROR, PENDING, SUCCESS, CallRecord
from callerid.personalisation.reading import RECORDS_WITH_LABELS

if TYPE_CHECKING:
    from callerid.runtime import Runtime

_RECORDS = CallRecord.__table__.c
# A batch's records still to deliver, in submission order: first only who receives them (most receivers of a batch
# are usually not app users, and their records need nothing more), ...
_PENDING_RECEIVERS = (
    select(_RECORDS.position, _RECORDS.receiver)
    .where(_RECORDS.batch_id == bindparam("batch_id"), _RECORDS.status == PENDING)
    .order_by(_RECORDS.position)
)
# ... then everything a push message needs, for the records that get pushed (ids as text: they only go into the
# messages). The positions are one list parameter, so that one statement built once serves any number of them.
_TO_PUSH = (
    select(
        type_coerce(_RECORDS.id, UuidText()).label("id"),
        _RECORDS.position,
        _RECORDS.caller,
        _RECORDS.receiver,
        type_coerce(_RECORDS.label_id, UuidText()).label("label_id"),
        _RECORDS.label_name,
        _RECORDS.call_reason,
        _RECORDS.starts_at,
        _RECORDS.ends_at,
        LABELS.c.logo_key,
    )
    .select_from(RECORDS_WITH_LABELS)
    .where(_RECORDS.batch_id == bindparam("batch_id"), in_values(_RECORDS.position, "positions"))
    .order_by(_RECORDS.position)
)
# One outcome for the still-pending records of a batch at the listed positions.
_SET_OUTCOME = (
    update(CallRecord.__table__)
    .where(
        _RECORDS.batch_id == bindparam("batch_id"),
        _RECORDS.status == PENDING,
        in_values(_RECORDS.position, "positions"),
    )
    .values(status=bindparam("new_status"), reason=bindparam("new_reason"), message=bindparam("new_message"))
)


async def deliver_batch(runtime: Runtime, batch_id: uuid.UUID) -> int:
    """Deliver a batch's pending records and store each outcome. Idempotent: only pending records are
    taken and only pending records are updated, so a job run again after a crash finishes the rest."""
    db, settings = runtime.db, runtime.settings
    async with db.point_session() as session:
        rows = (await session.execute(_PENDING_RECEIVERS, {"batch_id": batch_id})).all()
    if not rows:
        return 0
    plan = await plan_delivery(db, settings, [row.receiver for row in rows])
    messages: list[PushMessage] = []
    if plan.pushes:
        positions = [rows[index].position for index, _ in plan.pushes]
        async with db.point_session() as session:
            details = (await session.execute(_TO_PUSH, {"batch_id": batch_id, "positions": positions})).all()
        logo_urls: dict[str, str] = {}  # a batch mostly uses one or a few labels
        for row in details:
            url = logo_urls.get(row.logo_key)
            if url is None:
                url = logo_urls[row.logo_key] = logo_url(settings, row.logo_key)
            messages.append(
                PushMessage(
                    record_id=row.id,
                    caller=row.caller,
                    receiver=row.receiver,
                    label_id=row.label_id,
                    label_name=row.label_name,
                    logo_url=url,
                    call_reason=row.call_reason,
                    starts_at=row.starts_at,
                    ends_at=row.ends_at,
                )
            )
    outcomes = await push_planned(runtime.hub, plan, messages)
    # Outcomes are few (delivered, or one of four reasons): one UPDATE each, by position within the batch.
    by_outcome: dict[tuple[str | None, str | None], list[int]] = defaultdict(list)
    for row, outcome in zip(rows, outcomes, strict=True):
        by_outcome[(outcome.reason, outcome.message)].append(row.position)
    await db.write(
        [
            Step(
                _SET_OUTCOME,
                {
                    "batch_id": batch_id,
                    "positions": positions,
                    "new_status": SUCCESS if reason is None else ERROR,
                    "new_reason": reason,
                    "new_message": message,
                },
            )
            for (reason, message), positions in by_outcome.items()
        ]
    )
    return len(rows)


async def fail_pending(db: Database, settings: Settings, batch_id: uuid.UUID) -> None:
    """Give a batch's still-pending records the final ``failed_to_push`` outcome (SPEC §8 #4)."""
    gave_up = delivery_outcome(settings, "failed_to_push")
    records = CallRecord.__table__.c
    async with db.transaction() as session:
        await session.execute(
            update(CallRecord.__table__)
            .where(records.batch_id == batch_id, records.status == PENDING)
            .values(status=ERROR, reason=gave_up.reason, message=gave_up.message)
        )
