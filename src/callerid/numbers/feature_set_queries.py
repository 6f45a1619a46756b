"""Reading feature sets the way the console shows them: searched by name or by a number in them, filtered by the
tree (FS's filters) and status, limited to an owner's subtree, paged with a total, with their numbers counted."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.display_text import unstorable
from callerid.labels.shared import LABELS
from callerid.numbers.checks import VISIBLE_STATES
from callerid.numbers.models import (
    DELISTED,
    DELISTING,
    FAILED,
    LIST,
    LISTED,
    PENDING,
    BusinessNumber,
    CallReason,
    FeatureSet,
    Process,
)
from callerid.numbers.tree import FeatureSetView, TreeFilters, _feature_set_view_query, _to_view
from callerid.paging import Page
from callerid.phone import normalise_phone

# The order a feature set's page counts its numbers in (SPEC §7.5's life of a number).
NUMBER_STATES = (PENDING, LISTED, DELISTING, FAILED, DELISTED)
# LIKE wildcards typed by a user are matched literally.
_LIKE_ESCAPES = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


@dataclass(frozen=True)
class FeatureSetSearch:
    """``text``: part of the name, or a phone number in any form the API takes (``+91 ...`` -> ``91...``): a set
    is found by a number it holds (pending, listed, delisting or failed in it) or one waiting to be listed into
    it. ``scope``: an owner's subtree, as tree filters (None: the whole account)."""

    text: str = ""
    status: str = ""
    tree: TreeFilters = field(default_factory=TreeFilters)
    scope: TreeFilters | None = None


@dataclass(frozen=True)
class FeatureSetRow:
    view: FeatureSetView
    label_name: str
    listed_count: int


def _where(account_id: uuid.UUID, search: FeatureSetSearch) -> list[ColumnElement[bool]]:
    where = [FeatureSet.account_id == account_id, *search.tree.predicates()]
    if search.scope is not None:
        where.extend(search.scope.predicates())
    if search.status:
        where.append(FeatureSet.status == search.status)
    text = search.text.strip()
    if text and unstorable(text) is not None:
        where.append(false())  # no stored name holds a NUL, and PostgreSQL could not even compare one
    elif text:
        pattern = "%" + text.lower().translate(_LIKE_ESCAPES) + "%"
        matches: list[ColumnElement[bool]] = [func.lower(FeatureSet.name).like(pattern, escape="\\")]
        number = normalise_phone(text)
        if number is not None:
            in_set = select(BusinessNumber.feature_set_id).where(
                BusinessNumber.phone_number == number,
                BusinessNumber.account_id == account_id,
                BusinessNumber.status.in_(VISIBLE_STATES),
            )
            waiting = select(BusinessNumber.held_feature_set_id).where(
                BusinessNumber.phone_number == number,
                BusinessNumber.account_id == account_id,
                BusinessNumber.held_action == LIST,
            )
            matches += [FeatureSet.id.in_(in_set), FeatureSet.id.in_(waiting)]
        where.append(or_(*matches))
    return where


def _listed_count() -> ColumnElement[int]:
    return (
        select(func.count())
        .select_from(BusinessNumber)
        .where(BusinessNumber.feature_set_id == FeatureSet.id, BusinessNumber.status == LISTED)
        .correlate(FeatureSet)
        .scalar_subquery()
    )


async def search_feature_sets(
    session: AsyncSession, account_id: uuid.UUID, search: FeatureSetSearch, page: Page | None
) -> tuple[list[FeatureSetRow], int]:
    """Newest first (as FS orders them); ``page`` None returns every match (CSV export)."""
    where = _where(account_id, search)
    total = await session.scalar(select(func.count()).select_from(FeatureSet).where(*where)) or 0
    query = (
        _feature_set_view_query()
        .add_columns(LABELS.c.name, _listed_count())
        .join(LABELS, LABELS.c.id == FeatureSet.label_id)
        .where(*where)
        .order_by(FeatureSet.created_at.desc(), FeatureSet.id)
    )
    if page is not None:
        query = query.offset(page.offset).limit(page.limit)
    rows = (await session.execute(query)).all()
    return [FeatureSetRow(_to_view(row[:6]), row[6], row[7] or 0) for row in rows], int(total)


async def number_counts(session: AsyncSession, feature_set_id: uuid.UUID) -> dict[str, int]:
    """How many numbers of the set are in each state (every state named, zeros included)."""
    rows = await session.execute(
        select(BusinessNumber.status, func.count())
        .where(BusinessNumber.feature_set_id == feature_set_id)
        .group_by(BusinessNumber.status)
    )
    found = {status: count for status, count in rows.all()}
    return {state: found.get(state, 0) for state in NUMBER_STATES}


async def call_reason_text(session: AsyncSession, call_reason_id: uuid.UUID | None) -> str | None:
    if call_reason_id is None:
        return None
    reason = await session.get(CallReason, call_reason_id)
    return reason.text if reason is not None else None


async def archived_process_ids(session: AsyncSession, account_id: uuid.UUID) -> set[uuid.UUID]:
    """Processes a feature set may no longer be moved to or created on."""
    rows = await session.scalars(
        select(Process.id).where(Process.account_id == account_id, Process.archived_at.is_not(None))
    )
    return set(rows.all())
