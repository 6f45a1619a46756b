"""The jobs table: one row per piece of due work."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callerid.db import Base

QUEUED = "queued"
RUNNING = "running"
DEAD = "dead"  # gave up after job_max_attempts; kept for the operator to inspect


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_due", "status", "due_at"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    due_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    # Set for jobs that must exist at most once (periodic work); NULLs do not collide.
    unique_key: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
