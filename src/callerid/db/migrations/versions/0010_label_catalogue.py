"""labels: the operator's category catalogue, seeded with the default one shipped in the package

Revision ID: 0010_label_catalogue
Revises: 0002_labels
Create Date: 2026-12-02 05:00:00
"""

import json
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0010_label_catalogue"
down_revision: str | Sequence[str] | None = "0002_labels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The file as it is in the installed package; `callerid catalogue reset` loads it again later.
DEFAULT_CATALOGUE = Path(__file__).resolve().parents[3] / "labels" / "default_catalogue.json"


def upgrade() -> None:
    categories = op.create_table(
        "label_categories",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_categories")),
        sa.UniqueConstraint("name", name=op.f("uq_label_categories_name")),
    )
    sub_categories = op.create_table(
        "label_sub_categories",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["label_categories.id"],
            name=op.f("fk_label_sub_categories_category_id_label_categories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_sub_categories")),
        sa.UniqueConstraint("category_id", "name", name=op.f("uq_label_sub_categories_category_id_name")),
    )
    with op.batch_alter_table("label_sub_categories", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_label_sub_categories_category_id"), ["category_id"], unique=False)

    catalogue = json.loads(DEFAULT_CATALOGUE.read_text())["categories"]
    assert categories is not None and sub_categories is not None
    op.bulk_insert(categories, [{"id": c["id"], "name": c["name"]} for c in catalogue])
    op.bulk_insert(
        sub_categories,
        [{"id": s["id"], "category_id": c["id"], "name": s["name"]} for c in catalogue for s in c["sub_categories"]],
    )


def downgrade() -> None:
    op.drop_table("label_sub_categories")
    op.drop_table("label_categories")
