"""Tables of the number-management domain: the organisation tree, feature sets, business numbers, list jobs.

The tree never moves (nodes are created under a parent and stay there), so a feature set keeps copies of
the ids above it (department, operation, top-level process); the FS/NN filters are then plain column
predicates instead of recursive joins.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from callerid.db import Base

# Feature-set status (SPEC §5.6).
DRAFT = "draft"
PUBLISHED = "published"
ARCHIVED = "archived"
FEATURE_SET_STATUSES = (DRAFT, PUBLISHED, ARCHIVED)

# Business-number states (SPEC §7.5).
PENDING = "pending"
LISTED = "listed"
FAILED = "failed"
DELISTING = "delisting"
DELISTED = "delisted"
# States in which the number is held by its account (others cannot list it) and counts against the caps.
HELD_STATES = (PENDING, LISTED, DELISTING)

VERIFIED = "verified"

# NumberJob actions and states.
LIST = "list"
DELIST = "delist"
JOB_PROCESSING = "processing"
JOB_DONE = "done"


class Department(Base):
    __tablename__ = "departments"
    __table_args__ = (Index("ix_departments_account_created", "account_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    # Set on the node and its whole subtree at once (numbers.organisation.archive_node); None while in use.
    archived_at: Mapped[datetime | None] = mapped_column(default=None)


class CallingOperation(Base):
    """The operator's catalogue of calling operations (Delivery, Sales, Collections, ...), shared by accounts."""

    __tablename__ = "calling_operations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime]
    # A retired entry is not offered for new operations; the operations bound to it keep it.
    retired_at: Mapped[datetime | None] = mapped_column(default=None)


class Operation(Base):
    __tablename__ = "operations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"), index=True)
    department_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("departments.id", ondelete="CASCADE"), index=True)
    calling_operation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("calling_operations.id"))
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    archived_at: Mapped[datetime | None] = mapped_column(default=None)


class Process(Base):
    """A process, or a sub-process when ``parent_id`` is set (one level deep)."""

    __tablename__ = "processes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"), index=True)
    operation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("operations.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("processes.id", ondelete="CASCADE"), default=None, index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    archived_at: Mapped[datetime | None] = mapped_column(default=None)


class CallReason(Base):
    """A static call reason of a feature set; the wire shows only its id (``call_reason_id``)."""

    __tablename__ = "call_reasons"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class FeatureSet(Base):
    __tablename__ = "feature_sets"
    __table_args__ = (Index("ix_feature_sets_account_created", "account_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    # The node the set hangs on (process or sub-process) and copies of the ids above it (tree never moves).
    process_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("processes.id", ondelete="CASCADE"), index=True)
    root_process_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("processes.id", ondelete="CASCADE"), index=True)
    operation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("operations.id", ondelete="CASCADE"), index=True)
    department_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("departments.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    label_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("labels.id"), index=True)
    call_reason_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("call_reasons.id"), default=None)
    call_me_back: Mapped[bool] = mapped_column(default=False)
    survey: Mapped[bool] = mapped_column(default=False)
    # Secure branding (issue 13, off by default): the identity shows only for calls pre-announced by a call record.
    secure_branding: Mapped[bool] = mapped_column(default=False)
    created_by_email: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The status the set had when its node was archived (which archives the set); restoring the node puts it back.
    status_before_archive: Mapped[str | None] = mapped_column(String(16), default=None)


class NumberJob(Base):
    """One accepted list or delist request; its numbers point at it (``BusinessNumber.job_id``) until it is done."""

    __tablename__ = "number_jobs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"), index=True)
    feature_set_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("feature_sets.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(8))
    numbers: Mapped[list[Any]]
    created_by_email: Mapped[str] = mapped_column(String(320), default="")
    status: Mapped[str] = mapped_column(String(16), default=JOB_PROCESSING)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(default=None, index=True)  # retention, oldest first


class BusinessNumber(Base):
    """A number's state. One row per number platform-wide: a number belongs to at most one account (SPEC §7.3).

    Rows of delisted or failed numbers stay (they remember the last account for the ``delisted_numbers``
    bucket) and are taken over when the number is listed again.
    """

    __tablename__ = "business_numbers"
    __table_args__ = (
        Index("ix_business_numbers_account_status", "account_id", "status"),
        Index("ix_business_numbers_feature_set_status", "feature_set_id", "status"),
        Index("ix_business_numbers_account_created", "account_id", "created_at"),
    )

    phone_number: Mapped[str] = mapped_column(String(15), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    # None for legacy numbers listed outside any feature set (the ``migrated_numbers`` bucket).
    feature_set_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("feature_sets.id", ondelete="SET NULL"), default=None
    )
    phone_type: Mapped[str] = mapped_column(String(16), default=VERIFIED)
    status: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    # The list/delist job in progress for the number, if any (SPEC §7.4 bucket 3).
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("number_jobs.id", ondelete="SET NULL"), default=None, index=True
    )
    # A request that arrived while the job was in progress; re-run when it finishes (SPEC §7.3 ordering).
    held_action: Mapped[str | None] = mapped_column(String(8), default=None)
    held_feature_set_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("feature_sets.id", ondelete="SET NULL"), default=None
    )
    held_by_email: Mapped[str | None] = mapped_column(String(320), default=None)
    created_by_email: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
