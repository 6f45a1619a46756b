"""personalisation: call batches and call records

Revision ID: 0003_personalisation
Revises: 0001_foundation
Create Date: 2026-11-22 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callerid.db.base

revision: str = "0003_personalisation"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("personalisation",)
depends_on: str | Sequence[str] | None = ("0002_labels",)


def upgrade() -> None:
    op.create_table(
        "call_batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.String(length=2), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_call_batches_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_batches")),
    )
    with op.batch_alter_table("call_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_call_batches_account_id"), ["account_id"], unique=False)

    op.create_table(
        "call_records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=2), nullable=False),
        sa.Column("caller", sa.String(length=15), nullable=True),
        sa.Column("receiver", sa.String(length=15), nullable=True),
        sa.Column("label_id", sa.Uuid(), nullable=True),
        sa.Column("label_name", sa.String(length=40), nullable=True),
        sa.Column("call_reason", sa.String(length=100), nullable=True),
        sa.Column("starts_at", sa.BigInteger(), nullable=True),
        sa.Column("ends_at", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("field", sa.String(length=32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("sent", sa.JSON(), nullable=True),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_call_records_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["call_batches.id"],
            name=op.f("fk_call_records_batch_id_call_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["label_id"], ["labels.id"], name=op.f("fk_call_records_label_id_labels")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_records")),
    )
    with op.batch_alter_table("call_records", schema=None) as batch_op:
        batch_op.create_index("ix_call_records_batch_position", ["batch_id", "position"], unique=False)
        batch_op.create_index("ix_call_records_pair_created", ["caller", "receiver", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("call_records", schema=None) as batch_op:
        batch_op.drop_index("ix_call_records_pair_created")
        batch_op.drop_index("ix_call_records_batch_position")
    op.drop_table("call_records")
    with op.batch_alter_table("call_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_batches_account_id"))
    op.drop_table("call_batches")
