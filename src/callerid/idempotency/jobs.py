"""Keys of idempotent POSTs are kept ``idempotency_key_hours`` (24 by default), then deleted by a periodic purge."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam

from callerid.config import Settings
from callerid.idempotency.models import IdempotencyKey
from callerid.jobs import JobContext, handler
from callerid.jobs.purge import Purge, retention_every, run_purges

_KEYS = IdempotencyKey.__table__


def _cutoffs(settings: Settings, now: datetime) -> dict[str, Any]:
    return {"keys_before": now - timedelta(hours=settings.idempotency_key_hours)}


# ix_idempotency_keys_created_at serves it. A key still claimed is older than its lease only if its request died.
IDEMPOTENCY_PURGES = (Purge("idempotency_keys", _KEYS, _KEYS.c.created_at < bindparam("keys_before"), _cutoffs),)


@handler("idempotency.purge", every=retention_every)
async def purge_idempotency_keys(ctx: JobContext, _payload: dict[str, Any]) -> None:
    await run_purges(ctx, IDEMPOTENCY_PURGES)
