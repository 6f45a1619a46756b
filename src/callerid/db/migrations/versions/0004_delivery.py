"""delivery: registered devices

Revision ID: 0004_delivery
Revises: 0001_foundation
Create Date: 2026-11-22 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callerid.db.base

revision: str = "0004_delivery"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("delivery",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("phone_number", sa.String(length=20), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("app_version", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("phone_number", name=op.f("uq_devices_phone_number")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_devices_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("devices")
