"""Listing and delisting numbers (NL, ND) and processing their jobs.

List and delist requests are classified set-based (one chunked ``SELECT ... WHERE phone_number IN``), the
accepted numbers are written in bulk with a ``NumberJob`` and one queued job, and the job later moves them
to their final state in bulk. Every write that classifies or changes number states serialises on one lock
(``Database.lock``), because a number's ownership spans accounts and two concurrent requests for one number must
not both take it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.accounts import service as accounts
from callerid.config import Settings
from callerid.db.values import values_source
from callerid.db.write import lock_session
from callerid.failures import DomainError, InvalidInput
from callerid.jobs import enqueue
from callerid.numbers.checks import JOB_KIND, NUMBER_STATES_LOCK, _chunks, log
from callerid.numbers.models import (
    ARCHIVED,
    DELIST,
    DELISTED,
    DELISTING,
    FAILED,
    HELD_STATES,
    JOB_DONE,
    JOB_PROCESSING,
    LIST,
    LISTED,
    PENDING,
    VERIFIED,
    BusinessNumber,
    FeatureSet,
    NumberJob,
)
from callerid.phone import normalise_phone

LIST_BUCKETS = (
    "new_numbers",
    "other_phonetype_numbers",
    "existing_numbers",
    "others_numbers",
    "invalid_numbers",
    "other_feature_set_numbers",
    "migrated_numbers",
    "delisted_numbers",
    "updated_numbers",
    "processing_numbers",
)
DELIST_BUCKETS = (
    "processing_numbers",
    "new_numbers",
    "other_phonetype_numbers",
    "existing_numbers",
    "others_numbers",
    "invalid_numbers",
    "other_feature_set_numbers",
)


@dataclass
class Classification:
    """A list or delist request's answer: each distinct number in exactly one bucket."""

    buckets: dict[str, list[str]]
    accepted: int = 0
    job_id: uuid.UUID | None = None
    held: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "pending" if self.accepted else "failed"


def split_numbers(raw_numbers: Iterable[str]) -> tuple[list[str], list[str]]:
    """(valid normalised numbers, invalid inputs as sent), duplicates collapsed with the first kept (SPEC §7.3)."""
    valid: list[str] = []
    invalid: list[str] = []
    seen_valid: set[str] = set()
    seen_invalid: set[str] = set()
    for raw in raw_numbers:
        number = normalise_phone(raw)
        if number is None:
            if raw not in seen_invalid:
                seen_invalid.add(raw)
                invalid.append(raw)
        elif number not in seen_valid:
            seen_valid.add(number)
            valid.append(number)
    return valid, invalid


async def _lock_number_states(session: AsyncSession) -> None:
    await lock_session(session, NUMBER_STATES_LOCK)


@dataclass(frozen=True)
class _Current:
    account_id: uuid.UUID
    feature_set_id: uuid.UUID | None
    phone_type: str
    status: str
    job_id: uuid.UUID | None


async def _current_states(session: AsyncSession, numbers: Sequence[str]) -> dict[str, _Current]:
    found: dict[str, _Current] = {}
    for chunk in _chunks(numbers):
        rows = await session.execute(
            select(
                BusinessNumber.phone_number,
                BusinessNumber.account_id,
                BusinessNumber.feature_set_id,
                BusinessNumber.phone_type,
                BusinessNumber.status,
                BusinessNumber.job_id,
            ).where(BusinessNumber.phone_number.in_(chunk))
        )
        for number, *state in rows.all():
            found[number] = _Current(*state)
    return found


async def _count_held(session: AsyncSession, *where: ColumnElement[bool]) -> int:
    count = await session.scalar(
        select(func.count()).select_from(BusinessNumber).where(BusinessNumber.status.in_(HELD_STATES), *where)
    )
    return count or 0


async def _update_numbers(session: AsyncSession, numbers: Sequence[str], values: dict[str, Any]) -> None:
    for chunk in _chunks(numbers):
        await session.execute(
            update(BusinessNumber)
            .where(BusinessNumber.phone_number.in_(chunk))
            .values(**values)
            .execution_options(synchronize_session=False)
        )


