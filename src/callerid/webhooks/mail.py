"""Notice e-mails (webhook failures): queued in ``mail_outbox`` and sent by a job.

With ``smtp_host`` set, the job sends through SMTP (stdlib smtplib in a thread: one short blocking call
per notice does not justify another dependency). Without it, the message stays in the outbox with
status ``outbox`` for the console to show.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from sqlalchemy import Text, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs import enqueue
from callerid.webhooks.models import OutboxMail

SEND_MAIL_JOB = "webhooks.send_mail"
QUEUED = "queued"
SENT = "sent"
OUTBOX = "outbox"


@dataclass(frozen=True)
class Attachment:
    """A text file sent with a mail (the weekly report's CSV); kept on the outbox row until it is sent."""

    filename: str
    content: str
    content_type: str = "text/csv"

    def as_json(self) -> dict[str, str]:
        return {"filename": self.filename, "content_type": self.content_type, "content": self.content}


async def queue_mail(
    session: AsyncSession,
    *,
    account_id: uuid.UUID | None,
    recipients: list[str],
    subject: str,
    body: str,
    attachments: Sequence[Attachment] = (),
) -> OutboxMail:
    """Store the mail and enqueue its sending, in the caller's transaction."""
    mail = OutboxMail(
        id=uuid.uuid4(),
        account_id=account_id,
        recipients=recipients,
        subject=subject[:300],
        body=body,
        attachments=[attachment.as_json() for attachment in attachments] or None,
        status=QUEUED,
        created_at=clock.now(),
    )
    session.add(mail)
    await session.flush()
    await enqueue(session, SEND_MAIL_JOB, {"mail_id": str(mail.id)})
    return mail


async def list_outbox(
    session: AsyncSession, *, account_id: uuid.UUID | None = None, limit: int = 100, recipient: str | None = None
) -> list[OutboxMail]:
    """Newest first; every mail, or one account's, or only those sent to ``recipient`` (ignoring case)."""
    query = select(OutboxMail).order_by(OutboxMail.created_at.desc()).limit(limit)
    if account_id is not None:
        query = query.where(OutboxMail.account_id == account_id)
    if recipient is not None:
        # A LIKE on the JSON text, in SQL, so that the limit counts matching mails only (filtering in Python after a
        # bounded fetch would miss older matches). It is exact on both databases: ``recipients`` is written by
        # SQLAlchemy's default serializer, json.dumps, and kept as that very text (SQLite: TEXT; PostgreSQL: ``json``,
        # not ``jsonb``, stores its input verbatim), so an address appears as its JSON string, quotes included. The
        # quotes make it a whole-element match (bob@x.example never matches alice.bob@x.example); LIKE's own
        # wildcards (``_`` is common in addresses) are escaped. lower() on both sides ignores case: for non-ASCII
        # letters, which json.dumps writes as \uXXXX escapes, that holds because every address queued here is a
        # member's e-mail, lower-cased when it was stored (accounts.service.check_email), like the needle is.
        needle = json.dumps(recipient.strip().lower())
        pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(func.lower(cast(OutboxMail.recipients, Text)).like(pattern, escape="\\"))
    return list((await session.scalars(query)).all())


def _smtp_send(settings: Settings, mail: OutboxMail) -> None:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(mail.recipients)
    message["Subject"] = mail.subject
    message.set_content(mail.body)
    for attachment in mail.attachments or ():
        maintype, _, subtype = str(attachment["content_type"]).partition("/")
        if maintype != "text":  # only text is ever queued (``Attachment``); anything else goes as bytes
            message.add_attachment(
                str(attachment["content"]).encode(), maintype=maintype, subtype=subtype, filename=attachment["filename"]
            )
        else:
            message.add_attachment(str(attachment["content"]), subtype=subtype, filename=attachment["filename"])
    assert settings.smtp_host is not None
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.send_message(message)


async def deliver_mail(db: Database, settings: Settings, mail_id: uuid.UUID) -> None:
    """Send one queued mail (or leave it in the outbox). SMTP errors raise, so the job retries."""
    async with db.session() as session:
        mail = await session.get(OutboxMail, mail_id)
    if mail is None or mail.status != QUEUED:
        return
    if not mail.recipients or settings.smtp_host is None:
        status, sent_at = OUTBOX, None
    else:
        try:
            await asyncio.to_thread(_smtp_send, settings, mail)
        except (OSError, smtplib.SMTPException) as exc:
            # Kept on the row for the console; raising lets the job runner retry with back-off.
            async with db.transaction() as session:
                await session.execute(update(OutboxMail).where(OutboxMail.id == mail_id).values(error=repr(exc)[:2000]))
            raise
        status, sent_at = SENT, clock.now()
    async with db.transaction() as session:
        await session.execute(
            update(OutboxMail).where(OutboxMail.id == mail_id).values(status=status, sent_at=sent_at, error=None)
        )
