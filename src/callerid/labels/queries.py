"""Reading an account's labels the way the console lists them: every type, searchable, paged, with a total."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import false, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.display_text import unstorable
from callerid.labels.models import Label
from callerid.paging import Page

# LIKE wildcards typed by a user are matched literally.
_LIKE_ESCAPES = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


@dataclass(frozen=True)
class LabelFilter:
    name: str = ""
    label_type: str = ""


def _where(account_id: uuid.UUID, filters: LabelFilter) -> list[object]:
    where: list[object] = [Label.account_id == account_id]
    if filters.name and unstorable(filters.name) is not None:
        where.append(false())  # no stored name holds a NUL, and PostgreSQL could not even compare one
    elif filters.name:
        pattern = "%" + filters.name.lower().translate(_LIKE_ESCAPES) + "%"
        where.append(func.lower(Label.name).like(pattern, escape="\\"))
    if filters.label_type:
        where.append(Label.label_type == filters.label_type)
    return where


async def search_labels(
    session: AsyncSession, account_id: uuid.UUID, filters: LabelFilter, page: Page | None
) -> tuple[list[Label], int]:
    """Newest first, ties by id (as L orders them); ``page`` None returns every match (CSV export)."""
    where = _where(account_id, filters)
    total = await session.scalar(select(func.count()).select_from(Label).where(*where))  # type: ignore[arg-type]
    query = select(Label).where(*where).order_by(Label.created_at.desc(), Label.id.desc())  # type: ignore[arg-type]
    if page is not None:
        query = query.offset(page.offset).limit(page.limit)
    return list((await session.scalars(query)).all()), int(total or 0)


async def count_labels(session: AsyncSession, account_id: uuid.UUID) -> int:
    total = await session.scalar(select(func.count()).select_from(Label).where(Label.account_id == account_id))
    return int(total or 0)


async def get_label(session: AsyncSession, account_id: uuid.UUID, label_id: uuid.UUID) -> Label | None:
    label = await session.get(Label, label_id)
    return label if label is not None and label.account_id == account_id else None