async def _insert_numbers(session: AsyncSession, numbers: Sequence[str], values: dict[str, Any]) -> None:
    """New rows for ``numbers``, all with the same ``values``: one INSERT ... SELECT over the list.

    The list travels as one parameter (``db.values.values_source``).
    """
    if not numbers:
        return
    source = values_source(session, "numbers", numbers, String())
    table = BusinessNumber.__table__
    columns = list(values)
    constants = [literal(values[name], type_=table.c[name].type) for name in columns]
    rows = select(source.c.value, *constants)
    await session.execute(insert(table).from_select(["phone_number", *columns], rows))


async def _hold(
    session: AsyncSession, numbers: Sequence[str], action: str, feature_set_id: uuid.UUID, email: str
) -> None:
    # At most one held request per number: a newer one replaces it (SPEC §7.3).
    await _update_numbers(
        session, numbers, {"held_action": action, "held_feature_set_id": feature_set_id, "held_by_email": email}
    )


async def _start_job(
    session: AsyncSession,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    feature_set_id: uuid.UUID,
    action: str,
    numbers: list[str],
    email: str,
) -> uuid.UUID:
    job_id = uuid.uuid4()
    now = clock.now()
    await session.execute(
        insert(NumberJob).values(
            id=job_id,
            account_id=account_id,
            feature_set_id=feature_set_id,
            action=action,
            numbers=numbers,
            created_by_email=email,
            status=JOB_PROCESSING,
            created_at=now,
        )
    )
    due_at = now + timedelta(seconds=settings.number_job_delay_seconds)
    await enqueue(session, JOB_KIND, {"job_id": str(job_id)}, due_at=due_at)
    return job_id


async def list_numbers_into(
    session: AsyncSession,
    settings: Settings,
    *,
    feature_set: FeatureSet,
    raw_numbers: Sequence[str],
    created_by_email: str,
) -> Classification:
    """NL: classify (SPEC §7.4), enforce the caps, mark accepted numbers pending and queue their job.

    Call inside a write transaction; enqueue wake-up is the caller's (after commit).
    """
    account_id = feature_set.account_id
    valid, invalid = split_numbers(raw_numbers)
    await _lock_number_states(session)
    # Read after the lock: archiving a node (numbers.organisation) archives its sets under the same lock.
    await session.refresh(feature_set, ["status"])
    if feature_set.status == ARCHIVED:
        raise InvalidInput("feature set is archived")
    current = await _current_states(session, valid)
    buckets: dict[str, list[str]] = {name: [] for name in LIST_BUCKETS}
    buckets["invalid_numbers"] = invalid
    insert_new: list[str] = []  # no row yet
    take_over: list[str] = []  # row exists; the number is added afresh (created_at restarts)
    retry: list[str] = []  # migrated or failed in this set: keeps created_at
    held: list[str] = []
    for number in valid:
        state = current.get(number)
        if state is None:
            buckets["new_numbers"].append(number)
            insert_new.append(number)
        elif state.account_id != account_id:
            if state.status in HELD_STATES:
                buckets["others_numbers"].append(number)
            else:  # failed or delisted elsewhere: free to take
                buckets["new_numbers"].append(number)
                take_over.append(number)
        elif state.job_id is not None:
            buckets["processing_numbers"].append(number)
            held.append(number)
        elif state.phone_type != VERIFIED:
            buckets["other_phonetype_numbers"].append(number)
        elif state.status in (PENDING, LISTED) and state.feature_set_id not in (None, feature_set.id):
            buckets["other_feature_set_numbers"].append(number)
        elif state.status == LISTED and state.feature_set_id == feature_set.id:
            buckets["existing_numbers"].append(number)
        elif state.status == LISTED:
            buckets["migrated_numbers"].append(number)
            retry.append(number)
        elif state.status == FAILED and state.feature_set_id == feature_set.id:
            buckets["updated_numbers"].append(number)
            retry.append(number)
        elif state.status == DELISTED:
            buckets["delisted_numbers"].append(number)
            take_over.append(number)
        else:  # failed in another feature set of this account
            buckets["new_numbers"].append(number)
            take_over.append(number)

    accepted = insert_new + take_over + retry
    result = Classification(buckets=buckets, accepted=len(accepted), held=held)
    if accepted:
        in_set = await _count_held(session, BusinessNumber.feature_set_id == feature_set.id)
        if in_set + len(accepted) > settings.feature_set_number_limit:
            raise InvalidInput("feature set number limit exceeded")
        account = await accounts.get_account(session, account_id)
        cap = account.number_cap if account.number_cap is not None else settings.account_number_cap
        in_account = await _count_held(session, BusinessNumber.account_id == account_id)
        if in_account + len(accepted) - len(buckets["migrated_numbers"]) > cap:
            raise InvalidInput("client account number limit exceeded")
        job_id = await _start_job(
            session,
            settings,
            account_id=account_id,
            feature_set_id=feature_set.id,
            action=LIST,
            numbers=accepted,
            email=created_by_email,
        )
        result.job_id = job_id
        now = clock.now()
        pending = {
            "account_id": account_id,
            "feature_set_id": feature_set.id,
            "phone_type": VERIFIED,
            "status": PENDING,
            "failure_reason": None,
            "job_id": job_id,
            "held_action": None,
            "held_feature_set_id": None,
            "held_by_email": None,
            "created_by_email": created_by_email,
            "updated_at": now,
        }
        await _insert_numbers(session, insert_new, {**pending, "created_at": now})
        await _update_numbers(session, take_over, {**pending, "created_at": now})
        await _update_numbers(session, retry, pending)
    if held:
        await _hold(session, held, LIST, feature_set.id, created_by_email)
    return result


