"""engagement: Call Me Back configs and requests, surveys and answers, export files

Revision ID: 0007_engagement
Revises: 0001_foundation
Create Date: 2026-11-22 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callerid.db.base

revision: str = "0007_engagement"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("engagement",)
# Only numbers (feature_sets FK). The webhooks tables are used at run time, not referenced by FK; naming both
# sibling branches here makes Alembic 1.x fail the upgrade from scratch (KeyError on the shared base revision).
depends_on: str | Sequence[str] | None = ("0005_numbers",)


def upgrade() -> None:
    op.create_table(
        "export_files",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_export_files_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_export_files")),
    )
    with op.batch_alter_table("export_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_export_files_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_export_files_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "cmb_configs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("feature_set_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("slot_picker", sa.Boolean(), nullable=False),
        sa.Column("windows", sa.JSON(), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_cmb_configs_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["feature_set_id"],
            ["feature_sets.id"],
            name=op.f("fk_cmb_configs_feature_set_id_feature_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cmb_configs")),
        sa.UniqueConstraint("feature_set_id", name=op.f("uq_cmb_configs_feature_set_id")),
    )
    with op.batch_alter_table("cmb_configs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cmb_configs_account_id"), ["account_id"], unique=False)

    op.create_table(
        "cmb_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("feature_set_id", sa.Uuid(), nullable=True),
        sa.Column("business_number", sa.String(length=15), nullable=False),
        sa.Column("feature_set_name", sa.String(length=100), nullable=False),
        sa.Column("client_number", sa.String(length=32), nullable=False),
        sa.Column("alternate_number", sa.String(length=15), nullable=False),
        sa.Column("requested_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("requested_date", sa.String(length=10), nullable=False),
        sa.Column("requested_slot", sa.String(length=10), nullable=False),
        sa.Column("preferred_from_time", callerid.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("preferred_to_time", callerid.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("is_interested", sa.Boolean(), nullable=False),
        sa.Column("cmb_config_name", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_cmb_requests_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["feature_set_id"],
            ["feature_sets.id"],
            name=op.f("fk_cmb_requests_feature_set_id_feature_sets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cmb_requests")),
    )
    with op.batch_alter_table("cmb_requests", schema=None) as batch_op:
        batch_op.create_index("ix_cmb_requests_account_requested", ["account_id", "requested_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_cmb_requests_feature_set_id"), ["feature_set_id"], unique=False)

    op.create_table(
        "surveys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("feature_set_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("questions", sa.JSON(), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_surveys_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["feature_set_id"],
            ["feature_sets.id"],
            name=op.f("fk_surveys_feature_set_id_feature_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surveys")),
        sa.UniqueConstraint("feature_set_id", name=op.f("uq_surveys_feature_set_id")),
    )
    with op.batch_alter_table("surveys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_surveys_account_id"), ["account_id"], unique=False)

    op.create_table(
        "survey_responses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("survey_id", sa.Uuid(), nullable=False),
        sa.Column("survey_name", sa.String(length=100), nullable=False),
        sa.Column("business_number", sa.String(length=15), nullable=False),
        sa.Column("feature_set_name", sa.String(length=100), nullable=False),
        sa.Column("client_number", sa.String(length=32), nullable=False),
        sa.Column("requested_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_survey_responses_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["surveys.id"], name=op.f("fk_survey_responses_survey_id_surveys"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_responses")),
    )
    with op.batch_alter_table("survey_responses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_survey_responses_account_id"), ["account_id"], unique=False)
        batch_op.create_index("ix_survey_responses_survey_requested", ["survey_id", "requested_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("survey_responses", schema=None) as batch_op:
        batch_op.drop_index("ix_survey_responses_survey_requested")
        batch_op.drop_index(batch_op.f("ix_survey_responses_account_id"))

    op.drop_table("survey_responses")
    with op.batch_alter_table("surveys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_surveys_account_id"))

    op.drop_table("surveys")
    with op.batch_alter_table("cmb_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cmb_requests_feature_set_id"))
        batch_op.drop_index("ix_cmb_requests_account_requested")

    op.drop_table("cmb_requests")
    with op.batch_alter_table("cmb_configs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cmb_configs_account_id"))

    op.drop_table("cmb_configs")
    with op.batch_alter_table("export_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_files_expires_at"))
        batch_op.drop_index(batch_op.f("ix_export_files_account_id"))

    op.drop_table("export_files")
