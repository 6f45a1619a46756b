"""Background work of call personalisation: delivering a stored batch (one job per batch)."""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from callerid.jobs import JobContext, handler
from callerid.personalisation import service

log = structlog.get_logger("callerid.personalisation")


@handler(service.DELIVER_BATCH_JOB)
async def deliver_batch(ctx: JobContext, payload: dict[str, Any]) -> None:
    batch_id = uuid.UUID(payload["batch_id"])
    try:
        await service.deliver_batch(ctx.services, ctx.db, ctx.settings, batch_id)
    except Exception:
        if ctx.attempt < ctx.settings.job_max_attempts:
            raise  # the runner retries with backoff
        # Out of retries: every acknowledged record still gets a final outcome rather than staying pending.
        log.exception("batch_delivery_gave_up", batch_id=str(batch_id), attempts=ctx.attempt)
        await service.fail_pending(ctx.db, ctx.settings, batch_id)
