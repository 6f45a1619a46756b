"""Tables of the analytics domain (issue 13): raw call signals from phones, blocked attempts under secure branding,
and the per-account per-day figures that outlive the raw per-call data.

- ``daily_figures``: one row per (account, day in the account's timezone, label, feature set, business number),
  one column per counter. Counters only ever grow by ``tally`` upserts written in the same transaction as the raw
  fact they count (a record group, a delivered batch, a signal, a blocked attempt, a Call Me Back request, a survey
  response, a webhook delivery's last attempt; an R2 group writes ``figure_deltas`` rows instead, which one
  transaction later moves in), so they are exact, survive restarts, hold with several processes and stay when the
  raw data is purged. They hold no receiver's number: a business number is the caller's.
  A dimension that does not apply is the zero UUID / 0 (a primary key has no NULLs), e.g. webhook deliveries are
  counted on the account's row only.
- ``daily_webhook_delays``: webhook delivery delays as a histogram per (account, day) (``tally.DELAY_BUCKETS_MS``),
  from which the p95 is read; a percentile is not a sum, so it is not a counter column.
- ``call_signals``: what a phone reported about a call it looked up; the event id is unique per device.
- ``blocked_attempts``: lookups refused by secure branding (a possible spoofed call); no receiver stored.
- ``figure_deltas``: the record counts of R2 group commits, not yet added to ``daily_figures`` (``analytics.deltas``):
  a plain insert into a table without indexes costs R2 a fraction of an upsert; readers fold them in first.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Column, Date, ForeignKey, Index, Integer, SmallInteger, String, Table, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from callerid.db import Base

NO_ID = uuid.UUID(int=0)  # "no label / no feature set" in a figures key
NO_NUMBER = 0  # "no business number" in a figures key

# The counter columns of ``daily_figures``, in wire order. Record outcomes by SPEC §8 reason; signals by kind.
RECORD_COUNTERS = (
    "records_delivered",
    "records_not_app_user",
    "records_os_not_supported",
    "records_app_version_not_supported",
    "records_failed_to_push",
)
COUNTERS = (
    *RECORD_COUNTERS,
    "shown",
    "answered",
    "missed",
    "rejected",
    "ended",
    "talk_seconds",
    "blocked",
    "call_me_back_requests",
    "survey_responses",
    "ratings",
    "rating_sum",
    "webhooks_succeeded",
    "webhooks_failed",
)


class DailyFigures(Base):
    __tablename__ = "daily_figures"
    __table_args__ = {"sqlite_with_rowid": False}  # read by key ranges: the key is the table

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("client_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(primary_key=True)
    label_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    feature_set_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    business_number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    records_delivered: Mapped[int] = mapped_column(BigInteger, default=0)
    records_not_app_user: Mapped[int] = mapped_column(BigInteger, default=0)
    records_os_not_supported: Mapped[int] = mapped_column(BigInteger, default=0)
    records_app_version_not_supported: Mapped[int] = mapped_column(BigInteger, default=0)
    records_failed_to_push: Mapped[int] = mapped_column(BigInteger, default=0)
    shown: Mapped[int] = mapped_column(BigInteger, default=0)
    answered: Mapped[int] = mapped_column(BigInteger, default=0)
    missed: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    ended: Mapped[int] = mapped_column(BigInteger, default=0)
    talk_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    blocked: Mapped[int] = mapped_column(BigInteger, default=0)
    call_me_back_requests: Mapped[int] = mapped_column(BigInteger, default=0)
    survey_responses: Mapped[int] = mapped_column(BigInteger, default=0)
    ratings: Mapped[int] = mapped_column(BigInteger, default=0)  # responses that carry a rating
    rating_sum: Mapped[int] = mapped_column(BigInteger, default=0)
    webhooks_succeeded: Mapped[int] = mapped_column(BigInteger, default=0)
    webhooks_failed: Mapped[int] = mapped_column(BigInteger, default=0)


class DailyWebhookDelays(Base):
    __tablename__ = "daily_webhook_delays"
    __table_args__ = {"sqlite_with_rowid": False}

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("client_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(primary_key=True)
    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class CallSignal(Base):
    __tablename__ = "call_signals"
    __table_args__ = (
        # Retention and the recount of a day: signals by account and time.
        Index("ix_call_signals_account_occurred", "account_id", "occurred_at"),
        Index("ix_call_signals_received_at", "received_at"),
    )

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # displayed | answered | missed | rejected | ended
    business_number: Mapped[int] = mapped_column(BigInteger)  # the caller, E.164 digits
    label_id: Mapped[uuid.UUID] = mapped_column()  # NO_ID when the identity shown had no label
    feature_set_id: Mapped[uuid.UUID] = mapped_column()  # NO_ID when the number was not listed
    record_id: Mapped[int | None] = mapped_column(BigInteger, default=None)  # the call record shown, if one
    duration_seconds: Mapped[int | None] = mapped_column(Integer, default=None)  # ended only
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]


class BlockedAttempt(Base):
    __tablename__ = "blocked_attempts"
    __table_args__ = (
        Index("ix_blocked_attempts_account_at", "account_id", "at"),
        # Retention (analytics.blocked): the purge's condition bounds ``at`` alone, so ``at`` leads an index.
        Index("ix_blocked_attempts_at", "at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    feature_set_id: Mapped[uuid.UUID] = mapped_column()
    label_id: Mapped[uuid.UUID] = mapped_column()
    business_number: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime]


# No key, no index, no foreign key: each would cost R2's insert (a foreign key is a lookup per row on PostgreSQL).
# Rows of an account deleted before they were folded are dropped by the fold. ``outcome``: the index of the record
# counter in RECORD_COUNTERS.
FIGURE_DELTAS = Table(
    "figure_deltas",
    Base.metadata,
    Column("account_id", Uuid(), nullable=False),
    Column("day", Date(), nullable=False),
    Column("label_id", Uuid(), nullable=False),
    Column("business_number", BigInteger(), nullable=False),
    Column("outcome", SmallInteger(), nullable=False),
    Column("amount", Integer(), nullable=False),
)
