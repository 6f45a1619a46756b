"""delivery: phones prove their number (pending SMS-code registrations, app credentials, development SMS outbox)

Revision ID: 0013_device_verification
Revises: 0004_delivery
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callerid.db.base

revision: str = "0013_device_verification"
down_revision: str | Sequence[str] | None = "0004_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_registrations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("phone_number", sa.String(length=20), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("app_version", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("code_sent_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("codes_sent", sa.Integer(), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_registrations")),
    )
    with op.batch_alter_table("device_registrations", schema=None) as batch_op:
        batch_op.create_index("ix_device_registrations_expires_at", ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_device_registrations_phone_number"), ["phone_number"], unique=False)

    op.create_table(
        "app_credentials",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_credentials")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_app_credentials_token_hash")),
    )

    op.create_table(
        "sms_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("phone_number", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("registration_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_outbox")),
    )
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_sms_outbox_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_outbox_created_at")
    op.drop_table("sms_outbox")
    op.drop_table("app_credentials")
    with op.batch_alter_table("device_registrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_registrations_phone_number"))
        batch_op.drop_index("ix_device_registrations_expires_at")
    op.drop_table("device_registrations")
