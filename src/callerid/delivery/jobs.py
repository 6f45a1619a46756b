"""Background work of the delivery domain: forgetting devices of phones gone for ``device_retention_days``, expired
number-verification registrations and the development SMS outbox."""

from __future__ import annotations

from typing import Any

from callerid.delivery.retention import DEVICE_PURGES, REGISTRATION_PURGES
from callerid.jobs import JobContext, handler
from callerid.jobs.purge import retention_every, run_purges


@handler("delivery.purge_devices", every=retention_every)
async def purge_devices(ctx: JobContext, _payload: dict[str, Any]) -> None:
    await run_purges(ctx, (*DEVICE_PURGES, *REGISTRATION_PURGES))
