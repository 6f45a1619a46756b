"""personalisation: the caller-ID lookup's index covers its whole ORDER BY

The lookup orders a pair's records by (created_at, position) newest first; with an index on (caller, receiver,
created_at) SQLite sorted the position part in a temporary B-tree on every lookup (11 -> 7 µs per query).

Revision ID: 0008_records_pair_index
Revises: 0003_personalisation
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_records_pair_index"
down_revision: str | Sequence[str] | None = "0003_personalisation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_call_records_pair_newest", "call_records", ["caller", "receiver", "created_at", "position"], unique=False
    )
    op.drop_index("ix_call_records_pair_created", table_name="call_records")


def downgrade() -> None:
    op.create_index("ix_call_records_pair_created", "call_records", ["caller", "receiver", "created_at"], unique=False)
    op.drop_index("ix_call_records_pair_newest", table_name="call_records")