async def delist_numbers_from(
    session: AsyncSession,
    settings: Settings,
    *,
    feature_set: FeatureSet,
    raw_numbers: Sequence[str],
    created_by_email: str,
) -> Classification:
    """ND: classify (SPEC §7.4), mark listed numbers of the set delisting and queue their job."""
    account_id = feature_set.account_id
    valid, invalid = split_numbers(raw_numbers)
    await _lock_number_states(session)
    current = await _current_states(session, valid)
    buckets: dict[str, list[str]] = {name: [] for name in DELIST_BUCKETS}
    buckets["invalid_numbers"] = invalid
    to_delist: list[str] = []
    failed_here: list[str] = []
    held: list[str] = []
    for number in valid:
        state = current.get(number)
        if state is None:
            buckets["new_numbers"].append(number)
        elif state.account_id != account_id:
            buckets["others_numbers" if state.status in HELD_STATES else "new_numbers"].append(number)
        elif state.job_id is not None:
            buckets["processing_numbers"].append(number)
            held.append(number)
        elif state.phone_type != VERIFIED:
            buckets["other_phonetype_numbers"].append(number)
        elif state.status == LISTED and state.feature_set_id is not None and state.feature_set_id != feature_set.id:
            buckets["other_feature_set_numbers"].append(number)
        elif state.status == LISTED and state.feature_set_id == feature_set.id:
            buckets["existing_numbers"].append(number)
            to_delist.append(number)
        else:
            buckets["new_numbers"].append(number)
            if state.status == FAILED and state.feature_set_id == feature_set.id:
                # Never listed, so nothing to undo; the client asked for it out of the set, so it leaves at once.
                failed_here.append(number)

    result = Classification(buckets=buckets, accepted=len(to_delist), held=held)
    now = clock.now()
    if to_delist:
        job_id = await _start_job(
            session,
            settings,
            account_id=account_id,
            feature_set_id=feature_set.id,
            action=DELIST,
            numbers=to_delist,
            email=created_by_email,
        )
        result.job_id = job_id
        await _update_numbers(
            session, to_delist, {"status": DELISTING, "job_id": job_id, "failure_reason": None, "updated_at": now}
        )
    if failed_here:
        await _update_numbers(session, failed_here, {"status": DELISTED, "updated_at": now})
    if held:
        await _hold(session, held, DELIST, feature_set.id, created_by_email)
    return result


