"""Background work of the job runner itself: jobs that gave up stay for the operator to inspect, then go."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam

from callerid.config import Settings
from callerid.jobs.models import DEAD, Job
from callerid.jobs.purge import Purge, retention_every, run_purges
from callerid.jobs.registry import JobContext, handler

_JOBS = Job.__table__


def _dead_cutoffs(settings: Settings, now: datetime) -> dict[str, Any]:
    return {"dead_before": now - timedelta(days=settings.dead_job_retention_days)}


# A dead job's due_at is when it was last attempted; (status, due_at) is indexed (ix_jobs_status_due).
JOB_PURGES = (
    Purge("dead_jobs", _JOBS, (_JOBS.c.status == DEAD) & (_JOBS.c.due_at < bindparam("dead_before")), _dead_cutoffs),
)


@handler("jobs.purge_dead", every=retention_every)
async def purge_dead_jobs(ctx: JobContext, _payload: dict[str, Any]) -> None:
    await run_purges(ctx, JOB_PURGES)
