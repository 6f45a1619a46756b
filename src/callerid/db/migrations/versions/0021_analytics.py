"""analytics: call signals, blocked attempts, daily figures and webhook delays; secure branding; weekly reports

Revision ID: 0021_analytics
Revises: 0009_console_accounts
Create Date: 2027-03-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callerid.db.base

revision: str = "0021_analytics"
down_revision: str | Sequence[str] | None = "0009_console_accounts"
branch_labels: str | Sequence[str] | None = None
# A branch of its own on the accounts branch (members), after what it refers to or alters: devices (delivery),
# feature_sets (numbers), mail_outbox (webhooks). Not on the call-records branch: tests that stop that branch before
# one of its migrations still get every other table as the models have it.
depends_on: str | Sequence[str] | None = ("0004_delivery", "0005_numbers", "0006_webhooks")


def upgrade() -> None:
    op.create_table(
        "blocked_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("feature_set_id", sa.Uuid(), nullable=False),
        sa.Column("label_id", sa.Uuid(), nullable=False),
        sa.Column("business_number", sa.BigInteger(), nullable=False),
        sa.Column("at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_blocked_attempts_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocked_attempts")),
    )
    with op.batch_alter_table("blocked_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_blocked_attempts_account_at", ["account_id", "at"], unique=False)
        batch_op.create_index("ix_blocked_attempts_at", ["at"], unique=False)

    op.create_table(
        "call_signals",
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("business_number", sa.BigInteger(), nullable=False),
        sa.Column("label_id", sa.Uuid(), nullable=False),
        sa.Column("feature_set_id", sa.Uuid(), nullable=False),
        sa.Column("record_id", sa.BigInteger(), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("occurred_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_call_signals_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_call_signals_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("device_id", "event_id", name=op.f("pk_call_signals")),
    )
    with op.batch_alter_table("call_signals", schema=None) as batch_op:
        batch_op.create_index("ix_call_signals_account_occurred", ["account_id", "occurred_at"], unique=False)
        batch_op.create_index("ix_call_signals_received_at", ["received_at"], unique=False)

    op.create_table(
        "daily_figures",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("label_id", sa.Uuid(), nullable=False),
        sa.Column("feature_set_id", sa.Uuid(), nullable=False),
        sa.Column("business_number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("records_delivered", sa.BigInteger(), nullable=False),
        sa.Column("records_not_app_user", sa.BigInteger(), nullable=False),
        sa.Column("records_os_not_supported", sa.BigInteger(), nullable=False),
        sa.Column("records_app_version_not_supported", sa.BigInteger(), nullable=False),
        sa.Column("records_failed_to_push", sa.BigInteger(), nullable=False),
        sa.Column("shown", sa.BigInteger(), nullable=False),
        sa.Column("answered", sa.BigInteger(), nullable=False),
        sa.Column("missed", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("ended", sa.BigInteger(), nullable=False),
        sa.Column("talk_seconds", sa.BigInteger(), nullable=False),
        sa.Column("blocked", sa.BigInteger(), nullable=False),
        sa.Column("call_me_back_requests", sa.BigInteger(), nullable=False),
        sa.Column("survey_responses", sa.BigInteger(), nullable=False),
        sa.Column("ratings", sa.BigInteger(), nullable=False),
        sa.Column("rating_sum", sa.BigInteger(), nullable=False),
        sa.Column("webhooks_succeeded", sa.BigInteger(), nullable=False),
        sa.Column("webhooks_failed", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_daily_figures_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "account_id", "day", "label_id", "feature_set_id", "business_number", name=op.f("pk_daily_figures")
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "daily_webhook_delays",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_daily_webhook_delays_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "day", "bucket", name=op.f("pk_daily_webhook_delays")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("feature_sets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secure_branding", sa.Boolean(), nullable=False, server_default=sa.false()))

    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attachments", sa.JSON(), nullable=True))

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weekly_report", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(
            sa.Column("weekly_report_sent_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.drop_column("attachments")

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("weekly_report_sent_at")
        batch_op.drop_column("weekly_report")

    with op.batch_alter_table("feature_sets", schema=None) as batch_op:
        batch_op.drop_column("secure_branding")

    op.drop_table("daily_webhook_delays")
    op.drop_table("daily_figures")
    with op.batch_alter_table("call_signals", schema=None) as batch_op:
        batch_op.drop_index("ix_call_signals_received_at")
        batch_op.drop_index("ix_call_signals_account_occurred")

    op.drop_table("call_signals")
    with op.batch_alter_table("blocked_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_blocked_attempts_at")
        batch_op.drop_index("ix_blocked_attempts_account_at")

    op.drop_table("blocked_attempts")
