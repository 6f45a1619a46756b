"""setup: the first-run setup's progress per account (steps done or skipped, the ids they created, a draft)

Revision ID: 0020_setup_progress
Revises: 0019_idempotency_keys
Create Date: 2027-03-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callerid.db.base

revision: str = "0020_setup_progress"
down_revision: str | Sequence[str] | None = "0019_idempotency_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "setup_progress",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("dismissed_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated_by_email", sa.String(length=320), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_setup_progress_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_setup_progress")),
    )


def downgrade() -> None:
    op.drop_table("setup_progress")
