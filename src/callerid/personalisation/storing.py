"""Storing call records durably: a batch with one multi-row INSERT in the same transaction as the job that
delivers it (B1/B2), and the real-time records (R1/R2) through one group commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import insert

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.db.write import Step
from callerid.delivery.service import DeliveryOutcome, PushMessage, deliver_many
from callerid.delivery.service import outcome as delivery_outcome
from callerid.jobs import enqueue_step
from callerid.labels.service import logo_url
from callerid.personalisation.models import ERROR, INVALID_INPUT, PENDING, SUCCESS, CallBatch, CallRecord
from callerid.personalisation.rules import BATCH_FIELD, CheckedRecord, check_record, epoch_ms, labels_for, new_record_id
from callerid.personalisation.schemas import V1, V2
from callerid.personalisation.writer import GroupInserter

if TYPE_CHECKING:
    from callerid.runtime import Runtime

log = structlog.get_logger("callerid.personalisation")
DELIVER_BATCH_JOB = "personalisation.deliver_batch"


def _row(
    checked: CheckedRecord,
    *,
    account_id: uuid.UUID,
    batch_id: uuid.UUID | None,
    version: str,
    created_at: datetime,
    status: str,
    reason: str | None = None,
    field: str | None = None,
    message: str | None = None,
    sent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``call_records`` row; every row has the same keys so a batch is one executemany INSERT."""
    usable = sent is None
    return {
        "id": checked.id,
        "account_id": account_id,
        "batch_id": batch_id,
        "position": checked.position,
        "version": version,
        "caller": checked.caller if usable else None,
        "receiver": checked.receiver if usable else None,
        "label_id": checked.label.id if usable and checked.label is not None else None,
        "label_name": checked.label_name if usable else None,
        "call_reason": checked.call_reason if usable else None,
        "starts_at": checked.starts_at if usable else None,
        "ends_at": checked.ends_at if usable else None,
        "status": status,
        "reason": reason,
        "field": field,
        "message": message,
        "sent": sent,
        "created_at": created_at,
    }


def _invalid_row(checked: CheckedRecord, **common: Any) -> dict[str, Any]:
    return _row(
        checked,
        **common,
        status=ERROR,
        reason=INVALID_INPUT,
        field=checked.v2_field,
        message=checked.message,
        sent=checked.sent,
    )


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


_INSERT_BATCH = insert(CallBatch.__table__)
_INSERT_RECORDS = insert(CallRecord.__table__)


async def _store_batch(
    db: Database,
    *,
    account_id: uuid.UUID,
    batch_id: uuid.UUID,
    version: str,
    created_at: datetime,
    rows: list[dict[str, Any]],
    deliver: bool,
) -> None:
    """Batch, records and (when some are valid) the delivery job, in one transaction: once this returns
    the batch cannot be lost, and its processing is already queued."""
    batch = {"id": batch_id, "account_id": account_id, "version": version, "record_count": len(rows)}
    batch["created_at"] = created_at
    # Values every record shares are converted once.
    shared = {"account_id": account_id, "batch_id": batch_id, "version": version, "created_at": created_at}
    steps = [Step(_INSERT_BATCH, batch), Step(_INSERT_RECORDS, rows=rows, shared=shared)]
    if deliver:
        steps.append(enqueue_step(DELIVER_BATCH_JOB, {"batch_id": str(batch_id)}))
    await db.write(steps)


@dataclass(frozen=True)
class V1Result:
    batch_id: uuid.UUID
    error: str | None  # the first error (v1 text, indexed when not the first record); None = accepted


