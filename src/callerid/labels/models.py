"""Tables of the labels domain."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
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
    # The logo's content key (``label_logos.key``, the SHA-256 of its bytes); the absolute logo_url is built when
    # rendering. None: the label has no logo (its file was not found when logos moved into the database).
    logo_key: Mapped[str | None] = mapped_column(String(64), ForeignKey("label_logos.key"), index=True)
    # The file name its logo had under <data dir>/logos before logos moved into the database (labels made before
    # migration 0015): the old logo URLs handed out redirect to the new one.
    legacy_logo_key: Mapped[str | None] = mapped_column(String(200), index=True, default=None)
    category: Mapped[int | None] = mapped_column(default=None)
    sub_category: Mapped[int | None] = mapped_column(default=None)
    created_by_email: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime]


class LabelLogo(Base):
    """A logo, content-addressed: ``key`` is the SHA-256 of its bytes (hex), so one image uploaded for several labels
    is stored once and a changed logo gets a new key (and URL). The bytes are in ``data`` (the database store) or in
    the object store under ``object_name`` (``callerid.labels.logos``). Unreferenced ones are purged
    (``callerid.labels.jobs``)."""

    __tablename__ = "label_logos"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int]
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The object's name in the S3-compatible store (unique to this row: a logo purged and uploaded again gets a new
    # object, so deleting the old one never races with the new upload).
    object_name: Mapped[str | None] = mapped_column(String(300), default=None)
    created_at: Mapped[datetime] = mapped_column(index=True)


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
