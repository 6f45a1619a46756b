"""numbers: organisation tree, feature sets, business numbers, list/delist jobs

Revision ID: 0005_numbers
Revises: 0001_foundation
Create Date: 2026-11-22 10:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callerid.db.base

revision: str = "0005_numbers"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("numbers",)
depends_on: str | Sequence[str] | None = ("0002_labels",)


def upgrade() -> None:
    op.create_table(
        "calling_operations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calling_operations")),
        sa.UniqueConstraint("name", name=op.f("uq_calling_operations_name")),
    )
    op.create_table(
        "call_reasons",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("text", sa.String(length=100), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_call_reasons_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_reasons")),
    )
    with op.batch_alter_table("call_reasons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_call_reasons_account_id"), ["account_id"], unique=False)

    op.create_table(
        "departments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_departments_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_departments")),
    )
    with op.batch_alter_table("departments", schema=None) as batch_op:
        batch_op.create_index("ix_departments_account_created", ["account_id", "created_at"], unique=False)

    op.create_table(
        "operations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("department_id", sa.Uuid(), nullable=False),
        sa.Column("calling_operation_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_operations_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["calling_operation_id"],
            ["calling_operations.id"],
            name=op.f("fk_operations_calling_operation_id_calling_operations"),
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_operations_department_id_departments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
    )
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operations_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_operations_department_id"), ["department_id"], unique=False)

    op.create_table(
        "processes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("operation_id", sa.Uuid(), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_processes_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["operations.id"], name=op.f("fk_processes_operation_id_operations"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["processes.id"], name=op.f("fk_processes_parent_id_processes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processes")),
    )
    with op.batch_alter_table("processes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_processes_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_processes_operation_id"), ["operation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_processes_parent_id"), ["parent_id"], unique=False)

    op.create_table(
        "feature_sets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("process_id", sa.Uuid(), nullable=False),
        sa.Column("root_process_id", sa.Uuid(), nullable=False),
        sa.Column("operation_id", sa.Uuid(), nullable=False),
        sa.Column("department_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("label_id", sa.Uuid(), nullable=False),
        sa.Column("call_reason_id", sa.Uuid(), nullable=True),
        sa.Column("call_me_back", sa.Boolean(), nullable=False),
        sa.Column("survey", sa.Boolean(), nullable=False),
        sa.Column("created_by_email", sa.String(length=320), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_feature_sets_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["call_reason_id"], ["call_reasons.id"], name=op.f("fk_feature_sets_call_reason_id_call_reasons")
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_feature_sets_department_id_departments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["label_id"], ["labels.id"], name=op.f("fk_feature_sets_label_id_labels")),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name=op.f("fk_feature_sets_operation_id_operations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["process_id"], ["processes.id"], name=op.f("fk_feature_sets_process_id_processes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["root_process_id"],
            ["processes.id"],
            name=op.f("fk_feature_sets_root_process_id_processes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_sets")),
    )
    with op.batch_alter_table("feature_sets", schema=None) as batch_op:
        batch_op.create_index("ix_feature_sets_account_created", ["account_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_feature_sets_department_id"), ["department_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_feature_sets_label_id"), ["label_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_feature_sets_operation_id"), ["operation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_feature_sets_process_id"), ["process_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_feature_sets_root_process_id"), ["root_process_id"], unique=False)

    op.create_table(
        "number_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("feature_set_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("numbers", sa.JSON(), nullable=False),
        sa.Column("created_by_email", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_number_jobs_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["feature_set_id"],
            ["feature_sets.id"],
            name=op.f("fk_number_jobs_feature_set_id_feature_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_number_jobs")),
    )
    with op.batch_alter_table("number_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_number_jobs_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_number_jobs_feature_set_id"), ["feature_set_id"], unique=False)

    op.create_table(
        "business_numbers",
        sa.Column("phone_number", sa.String(length=15), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("feature_set_id", sa.Uuid(), nullable=True),
        sa.Column("phone_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failure_reason", sa.String(length=200), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("held_action", sa.String(length=8), nullable=True),
        sa.Column("held_feature_set_id", sa.Uuid(), nullable=True),
        sa.Column("held_by_email", sa.String(length=320), nullable=True),
        sa.Column("created_by_email", sa.String(length=320), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_business_numbers_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["feature_set_id"],
            ["feature_sets.id"],
            name=op.f("fk_business_numbers_feature_set_id_feature_sets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["held_feature_set_id"],
            ["feature_sets.id"],
            name=op.f("fk_business_numbers_held_feature_set_id_feature_sets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["number_jobs.id"], name=op.f("fk_business_numbers_job_id_number_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("phone_number", name=op.f("pk_business_numbers")),
    )
    with op.batch_alter_table("business_numbers", schema=None) as batch_op:
        batch_op.create_index("ix_business_numbers_account_created", ["account_id", "created_at"], unique=False)
        batch_op.create_index("ix_business_numbers_account_status", ["account_id", "status"], unique=False)
        batch_op.create_index("ix_business_numbers_feature_set_status", ["feature_set_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_business_numbers_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("business_numbers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_business_numbers_job_id"))
        batch_op.drop_index("ix_business_numbers_feature_set_status")
        batch_op.drop_index("ix_business_numbers_account_status")
        batch_op.drop_index("ix_business_numbers_account_created")

    op.drop_table("business_numbers")
    with op.batch_alter_table("number_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_number_jobs_feature_set_id"))
        batch_op.drop_index(batch_op.f("ix_number_jobs_account_id"))

    op.drop_table("number_jobs")
    with op.batch_alter_table("feature_sets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feature_sets_root_process_id"))
        batch_op.drop_index(batch_op.f("ix_feature_sets_process_id"))
        batch_op.drop_index(batch_op.f("ix_feature_sets_operation_id"))
        batch_op.drop_index(batch_op.f("ix_feature_sets_label_id"))
        batch_op.drop_index(batch_op.f("ix_feature_sets_department_id"))
        batch_op.drop_index("ix_feature_sets_account_created")

    op.drop_table("feature_sets")
    with op.batch_alter_table("processes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_processes_parent_id"))
        batch_op.drop_index(batch_op.f("ix_processes_operation_id"))
        batch_op.drop_index(batch_op.f("ix_processes_account_id"))

    op.drop_table("processes")
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operations_department_id"))
        batch_op.drop_index(batch_op.f("ix_operations_account_id"))

    op.drop_table("operations")
    with op.batch_alter_table("departments", schema=None) as batch_op:
        batch_op.drop_index("ix_departments_account_created")

    op.drop_table("departments")
    with op.batch_alter_table("call_reasons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_reasons_account_id"))

    op.drop_table("call_reasons")
    op.drop_table("calling_operations")
