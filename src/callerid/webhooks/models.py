"""Tables of the webhooks domain: configs, events, delivery attempts, and the mail outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from callerid.db import Base

# Event states (SPEC §9.6).
PENDING = "pending"
SUCCESS = "success"
RESCHEDULED = "rescheduled"
WEBHOOK_DELETED = "webhook_deleted"
FAILED = "failed"
FINAL_STATES = (SUCCESS, WEBHOOK_DELETED, FAILED)
EVENT_STATES = (PENDING, SUCCESS, RESCHEDULED, WEBHOOK_DELETED, FAILED)

# Attempt outcomes (SPEC §9.6).
OUTCOME_SUCCESS = "success"
OUTCOME_HTTP_ERROR = "http_error"
OUTCOME_TIMEOUT = "timeout"
OUTCOME_CONNECTION_ERROR = "connection_error"
OUTCOME_WEBHOOK_NOT_FOUND = "webhook_not_found"

EVENT_TYPES = ("cmb", "user_feedback")


class WebhookConfig(Base):
    __tablename__ = "webhooks"
    # Names are unique per account regardless of case (SPEC §9.1 [P]); name_key is the folded name.
    __table_args__ = (UniqueConstraint("account_id", "name_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    name_key: Mapped[str] = mapped_column(String(50))
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[Any]]
    # The signing secret must be usable in clear to sign (HMAC), so it cannot be hashed like API-key secrets: it
    # is stored encrypted with the operator's key (``enc:v1:...``, bound to this row's id). Never read it as a
    # secret: open it with ``webhooks.secrets_at_rest`` (written there too).
    secret: Mapped[str] = mapped_column(Text)
    # After a rotation the old secret keeps signing beside the new one until it expires (Standard Webhooks
    # allows several signatures), so receivers can switch without losing deliveries. Encrypted like ``secret``.
    previous_secret: Mapped[str | None] = mapped_column(Text, default=None)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookEvent(Base):
    """One event for one webhook. Outlives its webhook (no FK) so that the log can say it was deleted."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_account_created", "account_id", "created_at"),
        Index("ix_webhook_events_webhook_created", "webhook_id", "created_at"),
        Index("ix_webhook_events_created", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # the payload's event_id and webhook-id header
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    webhook_id: Mapped[uuid.UUID]
    webhook_name: Mapped[str] = mapped_column(String(50))  # as it was when the event was created
    event_type: Mapped[str] = mapped_column(String(16))
    # The exact JSON bytes sent, so every attempt (and the log) carries the identical body.
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), default=PENDING)
    is_test: Mapped[bool] = mapped_column(default=False)
    attempts_made: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("event_id", "number"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    number: Mapped[int]  # 0 = first attempt, 1..7 = retries
    url: Mapped[str] = mapped_column(Text)  # the URL used (configs may change between attempts)
    started_at: Mapped[datetime]
    duration_ms: Mapped[int]
    outcome: Mapped[str] = mapped_column(String(20))
    status_code: Mapped[int | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class RetryRun(Base):
    """One "retry all failed events since ..." from the console: which events it sent again, to show progress."""

    __tablename__ = "webhook_retry_runs"
    __table_args__ = (Index("ix_webhook_retry_runs_account_created", "account_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    since: Mapped[datetime]
    event_ids: Mapped[list[Any]]
    created_by_email: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime]


class OutboxMail(Base):
    """Every notice e-mail: sent by SMTP when configured, otherwise kept here for the console to show."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_account_created", "account_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    recipients: Mapped[list[Any]]
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    # Files sent with the mail: [{"filename", "content_type", "content"}] (text only, e.g. the weekly report CSV).
    attachments: Mapped[list[Any] | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | sent | outbox
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
