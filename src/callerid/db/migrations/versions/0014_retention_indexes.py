"""retention: indexes that let each purge chunk read only the rows it deletes; devices remember when last seen

Each purge statement (callerid.jobs.purge) selects up to a chunk of expired rows by the leading column of one of
these indexes, oldest first, so that it never walks a table while holding the write lock. On the personalisation
branch (call records are the bulk of it); it depends on the delivery, engagement and numbers revisions whose tables
it also touches.

Revision ID: 0014_retention_indexes
Revises: 0008_records_pair_index
Create Date: 2026-12-12 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callerid.db.base

revision: str = "0014_retention_indexes"
down_revision: str | Sequence[str] | None = "0008_records_pair_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = ("0013_device_verification", "0007_engagement")  # engagement needs numbers


def upgrade() -> None:
    op.create_index("ix_call_records_ends_created", "call_records", ["ends_at", "created_at"], unique=False)
    op.create_index("ix_call_batches_created_at", "call_batches", ["created_at"], unique=False)
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_devices_last_seen_created", ["last_seen_at", "created_at"], unique=False)
    op.create_index("ix_cmb_requests_requested_at", "cmb_requests", ["requested_at"], unique=False)
    op.create_index("ix_survey_responses_requested_at", "survey_responses", ["requested_at"], unique=False)
    op.create_index(op.f("ix_number_jobs_finished_at"), "number_jobs", ["finished_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_number_jobs_finished_at"), table_name="number_jobs")
    op.drop_index("ix_survey_responses_requested_at", table_name="survey_responses")
    op.drop_index("ix_cmb_requests_requested_at", table_name="cmb_requests")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index("ix_devices_last_seen_created")
        batch_op.drop_column("last_seen_at")
    op.drop_index("ix_call_batches_created_at", table_name="call_batches")
    op.drop_index("ix_call_records_ends_created", table_name="call_records")
