"""Background work of call personalisation: delivering a stored batch (one job per batch), retention."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, exists, select

from callerid.config import Settings
from callerid.jobs import JobContext, handler
from callerid.jobs.purge import Purge, retention_every, run_purges
from callerid.personalisation import service
from callerid.personalisation.models import GROUP_SPAN, PENDING_STATE, CallBatch, CallRecord, group_key_of

log = structlog.get_logger("callerid.personalisation")

_RECORDS = CallRecord.__table__
_BATCHES = CallBatch.__table__


def _record_cutoffs(settings: Settings, now: datetime) -> dict[str, Any]:
    cutoff = now - timedelta(days=settings.call_record_retention_days)
    return {"ended_before_ms": service.epoch_ms(cutoff), "created_before": cutoff}


# A record is pending while its batch has no outcomes yet (a record row is never updated: personalisation.outcomes).
# A scalar sub-select, not EXISTS: PostgreSQL may answer an EXISTS under OR by hashing every delivered batch, for
# each chunk; this is one primary-key probe per record read, on both databases.
_DELIVERED = (
    select(_BATCHES.c.outcomes.is_not(None)).where(_BATCHES.c.key == group_key_of(_RECORDS.c.id)).scalar_subquery()
)
_HAS_RECORDS = exists().where(
    _RECORDS.c.id >= _BATCHES.c.key * GROUP_SPAN, _RECORDS.c.id < (_BATCHES.c.key + 1) * GROUP_SPAN
)

# In this order: records whose window ended, and records refused as invalid (their ends_at is their arrival), never a
# pending one (its delivery is still to come); then groups left without records (a group arrived with its records,
# so one whose records are gone is older than the cutoff), their texts with them (ON DELETE CASCADE).
# ix_call_records_ends_at serves the records, ix_call_batches_created_at the groups (the records' primary key the
# NOT EXISTS).
RECORD_PURGES = (
    Purge(
        "call_records",
        _RECORDS,
        (_RECORDS.c.ends_at < bindparam("ended_before_ms")) & ((_RECORDS.c.state != PENDING_STATE) | _DELIVERED),
        _record_cutoffs,
    ),
    Purge(
        "call_batches",
        _BATCHES,
        (_BATCHES.c.created_at < bindparam("created_before")) & ~_HAS_RECORDS,
        _record_cutoffs,
    ),
)


@handler("personalisation.purge", every=retention_every)
async def purge_records(ctx: JobContext, _payload: dict[str, Any]) -> None:
    """Call records ``call_record_retention_days`` after their window ended, and their batches."""
    await run_purges(ctx, RECORD_PURGES)


@handler(service.DELIVER_BATCH_JOB)
async def deliver_batch(ctx: JobContext, payload: dict[str, Any]) -> None:
    batch_id = uuid.UUID(payload["batch_id"])
    try:
        await service.deliver_batch(ctx.runtime, batch_id)
    except Exception:
        if ctx.attempt < ctx.settings.job_max_attempts:
            raise  # the runner retries with backoff
        # Out of retries: every acknowledged record still gets a final outcome rather than staying pending.
        log.exception("batch_delivery_gave_up", batch_id=str(batch_id), attempts=ctx.attempt)
        await service.fail_pending(ctx.db, ctx.settings, batch_id)
