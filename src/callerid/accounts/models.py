"""Tables of the accounts domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from callerid.config import FEATURES
from callerid.db import Base


def _all_features() -> list[str]:
    return list(FEATURES)


class ClientAccount(Base):
    __tablename__ = "client_accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Kolkata")
    # Features the account is subscribed to (SPEC §3.4 #5); all four by default.
    features: Mapped[list[Any]] = mapped_column(default=_all_features)
    # Per-account number cap (SPEC §7.3); None means the operator's default setting.
    number_cap: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime]


class Member(Base):
    """A console user of an account. The first one is the admin created with the account."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("account_id", "email"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(32), default="admin")
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class ApiKey(Base):
    """One API-key entry. ``key_id`` and the secret change on regeneration; ``id`` does not."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    access: Mapped[dict[str, Any]]
    created_by_email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime]
    regenerated_at: Mapped[datetime | None] = mapped_column(default=None)


class AccessToken(Base):
    """A minted bearer token, stored as its SHA-256. Rows outlive their key so mint limits still count."""

    __tablename__ = "access_tokens"
    __table_args__ = (Index("ix_access_tokens_account_created", "account_id", "created_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked: Mapped[bool] = mapped_column(default=False)
