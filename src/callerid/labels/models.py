"""Tables of the labels domain."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
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


class LabelCategory(Base):
    """The operator's catalogue of label categories (SPEC §10.2): integer ids, as the wire shows them."""

    __tablename__ = "label_categories"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class LabelSubCategory(Base):
    """A sub-category belongs to exactly one category; ids are unique across the whole catalogue."""

    __tablename__ = "label_sub_categories"
    __table_args__ = (UniqueConstraint("category_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    category_id: Mapped[int] = mapped_column(ForeignKey("label_categories.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
