"""Background work of the analytics domain: retention of raw per-call data (the daily figures are never purged)."""

from __future__ import annotations

from typing import Any

from callerid.analytics.blocked import BLOCKED_PURGES
from callerid.analytics.signals import SIGNAL_PURGES
from callerid.jobs import JobContext, handler
from callerid.jobs.purge import retention_every, run_purges


@handler("analytics.purge_blocked_attempts", every=retention_every)
async def purge_blocked_attempts(ctx: JobContext, _payload: dict[str, Any]) -> None:
    """Blocked attempts ``blocked_attempt_retention_days`` after they happened; their counts stay."""
    await run_purges(ctx, BLOCKED_PURGES)


@handler("analytics.purge_call_signals", every=retention_every)
async def purge_call_signals(ctx: JobContext, _payload: dict[str, Any]) -> None:
    """Call signals ``signal_retention_days`` after they arrived; their counts stay."""
    await run_purges(ctx, SIGNAL_PURGES)
