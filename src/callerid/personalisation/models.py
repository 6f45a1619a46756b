"""Tables of the call-personalisation domain, laid out for the traffic (issue 15: 300,000 records a minute).

A record is what most of the database holds, so it keeps only numbers: 42 bytes of row on SQLite, 85 on PostgreSQL,
and two index entries; 92 and 170 bytes a record in all, with its share of batches (bench/storage.py, 1.5 million
B2 records; 528 and 717 bytes before). What a whole request shares is written once, on its batch: the public batch
id, account, wire version, arrival time and, once delivered, its outcomes; and each distinct (label, name, reason)
the request's records show, in ``call_batch_texts``.

- **Groups.** Every insert is a group of records: a B1/B2 request (R1: a one-record batch), or the R2 records of
  one group commit (no public batch: ``call_batches.account_id`` NULL). A group gets an integer ``key``; its
  records' ids are ``key * GROUP_SPAN + position``. So a record's id says its batch and position (no batch column,
  no (batch, position) index: a batch's records are one primary-key range, in submission order), and ids grow in
  arrival order, which is what "the newest record of a pair" means (SPEC §6.1).
- **Public record ids.** S1/S2 and push messages show a UUID per record. Stored, it would be a fifth of a row and
  another index; it is derived instead, from the batch's UUID and the position (``record_uuid``). Records migrated
  from the layout before (0016) keep the UUID they were shown with (``legacy_id``; NULL for every record since).
- **Numbers.** caller/receiver as integers (E.164 digits, never a leading 0: ``callerid.phone``); status and reason
  as a small code (``state``); times as epoch ms.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    literal_column,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import ColumnElement

from callerid.db import Base

# Wire statuses and the one reason that is not a delivery outcome (SPEC §5.4).
PENDING = "pending"
SUCCESS = "success"
ERROR = "error"
INVALID_INPUT = "invalid_input"

# Record ids: ``group key * GROUP_SPAN + position``. 2**16 positions per group: batch_max_records may not exceed it.
GROUP_SPAN = 1 << 16

# ``call_records.state``. PENDING_STATE: valid, waiting for its batch's delivery; once the batch is delivered the
# record's outcome is in ``call_batches.outcomes`` (a record row is never updated). An R2 record is stored with its
# outcome. INVALID_STATE: refused by validation (or a valid record of a rejected v1 batch), ``problem`` says why.
PENDING_STATE = 0
DELIVERED_STATE = 1
INVALID_STATE = 2
# Delivery outcomes other than delivered (SPEC §8), by reason.
OUTCOME_STATES = {"not_app_user": 3, "os_not_supported": 4, "app_version_not_supported": 5, "failed_to_push": 6}
REASON_OF_STATE = {state: reason for reason, state in OUTCOME_STATES.items()}

_ID_TYPE = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY: the rowid itself on SQLite


class CallBatch(Base):
    """A group of records stored together: one B1/B2 request (R1: of one record), or one R2 group commit."""

    __tablename__ = "call_batches"
    # Retention: groups whose records are all gone, oldest first (callerid.personalisation.jobs).
    __table_args__ = (Index("ix_call_batches_created_at", "created_at"),)

    key: Mapped[int] = mapped_column(_ID_TYPE, primary_key=True, autoincrement=True)
    # The batchId of B1/B2/R1 (S1/S2 find a batch by it); for an R2 group an internal id, never shown.
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    # None for an R2 group (its records may come from several accounts, and no status query reads them).
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(2))  # "v1" | "v2"
    record_count: Mapped[int]
    created_at: Mapped[datetime]
    # Set once, when the batch is delivered: ``[[reason or None, message or None, [start, stop, ...]], ...]``, the
    # records' outcomes by position ranges (a batch mostly has one or two). NULL: its valid records are pending.
    outcomes: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True), default=None)


class CallBatchText(Base):
    """One distinct (label, label name, call reason) of a group's records, numbered within the group: a batch of 500
    records mostly shows one or a few, stored once instead of 500 times."""

    __tablename__ = "call_batch_texts"
    __table_args__ = {"sqlite_with_rowid": False}  # small rows looked up by their key: the key is the table

    batch_key: Mapped[int] = mapped_column(
        _ID_TYPE, ForeignKey("call_batches.key", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # Labels used by records are never hard-deleted (SPEC §10.2), so this key holds.
    label_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("labels.id"))
    label_name: Mapped[str] = mapped_column(String(40))  # as resolved (sent, or the label's name)
    call_reason: Mapped[str | None] = mapped_column(String(100))


class CallRecord(Base):
    __tablename__ = "call_records"
    __table_args__ = (
        # The caller-ID lookup: the pair's records newest first (invalid records have NULL caller and never match).
        # On PostgreSQL the id must be in the index to order by it; SQLite stores it a second time (its index
        # entries end in the rowid anyway): 5 bytes, for one definition of the index on both databases.
        Index("ix_call_records_pair", "caller", "receiver", "id"),
        # Retention: records whose window ended (invalid ones: since they arrived), oldest first.
        Index("ix_call_records_ends_at", "ends_at"),
    )

    # Columns in this order: PostgreSQL aligns each to its size, so the 8-byte ones go first.
    id: Mapped[int] = mapped_column(_ID_TYPE, primary_key=True, autoincrement=False)  # group key * GROUP_SPAN + pos
    caller: Mapped[int | None] = mapped_column(BigInteger)  # E.164 digits as a number; NULL: invalid record
    receiver: Mapped[int | None] = mapped_column(BigInteger)
    starts_at: Mapped[int | None] = mapped_column(BigInteger)  # epoch ms
    # Epoch ms: the end of the window; for an invalid record (no window) its arrival, from which it is retained.
    ends_at: Mapped[int] = mapped_column(BigInteger)
    display: Mapped[int | None] = mapped_column(Integer)  # call_batch_texts.number within its group
    state: Mapped[int] = mapped_column(SmallInteger)  # *_STATE above
    # Invalid records only: ``{"field": v2 name, "message": without prefix, "sent": the seven fields by v1 name}``.
    problem: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    legacy_id: Mapped[uuid.UUID | None] = mapped_column()  # the UUID of a record stored before 0016


def group_key_of(record_id: ColumnElement[int]) -> ColumnElement[int]:
    """The group key of a record id, in SQL (integer division on both databases)."""
    return record_id // literal_column(str(GROUP_SPAN), BigInteger)


def first_id(group_key: int) -> int:
    return group_key * GROUP_SPAN


def record_uuid(batch_id: uuid.UUID, position: int) -> str:
    """The public id of a batch's record: ``uuid5(batch_id, str(position))`` (RFC 9562 name-based: the same record
    always gets the same id, and no two records share one while batch ids are unique). Text, as it is shown."""
    digest = bytearray(hashlib.sha1(batch_id.bytes + str(position).encode(), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
