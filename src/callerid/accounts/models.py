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
    # Every member must confirm a new browser with an e-mailed code (console settings, admin only).
    require_two_factor: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]


# Member states: an invited member has no password until the invitation is accepted; a revoked one keeps
# their row (history, ``created_by_email`` references) but cannot sign in.
MEMBER_ACTIVE = "active"
MEMBER_INVITED = "invited"
MEMBER_REVOKED = "revoked"


class Member(Base):
    """A console user of an account. The first one is the admin created with the account."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("account_id", "email"), Index("ix_members_email", "email"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(32), default="admin")
    # Owners are bound to one node of the account's tree (department, operation or process); admins to none.
    scope_kind: Mapped[str | None] = mapped_column(String(16), default=None)
    scope_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    # "" until an invited member sets a password (an empty hash never verifies).
    password_hash: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=MEMBER_ACTIVE)
    # The member asked for an e-mailed code on every new browser (the account may require it of everyone).
    two_factor: Mapped[bool] = mapped_column(default=False)
    # Admins only: whether webhook-failure notices go to this member (SPEC §9.6; console settings).
    failure_emails: Mapped[bool] = mapped_column(default=True)
    weekly_report: Mapped[bool] = mapped_column(default=False)  # the analytics summary by e-mail each week
    weekly_report_sent_at: Mapped[datetime | None] = mapped_column(default=None)
    invited_by_email: Mapped[str] = mapped_column(String(320), default="")
    last_sign_in_at: Mapped[datetime | None] = mapped_column(default=None)
    password_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]


class ConsoleSession(Base):
    """A signed-in browser, stored server-side so that it can be ended at once (sign-out, revocation, new password).

    The cookie holds a random token; only its SHA-256 is stored. A session waiting for its e-mailed sign-in code
    (``pending_code``) grants nothing but the code form.
    """

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_member", "member_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    # Sent with every state-changing request (form field or htmx header); random per session.
    csrf_token: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    code_tries: Mapped[int] = mapped_column(default=0)
    code_sent_at: Mapped[datetime | None] = mapped_column(default=None)
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    client_address: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class MemberToken(Base):
    """A one-time link sent by e-mail: a password reset (1 hour) or an invitation (7 days). Stored as a hash."""

    __tablename__ = "member_tokens"
    __table_args__ = (Index("ix_member_tokens_member", "member_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class TrustedBrowser(Base):
    """A browser that confirmed a sign-in code; it is not asked again until it expires (long-lived cookie, hashed)."""

    __tablename__ = "trusted_browsers"
    __table_args__ = (Index("ix_trusted_browsers_member", "member_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


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
    # When a token was last minted with this key pair (the only use of a key pair; tokens carry the requests).
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


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
