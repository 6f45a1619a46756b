"""labels: logos live in the database (label_logos, content-addressed), the files under the data directory moved in

Before this revision a logo was a file ``<CALLERID_DATA_DIR>/logos/<uuid>-<nanoseconds>.png`` on the host that
received it, named by ``labels.logo_key``. Now ``label_logos`` holds each distinct image once, keyed by the SHA-256
of its bytes, and ``labels.logo_key`` refers to it (a foreign key; NULL: no logo). The old file name is kept in
``labels.legacy_logo_key`` so that the logo URLs handed out before keep working (``GET /logos/<old name>``
redirects to the new URL).

The files are read from the data directory as the application finds it (``CALLERID_DATA_DIR``). A label whose file
is not there (several hosts each kept their own uploads; a file was lost) is left without a logo, and each one is
logged: run ``callerid labels import-logos`` on the hosts that have the other files to move them in as well.

Revision ID: 0015_label_logos
Revises: 0010_label_catalogue
Create Date: 2026-12-14 09:00:00
"""

import logging
import uuid
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

import callerid.db.base
from callerid.config import load_settings
from callerid.labels import legacy_logos

revision: str = "0015_label_logos"
down_revision: str | Sequence[str] | None = "0010_label_catalogue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")


def _logo_folder() -> Path:
    return legacy_logos.logo_dir(load_settings().data_dir)


def upgrade() -> None:
    op.create_table(
        "label_logos",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("object_name", sa.String(length=300), nullable=True),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_label_logos")),
    )
    with op.batch_alter_table("label_logos", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_label_logos_created_at"), ["created_at"], unique=False)

    # Every existing label keeps its file name as its legacy key and waits for its logo.
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("legacy_logo_key", sa.String(length=200), nullable=True))
        batch_op.alter_column("logo_key", existing_type=sa.String(length=200), nullable=True)
    labels = legacy_logos.labels_table
    op.execute(sa.update(labels).values(legacy_logo_key=labels.c.logo_key, logo_key=None))

    legacy_logos.move_logo_files(op.get_bind(), _logo_folder(), log)

    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.alter_column(
            "logo_key", existing_type=sa.String(length=200), type_=sa.String(length=64), existing_nullable=True
        )
        batch_op.create_index(batch_op.f("ix_labels_logo_key"), ["logo_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_labels_legacy_logo_key"), ["legacy_logo_key"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_labels_logo_key_label_logos"), "label_logos", ["logo_key"], ["key"])


def downgrade() -> None:
    """Back to files: every logo written to the data directory under the label's old file name (a new one for
    labels made since), ``labels.logo_key`` naming the file again."""
    bind = op.get_bind()
    labels, logos = legacy_logos.labels_table.c, legacy_logos.logos_table.c
    folder = _logo_folder()
    if bind.execute(
        sa.select(sa.func.count()).select_from(legacy_logos.logos_table).where(logos.data.is_(None))
    ).scalar_one():
        raise RuntimeError("logos are kept in the S3-compatible object store: downgrading needs them in the database")
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_labels_logo_key_label_logos"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_labels_legacy_logo_key"))
        batch_op.drop_index(batch_op.f("ix_labels_logo_key"))
        batch_op.alter_column(
            "logo_key", existing_type=sa.String(length=64), type_=sa.String(length=200), existing_nullable=True
        )
    rows = bind.execute(sa.select(labels.id, labels.logo_key, labels.legacy_logo_key)).all()
    for label_id, key, legacy in rows:
        name = legacy or f"{uuid.uuid4()}-{label_id.int % 10**19}.png"
        if key is not None:
            data = bind.execute(sa.select(logos.data).where(logos.key == key)).scalar_one()
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        bind.execute(sa.update(legacy_logos.labels_table).where(labels.id == label_id).values(logo_key=name))
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.alter_column("logo_key", existing_type=sa.String(length=200), nullable=False)
        batch_op.drop_column("legacy_logo_key")
    with op.batch_alter_table("label_logos", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_label_logos_created_at"))
    op.drop_table("label_logos")
