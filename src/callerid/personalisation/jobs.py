"""Background work of call personalisation: delivering a stored batch (one job per batch)."""

from __future__ import annotations

import uuid
from typing import Any

from callerid.jobs import JobContext, handler
from callerid.personalisation import service


@handler(service.DELIVER_BATCH_JOB)
async def deliver_batch(ctx: JobContext, payload: dict[str, Any]) -> None:
    await service.deliver_batch(ctx.services, ctx.db, ctx.settings, uuid.UUID(payload["batch_id"]))
