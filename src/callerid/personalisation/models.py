"""Tables of the call-personalisation domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callerid.db import Base

# Record states. A record is "usable" (shown by the caller-ID lookup) when it passed validation:
# then caller/receiver/label columns are set; records that failed validation keep what was sent in
# ``sent`` instead and leave those columns NULL.
PENDING = "pending"
SUCCESS = "success"
ERROR = "error"
INVALID_INPUT = "invalid_input"


class CallBatch(Base):
    """One accepted B1/B2 request (or R1 record). Its records carry the state; the batch only groups them."""

    __tablename__ = "call_batches"
    # Retention: batches whose records are all gone, oldest first (callerid.personalisation.jobs).
    __table_args__ = (Index("ix_call_batches_created_at", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(2))  # "v1" | "v2"
    record_count: Mapped[int]
    created_at: Mapped[datetime]


class CallRecord(Base):
    __tablename__ = "call_records"
    __table_args__ = (
        # The caller-ID lookup: newest usable record of a pair (invalid records have NULL caller), ordered by the
        # index alone (created_at, then position within a batch).
        Index("ix_call_records_pair_newest", "caller", "receiver", "created_at", "position"),
        # Batch status and batch processing read a batch's records in submission order.
        Index("ix_call_records_batch_position", "batch_id", "position"),
        # Retention: records whose window ended, oldest first; invalid records (no ends_at) by arrival.
        Index("ix_call_records_ends_created", "ends_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("call_batches.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)  # index in the request's call_records
    version: Mapped[str] = mapped_column(String(2))  # wire version of the request that sent it
    caller: Mapped[str | None] = mapped_column(String(15))
    receiver: Mapped[str | None] = mapped_column(String(15))
    # Labels used by records are never hard-deleted (SPEC §10.2), so this key holds.
    label_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("labels.id"))
    label_name: Mapped[str | None] = mapped_column(String(40))
    call_reason: Mapped[str | None] = mapped_column(String(100))
    starts_at: Mapped[int | None] = mapped_column(BigInteger)  # epoch ms
    ends_at: Mapped[int | None] = mapped_column(BigInteger)  # epoch ms
    status: Mapped[str] = mapped_column(String(16))  # pending | success | error
    reason: Mapped[str | None] = mapped_column(String(32))  # invalid_input or a delivery outcome (SPEC §8)
    field: Mapped[str | None] = mapped_column(String(32))  # v2 name of the failing field (invalid_input)
    message: Mapped[str | None] = mapped_column(Text)  # without the "Request body is invalid: " prefix
    # Only for records that failed validation: the seven fields as sent (valid ones normalised), by v1 name.
    sent: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))  # None -> SQL NULL, not 'null'
    created_at: Mapped[datetime]
