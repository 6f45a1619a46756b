"""engagement: survey campaigns: a type (Call Rating or Questions), a status (live or paused), questions with a kind

Until this revision a survey's ``questions`` was a list of texts, every survey was shown to phones, and answers
were free text. Now each question is ``{"text", "kind"}`` (``rating``, ``choice`` with its ``choices``, or
``text``). Every existing survey keeps working as it did: its questions become free-text questions, its type
Questions, its status live, and ``updated_at`` its creation time.

On the labels branch after 0015 (the console work of issue 11 came after it); the surveys table is engagement's.

Revision ID: 0018_survey_campaigns
Revises: 0015_label_logos
Create Date: 2027-01-20 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import callerid.db.base

revision: str = "0018_survey_campaigns"
down_revision: str | Sequence[str] | None = "0015_label_logos"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = ("0007_engagement",)

SURVEYS = sa.table(
    "surveys",
    sa.column("id", sa.Uuid()),
    sa.column("questions", sa.JSON()),
    sa.column("survey_type", sa.String()),
    sa.column("status", sa.String()),
    sa.column("created_at", callerid.db.base.UtcDateTime(timezone=True)),
    sa.column("updated_at", callerid.db.base.UtcDateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("surveys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("survey_type", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("updated_at", callerid.db.base.UtcDateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    op.execute(sa.update(SURVEYS).values(survey_type="questions", status="live", updated_at=SURVEYS.c.created_at))
    # Surveys are few (one per feature set): each one's questions rewritten in Python, the same on both databases.
    for survey_id, questions in bind.execute(sa.select(SURVEYS.c.id, SURVEYS.c.questions)).all():
        kinded = [{"text": q, "kind": "text"} if isinstance(q, str) else q for q in questions or []]
        bind.execute(sa.update(SURVEYS).where(SURVEYS.c.id == survey_id).values(questions=kinded))
    with op.batch_alter_table("surveys", schema=None) as batch_op:
        batch_op.alter_column("survey_type", existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column("status", existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column("updated_at", existing_type=callerid.db.base.UtcDateTime(timezone=True), nullable=False)


def downgrade() -> None:
    """Back to lists of texts: kinds, choices, types and statuses are lost (paused surveys are shown again)."""
    bind = op.get_bind()
    for survey_id, questions in bind.execute(sa.select(SURVEYS.c.id, SURVEYS.c.questions)).all():
        texts = [q if isinstance(q, str) else q["text"] for q in questions or []]
        bind.execute(sa.update(SURVEYS).where(SURVEYS.c.id == survey_id).values(questions=texts))
    with op.batch_alter_table("surveys", schema=None) as batch_op:
        batch_op.drop_column("updated_at")
        batch_op.drop_column("status")
        batch_op.drop_column("survey_type")
