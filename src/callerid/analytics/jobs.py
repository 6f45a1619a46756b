"""Background work of the analytics domain: R2's record counts folded into the daily figures; retention of raw
per-call data (the daily figures are never purged)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from callerid.analytics.blocked import BLOCKED_PURGES
from callerid.analytics.deltas import fold
from callerid.analytics.signals import SIGNAL_PURGES
from callerid.config import Settings
from callerid.jobs import JobContext, handler
from callerid.jobs.purge import retention_every, run_purges


def fold_every(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.figures_fold_seconds)


@handler("analytics.fold_figures", every=fold_every)
async def fold_figures(ctx: JobContext, _payload: dict[str, Any]) -> None:
    """R2's record counts (``figure_deltas``) into ``daily_figures``; readers fold too, this keeps the table small."""
    await fold(ctx.db)


@handler("analytics.purge_blocked_attempts", every=retention_every)
async def purge_blocked_attempts(ctx: JobContext, _payload: dict[str, Any]) -> None:
    """Blocked attempts ``blocked_attempt_retention_days`` after they happened; their counts stay."""
    await run_purges(ctx, BLOCKED_PURGES)


@handler("analytics.purge_call_signals", every=retention_every)
async def purge_call_signals(ctx: JobContext, _payload: dict[str, Any]) -> None:
    """Call signals ``signal_retention_days`` after they arrived; their counts stay."""
    await run_purges(ctx, SIGNAL_PURGES)
