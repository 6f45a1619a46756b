"""numbers: archived departments, operations and processes; retired calling operations; a feature set's status
kept while its node is archived; the calling-operation catalogue seeded with the entries the spec names

An archived node is hidden and takes nothing new; archiving sets ``archived_at`` on the node and its whole subtree at
once and archives their feature sets, remembering each one's status in ``status_before_archive`` (restoring puts it
back). A retired catalogue entry is no longer offered for new operations; the operations bound to it keep it.

Revision ID: 0017_organisation_archive
Revises: 0016_compact_call_records
Create Date: 2027-02-01 09:00:00
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import callerid.db.base

revision: str = "0017_organisation_archive"
down_revision: str | Sequence[str] | None = "0016_compact_call_records"
branch_labels: str | Sequence[str] | None = None
# The tables it changes are the numbers branch's, which must have run first.
depends_on: str | Sequence[str] | None = ("0005_numbers",)

# SPEC §1.3 names these; an operator retires or renames them with `callerid catalogue calling-operations`.
DEFAULT_CALLING_OPERATIONS = ("Delivery", "Sales", "Collections")


def _seed_catalogue() -> None:
    bind = op.get_bind()
    table = sa.table(
        "calling_operations",
        sa.column("id", sa.Uuid()),
        sa.column("name", sa.String()),
        sa.column("created_at", callerid.db.base.UtcDateTime()),
    )
    existing = {name.lower() for name in bind.execute(sa.select(table.c.name)).scalars()}
    now = datetime.now(UTC)
    missing = [name for name in DEFAULT_CALLING_OPERATIONS if name.lower() not in existing]
    if missing:
        op.bulk_insert(table, [{"id": uuid.uuid4(), "name": name, "created_at": now} for name in missing])


def upgrade() -> None:
    for table in ("departments", "operations", "processes"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("archived_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("calling_operations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retired_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("feature_sets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_before_archive", sa.String(length=16), nullable=True))
    _seed_catalogue()


def downgrade() -> None:
    """The catalogue's entries stay (operations may be bound to them); archived nodes come back as in use, and
    their feature sets stay archived."""
    with op.batch_alter_table("feature_sets", schema=None) as batch_op:
        batch_op.drop_column("status_before_archive")
    with op.batch_alter_table("calling_operations", schema=None) as batch_op:
        batch_op.drop_column("retired_at")
    for table in ("processes", "operations", "departments"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("archived_at")
