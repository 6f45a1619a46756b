"""Tables of the labels domain."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from callerid.db import Base

DYNAMIC = "dynamic"
STATIC = "static"


class Label(Base):
    __tablename__ = "labels"
    __table_args__ = (Index("ix_labels_account_type_created", "account_id", "label_type", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(40))
    label_type: Mapped[str] = mapped_column(String(16), default=DYNAMIC)
    # Path of the stored logo relative to the logo store; the absolute logo_url is built when rendering.
    logo_key: Mapped[str] = mapped_column(String(200))
    category: Mapped[int | None] = mapped_column(default=None)
    sub_category: Mapped[int | None] = mapped_column(default=None)
    created_by_email: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime]
