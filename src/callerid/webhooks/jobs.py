"""Background work of the webhooks domain: deliveries, notice e-mails, log retention."""

from __future__ import annotations

import uuid
from typing import Any

from callerid.jobs import JobContext, RetryLater, handler
from callerid.jobs.purge import retention_every, run_purges
from callerid.webhooks import mail, service


@handler(service.DELIVER_JOB)
async def deliver(ctx: JobContext, payload: dict[str, Any]) -> None:
    """One attempt per run; a failed attempt puts the same job back for the next retry time.

    ``manual`` (a resend from the console): one attempt, no retries, no failure e-mail.
    """
    next_attempt_at = await service.attempt_delivery(
        ctx.runtime, uuid.UUID(payload["event_id"]), manual=bool(payload.get("manual"))
    )
    if next_attempt_at is not None:
        raise RetryLater(at=next_attempt_at)


@handler(mail.SEND_MAIL_JOB)
async def send_mail(ctx: JobContext, payload: dict[str, Any]) -> None:
    await mail.deliver_mail(ctx.db, ctx.settings, uuid.UUID(payload["mail_id"]))


@handler("webhooks.purge_logs", every=retention_every)
async def purge_logs(ctx: JobContext, _payload: dict[str, Any]) -> None:
    await run_purges(ctx, service.LOG_PURGES)
