"""Manage listing (console, SPEC §7.3-§7.5): list a batch of numbers in a feature set (Append), make the set hold
exactly that batch (Rewrite: list it and delist every other number of the set), or delist a batch (Delist); first as
a preview, then for real.

Both run the very code of NL and ND (``listing.list_numbers_into`` / ``delist_numbers_from``), so a preview
classifies each number exactly as the API would: the preview runs it in a write transaction that is then rolled
back, so nothing is written, no job is queued and no runner is woken (``db.write`` forgets the wake-up on rollback).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.config import Settings
from callerid.db import Database
from callerid.failures import Conflict, NotFound
from callerid.numbers.checks import _chunks
from callerid.numbers.listing import Classification, delist_numbers_from, list_numbers_into, split_numbers
from callerid.numbers.models import FAILED, LISTED, PENDING, BusinessNumber, FeatureSet

APPEND = "append"
REWRITE = "rewrite"
DELIST = "delist"
MODES = (APPEND, REWRITE, DELIST)
# The numbers of a set that Rewrite delists when they are not in the batch: those held by the set or failed in it.
# Delisting ones are on their way out already.
REWRITE_DELISTS = (PENDING, LISTED, FAILED)
T = TypeVar("T")


@dataclass
class ListingPlan:
    """What a batch does (or did): the NL answer (Append, Rewrite), the ND answer (Delist; for Rewrite, of the set's
    other numbers) and, for Rewrite, those other numbers."""

    mode: str
    listing: Classification | None = None
    delisting: Classification | None = None
    others: tuple[str, ...] = ()

    @property
    def job_ids(self) -> list[uuid.UUID]:
        return [c.job_id for c in (self.listing, self.delisting) if c is not None and c.job_id is not None]

    @property
    def accepted(self) -> int:
        return sum(c.accepted for c in (self.listing, self.delisting) if c is not None)

    @property
    def others_digest(self) -> str:
        """A short fingerprint of ``others``: a confirmation carries it, so a set that changed since the preview is
        noticed before numbers the person did not see are delisted."""
        return hashlib.sha256("\n".join(sorted(self.others)).encode()).hexdigest()[:32]


async def rest_of_set(session: AsyncSession, feature_set_id: uuid.UUID, keep: Sequence[str]) -> list[str]:
    """The set's pending, listed and failed numbers that are not in ``keep`` (normalised), by number."""
    kept = set(keep)
    rows = await session.scalars(
        select(BusinessNumber.phone_number)
        .where(BusinessNumber.feature_set_id == feature_set_id, BusinessNumber.status.in_(REWRITE_DELISTS))
        .order_by(BusinessNumber.phone_number)
    )
    return [number for number in rows.all() if number not in kept]


async def apply_listing(
    session: AsyncSession,
    settings: Settings,
    *,
    feature_set: FeatureSet,
    mode: str,
    raw_numbers: Sequence[str],
    created_by_email: str,
    expected_others: str | None = None,
) -> ListingPlan:
    """Do it, inside the caller's write transaction (NL and ND rules and caps; a broken rule raises before the
    transaction commits, so nothing is half done).

    ``expected_others``: for Rewrite, the ``others_digest`` of the preview the person confirmed; when the set's other
    numbers are no longer those, ``Conflict`` is raised (and the caller's transaction rolled back).
    """
    if mode not in MODES:
        raise ValueError(mode)
    plan = ListingPlan(mode)
    if mode == DELIST:
        plan.delisting = await delist_numbers_from(
            session, settings, feature_set=feature_set, raw_numbers=raw_numbers, created_by_email=created_by_email
        )
        return plan
    plan.listing = await list_numbers_into(
        session, settings, feature_set=feature_set, raw_numbers=raw_numbers, created_by_email=created_by_email
    )
    if mode == REWRITE:
        valid, _invalid = split_numbers(raw_numbers)
        plan.others = tuple(await rest_of_set(session, feature_set.id, valid))
        if expected_others is not None and expected_others != plan.others_digest:
            raise Conflict("this feature set changed since the preview: check the new preview and confirm again")
        if plan.others:
            plan.delisting = await delist_numbers_from(
                session, settings, feature_set=feature_set, raw_numbers=plan.others, created_by_email=created_by_email
            )
    return plan


