"""The list/delist job: verification, then the state change and any held requests (SPEC §7.3, §7.5)."""

from __future__ import annotations

import uuid
from typing import Any

from callerid.jobs import JobContext, handler
from callerid.jobs.service import wake_local_runners
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
    wake_local_runners()
