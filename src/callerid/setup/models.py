"""The one table of the first-run setup: per account, each step's state and the ids it created or chose."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from callerid.db import Base


class SetupProgress(Base):
    """Kept on the server (not in a cookie), so that another browser or another admin carries on where it stopped.

    ``state`` holds ``steps`` (step -> ``done`` / ``skipped``), ``ids`` (what each step created or chose), the
    feature-set ``draft`` of step 3 until step 4 gives it a label, and the listing ``jobs`` of step 5. The objects
    are never trusted from it: each one is looked up again in the account before it is used or shown."""

    __tablename__ = "setup_progress"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("client_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[dict[str, Any]]
    dismissed_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_by_email: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
