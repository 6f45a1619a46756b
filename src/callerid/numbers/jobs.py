"""The list/delist job: verification, then the state change and any held requests (SPEC §7.3, §7.5); retention of
finished jobs."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam

from callerid.config import Settings
from callerid.jobs import JobContext, handler
from callerid.jobs.purge import Purge, retention_every, run_purges
from callerid.numbers.models import JOB_DONE, NumberJob
from callerid.numbers.service import JOB_KIND, finish_job
from callerid.numbers.verification import load_verifier


@handler(JOB_KIND)
async def process_number_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    job_id = uuid.UUID(payload["job_id"])
    async with ctx.db.session() as session:
        job = await session.get(NumberJob, job_id)
    if job is None or job.status == JOB_DONE:
        return  # at-least-once delivery: already processed
    # Verification may be slow or external, so it runs outside the write transaction.
    failures = await load_verifier(ctx.settings.number_verifier)(job.action, list(job.numbers))
    async with ctx.db.transaction() as session:
        job = await session.get(NumberJob, job_id)
        if job is None:
            return
        await finish_job(session, ctx.settings, job, failures)


_JOBS = NumberJob.__table__


def _job_cutoffs(settings: Settings, now: datetime) -> dict[str, Any]:
    return {"finished_before": now - timedelta(days=settings.number_job_retention_days)}


# Finished jobs only (an unfinished one has no finished_at), by ix_number_jobs_finished_at. Numbers point at a job
# only while it runs (their job_id is SET NULL anyway).
NUMBER_JOB_PURGES = (
    Purge(
        "number_jobs",
        _JOBS,
        (_JOBS.c.finished_at < bindparam("finished_before")) & (_JOBS.c.status == JOB_DONE),
        _job_cutoffs,
    ),
)


@handler("numbers.purge_jobs", every=retention_every)
async def purge_number_jobs(ctx: JobContext, _payload: dict[str, Any]) -> None:
    await run_purges(ctx, NUMBER_JOB_PURGES)