# --- processing (the job) ----------------------------------------------------------------------------


async def finish_job(session: AsyncSession, settings: Settings, job: NumberJob, failures: dict[str, str]) -> int:
    """Move the job's numbers to their final state, then run the requests held behind it (SPEC §7.3, §7.5).

    ``failures`` maps numbers whose verification failed to the reason. Returns how many held numbers
    were re-submitted. Call inside a write transaction.
    """
    await _lock_number_states(session)
    await session.refresh(job)  # another run of this job may have finished it while we waited for the lock
    if job.status == JOB_DONE:
        return 0
    now = clock.now()
    listing = job.action == LIST
    in_progress = PENDING if listing else DELISTING
    success = LISTED if listing else DELISTED
    held_rows = (
        await session.execute(
            select(
                BusinessNumber.phone_number,
                BusinessNumber.held_action,
                BusinessNumber.held_feature_set_id,
                BusinessNumber.held_by_email,
            ).where(BusinessNumber.job_id == job.id, BusinessNumber.held_action.is_not(None))
        )
    ).all()
    mine = BusinessNumber.job_id == job.id
    by_reason: dict[str, list[str]] = {}
    for number, reason in failures.items():
        by_reason.setdefault(reason[:200], []).append(number)
    for reason, numbers in by_reason.items():
        # A failed listing ends `failed` with its reason; a failed delisting goes back to `listed`.
        values: dict[str, Any] = {"status": FAILED, "failure_reason": reason} if listing else {"status": LISTED}
        for chunk in _chunks(numbers):
            await session.execute(
                update(BusinessNumber)
                .where(mine, BusinessNumber.phone_number.in_(chunk), BusinessNumber.status == in_progress)
                .values(**values, updated_at=now)
                .execution_options(synchronize_session=False)
            )
    await session.execute(
        update(BusinessNumber)
        .where(mine, BusinessNumber.status == in_progress)
        .values(status=success, failure_reason=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(BusinessNumber)
        .where(mine)
        .values(job_id=None, held_action=None, held_feature_set_id=None, held_by_email=None)
        .execution_options(synchronize_session=False)
    )
    job.status = JOB_DONE
    job.finished_at = now
    await session.flush()

    groups: dict[tuple[str, uuid.UUID | None, str], list[str]] = {}
    for number, action, feature_set_id, email in held_rows:
        groups.setdefault((action, feature_set_id, email or ""), []).append(number)
    for (action, feature_set_id, email), numbers in groups.items():
        await _run_held(session, settings, job.account_id, action, feature_set_id, email, numbers)
    return sum(len(numbers) for numbers in groups.values())


async def _run_held(
    session: AsyncSession,
    settings: Settings,
    account_id: uuid.UUID,
    action: str,
    feature_set_id: uuid.UUID | None,
    email: str,
    numbers: list[str],
) -> None:
    """A held request, processed like a fresh one now that the blocking job is done."""
    feature_set = await session.get(FeatureSet, feature_set_id) if feature_set_id is not None else None
    if feature_set is None or feature_set.account_id != account_id:
        log.info("held_request_dropped", reason="feature set gone", numbers=len(numbers))
        return
    apply = list_numbers_into if action == LIST else delist_numbers_from
    try:
        outcome = await apply(session, settings, feature_set=feature_set, raw_numbers=numbers, created_by_email=email)
    except DomainError as exc:
        # Caps or an archived set (checked before anything is written): rejected as a fresh request would be.
        log.info("held_request_rejected", action=action, feature_set_id=str(feature_set.id), reason=exc.message)
        return
    log.info(
        "held_request_resubmitted",
        action=action,
        feature_set_id=str(feature_set.id),
        accepted=outcome.accepted,
        numbers=len(numbers),
    )
