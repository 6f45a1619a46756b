"""analytics: figure_deltas, R2's record counts until they are folded into daily_figures

Revision ID: 0022_figure_deltas
Revises: 0021_analytics
Create Date: 2026-12-04 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_figure_deltas"
down_revision: str | Sequence[str] | None = "0021_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "figure_deltas",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("label_id", sa.Uuid(), nullable=False),
        sa.Column("business_number", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.SmallInteger(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("figure_deltas")