class _RollBack(Exception):
    """Ends a preview's transaction without committing it."""


async def _dry_run(db: Database, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """``work``'s answer, run in a write transaction that is rolled back (so it may call the writing code)."""
    try:
        async with db.transaction() as session:
            answer = await work(session)
            raise _RollBack()
    except _RollBack:
        return answer


async def preview_listing(
    db: Database,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    feature_set_id: uuid.UUID,
    mode: str,
    raw_numbers: Sequence[str],
    created_by_email: str,
) -> ListingPlan:
    """What ``apply_listing`` would do now, with nothing written. Raises what it would raise (caps, archived)."""

    async def work(session: AsyncSession) -> ListingPlan:
        feature_set = await session.get(FeatureSet, feature_set_id)
        if feature_set is None or feature_set.account_id != account_id:
            raise NotFound("feature set not found")
        return await apply_listing(
            session,
            settings,
            feature_set=feature_set,
            mode=mode,
            raw_numbers=raw_numbers,
            created_by_email=created_by_email,
        )

    return await _dry_run(db, work)


async def preview_delisting(
    db: Database,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    numbers_by_set: dict[uuid.UUID, list[str]],
    created_by_email: str,
) -> dict[uuid.UUID, Classification]:
    """ND for several sets at once (numbers chosen on the Numbers page), with nothing written."""

    async def work(session: AsyncSession) -> dict[uuid.UUID, Classification]:
        return await delist_by_set(
            session, settings, account_id=account_id, numbers_by_set=numbers_by_set, created_by_email=created_by_email
        )

    return await _dry_run(db, work)


async def delist_by_set(
    session: AsyncSession,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    numbers_by_set: dict[uuid.UUID, list[str]],
    created_by_email: str,
) -> dict[uuid.UUID, Classification]:
    """ND once per feature set, inside the caller's write transaction."""
    answers: dict[uuid.UUID, Classification] = {}
    for feature_set_id, numbers in numbers_by_set.items():
        feature_set = await session.get(FeatureSet, feature_set_id)
        if feature_set is None or feature_set.account_id != account_id:
            raise NotFound("feature set not found")
        answers[feature_set_id] = await delist_numbers_from(
            session, settings, feature_set=feature_set, raw_numbers=numbers, created_by_email=created_by_email
        )
    return answers


async def set_counts(session: AsyncSession, feature_set_id: uuid.UUID) -> dict[str, int]:
    """How many numbers of the set are in each state."""
    rows = await session.execute(
        select(BusinessNumber.status, func.count())
        .where(BusinessNumber.feature_set_id == feature_set_id)
        .group_by(BusinessNumber.status)
    )
    return {status: count for status, count in rows.all()}


async def feature_sets_of_numbers(
    session: AsyncSession, account_id: uuid.UUID, numbers: Sequence[str], *, states: Sequence[str]
) -> dict[str, uuid.UUID | None]:
    """number -> its feature set, for the account's numbers among ``numbers`` (normalised) in ``states``."""
    found: dict[str, uuid.UUID | None] = {}
    for chunk in _chunks(list(numbers)):
        rows = await session.execute(
            select(BusinessNumber.phone_number, BusinessNumber.feature_set_id).where(
                BusinessNumber.account_id == account_id,
                BusinessNumber.phone_number.in_(chunk),
                BusinessNumber.status.in_(states),
            )
        )
        found.update({number: set_id for number, set_id in rows.all()})
    return found


__all__ = [
    "APPEND",
    "DELIST",
    "MODES",
    "REWRITE",
    "ListingPlan",
    "apply_listing",
    "delist_by_set",
    "feature_sets_of_numbers",
    "preview_delisting",
    "preview_listing",
    "rest_of_set",
    "set_counts",
]