async def submit_v1(db: Database, account_id: uuid.UUID, records: list[dict[str, Any]]) -> V1Result:
    """R1 (one record) and B1: all-or-nothing (SPEC §5.5). The batch is stored either way, so that its
    BatchID can be queried; only an accepted batch is delivered."""
    now = clock.now()
    labels = await labels_for(db, account_id, records)
    now_ms = epoch_ms(now)
    checked = [check_record(record, V1, labels, now_ms, i) for i, record in enumerate(records)]
    batch_id = new_record_id()
    common: dict[str, Any] = {"account_id": account_id, "batch_id": batch_id, "version": V1, "created_at": now}
    first_bad = next((c for c in checked if not c.valid), None)
    if first_bad is None:
        rows = [_row(c, **common, status=PENDING) for c in checked]
        error = None
    else:
        error = (
            first_bad.message if first_bad.position == 0 else f"call_records[{first_bad.position}]: {first_bad.message}"
        )
        # Valid records of a rejected batch are not delivered and say why; they are not usable records.
        rejected = f"batch rejected, call_records[{first_bad.position}]: {first_bad.message}"
        rows = [
            _invalid_row(c, **common)
            if not c.valid
            else _row(
                c,
                **common,
                status=ERROR,
                reason=INVALID_INPUT,
                field=BATCH_FIELD,
                message=rejected,
                sent=_valid_values(c),
            )
            for c in checked
        ]
    await _store_batch(db, **common, rows=rows, deliver=error is None)
    return V1Result(batch_id=batch_id, error=error)


async def submit_v2_batch(db: Database, account_id: uuid.UUID, records: list[dict[str, Any]]) -> uuid.UUID:
    """B2: each record validated at receipt; invalid ones stored with their error, valid ones queued."""
    now = clock.now()
    labels = await labels_for(db, account_id, records)
    now_ms = epoch_ms(now)
    checked = [check_record(record, V2, labels, now_ms, i) for i, record in enumerate(records)]
    batch_id = new_record_id()
    common: dict[str, Any] = {"account_id": account_id, "batch_id": batch_id, "version": V2, "created_at": now}
    rows = [_row(c, **common, status=PENDING) if c.valid else _invalid_row(c, **common) for c in checked]
    await _store_batch(db, **common, rows=rows, deliver=any(c.valid for c in checked))
    return batch_id


@dataclass(frozen=True)
class RealtimeResult:
    record: CheckedRecord
    outcome: DeliveryOutcome | None  # None when the record is invalid


def push_message(settings: Settings, checked: CheckedRecord) -> PushMessage:
    assert checked.label is not None and checked.caller and checked.receiver
    assert checked.label_name is not None and checked.starts_at is not None and checked.ends_at is not None
    return PushMessage(
        record_id=str(checked.id),
        caller=checked.caller,
        receiver=checked.receiver,
        label_id=str(checked.label.id),
        label_name=checked.label_name,
        logo_url=logo_url(settings, checked.label.logo_key),
        call_reason=checked.call_reason,
        starts_at=checked.starts_at,
        ends_at=checked.ends_at,
    )


async def submit_realtime_v2(runtime: Runtime, account_id: uuid.UUID, record: dict[str, Any]) -> RealtimeResult:
    """R2: validate, push synchronously, then store the record with its outcome in one write."""
    db, settings = runtime.db, runtime.settings
    now = clock.now()
    labels = await labels_for(db, account_id, [record])
    checked = check_record(record, V2, labels, epoch_ms(now))
    common: dict[str, Any] = {"account_id": account_id, "batch_id": None, "version": V2, "created_at": now}
    outcome: DeliveryOutcome | None = None
    if checked.valid:
        try:
            outcome = (await deliver_many(runtime, [push_message(settings, checked)]))[0]
        except Exception:
            # The push could not be attempted: that is the record's outcome (SPEC §8 #4), not a 500 for a valid record.
            log.exception("realtime_push_failed", record_id=str(checked.id))
            outcome = delivery_outcome(settings, "failed_to_push")
        if outcome.reason is None:
            row = _row(checked, **common, status=SUCCESS)
        else:
            row = _row(checked, **common, status=ERROR, reason=outcome.reason, message=outcome.message)
    else:
        row = _invalid_row(checked, **common)
    await runtime.realtime_inserter.insert(row)
    return RealtimeResult(record=checked, outcome=outcome)


def new_realtime_inserter(db: Database) -> GroupInserter:
    """The R1/R2 group commit, one per process (``Runtime.realtime_inserter``)."""
    return GroupInserter(db, CallRecord.__table__)
