"""The console's view of numbers: the Numbers page's search (NN's query with the console's filters and an owner's
subtree) and the progress of a list/delist job (how many of its numbers reached which state, and why some failed)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.db.values import in_values
from callerid.numbers.models import (
    DELIST,
    DELISTED,
    DELISTING,
    FAILED,
    JOB_DONE,
    LISTED,
    PENDING,
    BusinessNumber,
    NumberJob,
)
from callerid.numbers.nodes import DEPARTMENT, OPERATION, TreeNode
from callerid.numbers.queries import NumberView, list_numbers
from callerid.numbers.tree import TreeFilters
from callerid.phone import normalise_phone


def subtree_filters(node: TreeNode) -> TreeFilters:
    """The feature sets under ``node`` (an owner's subtree) as NN filters; a process covers its sub-processes."""
    if node.ref.kind == DEPARTMENT:
        return TreeFilters(department_id=node.ref.id)
    if node.ref.kind == OPERATION:
        return TreeFilters(operation_id=node.ref.id)
    return TreeFilters(process_id=node.ref.id)


@dataclass(frozen=True)
class NumberSearch:
    """The Numbers page's filters. ``number``: digits the number contains, or with ``exact`` the number itself."""

    tree: TreeFilters = field(default_factory=TreeFilters)
    scope: TreeFilters | None = None
    status: str | None = None
    number: str | None = None
    exact: bool = False

    def predicates(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.scope is not None:
            where.extend(self.scope.predicates())
        if self.status is not None:
            where.append(BusinessNumber.status == self.status)
        if self.number:
            if self.exact:
                where.append(BusinessNumber.phone_number == (normalise_phone(self.number) or self.number))
            else:
                digits = "".join(ch for ch in self.number if ch.isdigit())
                where.append(BusinessNumber.phone_number.contains(digits, autoescape=True))
        return where


async def search_numbers(
    session: AsyncSession, account_id: uuid.UUID, search: NumberSearch, *, offset: int, limit: int
) -> tuple[list[NumberView], int]:
    """One page of the account's numbers matching ``search`` (NN's query: newest first) and the total."""
    return await list_numbers(session, account_id, search.tree, offset=offset, limit=limit, extra=search.predicates())


# --- a job's progress ----------------------------------------------------------------------------------------


@dataclass
class JobProgress:
    """Where a list or delist job's numbers are now. ``outcomes``: final or current state -> count; ``reasons``:
    failure reason -> count, with up to ``SAMPLE`` failed numbers each."""

    job: NumberJob
    outcomes: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    failed_samples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def listing(self) -> bool:
        return self.job.action != DELIST

    @property
    def done(self) -> bool:
        return self.job.status == JOB_DONE

    @property
    def total(self) -> int:
        return len(self.job.numbers)

    @property
    def waiting(self) -> int:
        """Still in progress (pending for a listing, delisting for a delisting) while the job runs."""
        return 0 if self.done else self.outcomes.get(PENDING if self.listing else DELISTING, 0)

    @property
    def succeeded(self) -> int:
        return self.outcomes.get(LISTED if self.listing else DELISTED, 0) if self.done else 0

    @property
    def failed(self) -> int:
        """A failed listing ends ``failed``; a failed delisting goes back to ``listed``."""
        if not self.done:
            return 0
        return self.outcomes.get(FAILED, 0) if self.listing else self.outcomes.get(LISTED, 0)

    @property
    def changed(self) -> int:
        """Numbers that moved on since the job (delisted, taken elsewhere, listed again): counted, not shown."""
        return self.total - self.waiting - self.succeeded - self.failed if self.done else 0

    @property
    def finished(self) -> int:
        return self.total - self.waiting


SAMPLE = 20


async def job_progress(
    session: AsyncSession, account_id: uuid.UUID, feature_set_id: uuid.UUID, job_id: uuid.UUID
) -> JobProgress | None:
    """The progress of the set's job ``job_id``, or None when the account's set has no such job."""
    job = await session.get(NumberJob, job_id)
    if job is None or job.account_id != account_id or job.feature_set_id != feature_set_id:
        return None
    progress = JobProgress(job)
    if not job.numbers:
        return progress
    mine = [
        in_values(BusinessNumber.phone_number, "numbers"),
        BusinessNumber.account_id == account_id,
        BusinessNumber.feature_set_id == feature_set_id,
    ]
    numbers = {"numbers": list(job.numbers)}
    rows = await session.execute(
        select(BusinessNumber.status, BusinessNumber.failure_reason, func.count())
        .where(*mine)
        .group_by(BusinessNumber.status, BusinessNumber.failure_reason),
        numbers,
    )
    for status, reason, count in rows.all():
        progress.outcomes[status] = progress.outcomes.get(status, 0) + count
        if status == FAILED and reason and progress.listing:
            progress.reasons[reason] = progress.reasons.get(reason, 0) + count
    if progress.done and progress.failed:
        # A failed delisting leaves the number listed, with no reason recorded.
        samples = await session.execute(
            select(BusinessNumber.phone_number, BusinessNumber.failure_reason)
            .where(*mine, BusinessNumber.status == (FAILED if progress.listing else LISTED))
            .order_by(BusinessNumber.phone_number)
            .limit(SAMPLE),
            numbers,
        )
        progress.failed_samples = [(number, reason or "") for number, reason in samples.all()]
    return progress
