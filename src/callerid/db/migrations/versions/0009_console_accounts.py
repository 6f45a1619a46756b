"""accounts: console members (roles with a scope, invitations, revocation, two-factor), sessions, one-time links

Revision ID: 0009_console_accounts
Revises: 0001_foundation
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callerid.db.base

revision: str = "0009_console_accounts"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("accounts",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("code_tries", sa.Integer(), nullable=False),
        sa.Column("code_sent_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_console_sessions_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_console_sessions_member_id_members"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_console_sessions")),
    )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_console_sessions_member", ["member_id"], unique=False)

    op.create_table(
        "member_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_tokens_member_id_members"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_member_tokens")),
    )
    with op.batch_alter_table("member_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_member_tokens_member", ["member_id"], unique=False)

    op.create_table(
        "trusted_browsers",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_trusted_browsers_member_id_members"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_trusted_browsers")),
    )
    with op.batch_alter_table("trusted_browsers", schema=None) as batch_op:
        batch_op.create_index("ix_trusted_browsers_member", ["member_id"], unique=False)

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True))

    # Existing rows get the model's defaults; the server defaults exist only for them.
    with op.batch_alter_table("client_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("require_two_factor", sa.Boolean(), nullable=False, server_default=sa.false()))

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("scope_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="active"))
        batch_op.add_column(sa.Column("two_factor", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("failure_emails", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("invited_by_email", sa.String(length=320), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("last_sign_in_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("password_changed_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("revoked_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_members_email", ["email"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index("ix_members_email")
        for column in (
            "revoked_at",
            "password_changed_at",
            "last_sign_in_at",
            "invited_by_email",
            "failure_emails",
            "two_factor",
            "status",
            "scope_id",
            "scope_kind",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("client_accounts", schema=None) as batch_op:
        batch_op.drop_column("require_two_factor")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
    op.drop_table("trusted_browsers")
    op.drop_table("member_tokens")
    op.drop_table("console_sessions")
