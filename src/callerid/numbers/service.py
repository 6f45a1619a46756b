"""Number-management rules: the organisation tree, feature sets, list/delist classification and processing.

List and delist requests are classified set-based (one chunked ``SELECT ... WHERE phone_number IN``), the
accepted numbers are written in bulk with a ``NumberJob`` and one queued job, and the job later moves them
to their final state in bulk. Every write that classifies or changes number states serialises on one lock
(SQLite's write lock; a transaction-scoped advisory lock on PostgreSQL), because a number's ownership spans
accounts and two concurrent requests for one number must not both take it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Select, String, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from callerid import clock
from callerid.accounts import service as accounts
from callerid.call_reason import call_reason_problem
from callerid.config import Settings
from callerid.db.values import values_source
from callerid.db.write import lock_session
from callerid.display_text import display_problem, storage_problem
from callerid.failures import DomainError, InvalidInput, NotFound
from callerid.jobs import enqueue
from callerid.labels.shared import LABELS, get_label
from callerid.numbers.models import (
    ARCHIVED,
    DELIST,
    DELISTED,
    DELISTING,
    DRAFT,
    FAILED,
    FEATURE_SET_STATUSES,
    HELD_STATES,
    JOB_DONE,
    JOB_PROCESSING,
    LIST,
    LISTED,
    PENDING,
    VERIFIED,
    BusinessNumber,
    CallingOperation,
    CallReason,
    Department,
    FeatureSet,
    NumberJob,
    Operation,
    Process,
)
from callerid.phone import normalise_phone

log = structlog.get_logger("callerid.numbers")

JOB_KIND = "numbers.process"
# Bound parameters per IN (...) chunk; well under SQLite's and asyncpg's limits (32,766 / 32,767).
CHUNK = 1000
# Any constant: the key of the PostgreSQL advisory lock that serialises number-state writes.
NUMBER_STATES_LOCK = "number-states"  # every change of numbers' states takes it (Database.lock)
# Number states NN shows (SPEC §5.9 lists pending/listed/delisting; failed is shown so a client sees why).
VISIBLE_STATES = (PENDING, LISTED, DELISTING, FAILED)


class NumbersError(InvalidInput):
    """A rule broken while building the tree or a feature set (CLI and console show the message)."""


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_name(name: str, what: str, *, displayed: bool = False) -> str:
    """A tree or feature-set name, stripped; ``displayed`` names (phones show them) follow the display-text rule,
    the others need only be storable (callerid.display_text)."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise NumbersError(f"{what} name must be between 1 and 100 characters")
    problem = display_problem(name, f"{what} name") if displayed else storage_problem(name, f"{what} name")
    if problem is not None:
        raise NumbersError(problem)
    return name


async def _account(session: AsyncSession, account_id: uuid.UUID) -> Any:
    try:
        return await accounts.get_account(session, account_id)
    except accounts.NotFound as exc:
        raise NumbersError(str(exc)) from exc


# --- organisation tree ---------------------------------------------------------------------------------


async def create_department(session: AsyncSession, *, account_id: uuid.UUID, name: str) -> Department:
    await _account(session, account_id)
    department = Department(
        id=uuid.uuid4(), account_id=account_id, name=_check_name(name, "department"), created_at=clock.now()
    )
    session.add(department)
    await session.flush()
    return department


async def calling_operation(session: AsyncSession, name: str) -> CallingOperation:
    """The catalogue entry called ``name`` (case-insensitive), created on first use."""
    name = _check_name(name, "calling operation")
    found = await session.scalar(select(CallingOperation).where(func.lower(CallingOperation.name) == name.lower()))
    if found is not None:
        return found
    entry = CallingOperation(id=uuid.uuid4(), name=name, created_at=clock.now())
    session.add(entry)
    await session.flush()
    return entry


async def create_operation(
    session: AsyncSession, *, account_id: uuid.UUID, department_id: uuid.UUID, name: str, calling_operation_name: str
) -> tuple[Operation, CallingOperation]:
    await _account(session, account_id)
    department = await session.get(Department, department_id)
    if department is None or department.account_id != account_id:
        raise NumbersError(f"department {department_id} not found in this account")
    entry = await calling_operation(session, calling_operation_name)
    operation = Operation(
        id=uuid.uuid4(),
        account_id=account_id,
        department_id=department_id,
        calling_operation_id=entry.id,
        name=_check_name(name, "operation"),
        created_at=clock.now(),
    )
    session.add(operation)
    await session.flush()
    return operation, entry


async def create_process(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    operation_id: uuid.UUID,
    name: str,
    parent_id: uuid.UUID | None = None,
) -> Process:
    """A process of an operation, or with ``parent_id`` a sub-process of one of its processes (one level)."""
    await _account(session, account_id)
    operation = await session.get(Operation, operation_id)
    if operation is None or operation.account_id != account_id:
        raise NumbersError(f"operation {operation_id} not found in this account")
    if parent_id is not None:
        parent = await session.get(Process, parent_id)
        if parent is None or parent.account_id != account_id:
            raise NumbersError(f"process {parent_id} not found in this account")
        if parent.operation_id != operation_id:
            raise NumbersError(f"process {parent_id} belongs to another operation")
        if parent.parent_id is not None:
            raise NumbersError(f"process {parent_id} is a sub-process; sub-processes cannot have sub-processes")
    process = Process(
        id=uuid.uuid4(),
        account_id=account_id,
        operation_id=operation_id,
        parent_id=parent_id,
        name=_check_name(name, "process"),
        created_at=clock.now(),
    )
    session.add(process)
    await session.flush()
    return process


# --- feature sets ------------------------------------------------------------------------------------


async def create_feature_set(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    process_id: uuid.UUID,
    label_id: uuid.UUID,
    name: str | None = None,
    description: str = "",
    call_reason: str | None = None,
    call_me_back: bool = False,
    survey: bool = False,
    created_by_email: str | None = None,
) -> FeatureSet:
    """A draft feature set on a process or sub-process, with a static label (any type) of the same account.

    Without ``created_by_email`` the account's first admin is recorded (CLI-created sets).
    """
    await _account(session, account_id)
    process = await session.get(Process, process_id)
    if process is None or process.account_id != account_id:
        raise NumbersError(f"process {process_id} not found in this account")
    label = await get_label(session, account_id, label_id)
    if label is None:
        raise NumbersError(f"label {label_id} not found in this account")
    if len(description) > 500:
        raise NumbersError("description must be at most 500 characters")
    problem = storage_problem(description, "description")
    if problem is not None:
        raise NumbersError(problem)
    operation = await session.get(Operation, process.operation_id)
    assert operation is not None  # FK
    if name is None or not name.strip():
        count = await session.scalar(select(func.count()).where(FeatureSet.account_id == account_id))
        name = f"New Feature Set-{(count or 0) + 1}"
    name = _check_name(name, "feature set", displayed=True)  # before anything is written
    if created_by_email is None:
        admins = await accounts.admin_emails(session, account_id)
        created_by_email = admins[0] if admins else ""
    now = clock.now()
    reason_id: uuid.UUID | None = None
    if call_reason is not None:
        problem = call_reason_problem(call_reason, "call_reason")
        if problem is not None:
            raise NumbersError(problem)
        reason = CallReason(id=uuid.uuid4(), account_id=account_id, text=call_reason, created_at=now)
        session.add(reason)
        await session.flush()
        reason_id = reason.id
    feature_set = FeatureSet(
        id=uuid.uuid4(),
        account_id=account_id,
        process_id=process.id,
        root_process_id=process.parent_id or process.id,
        operation_id=operation.id,
        department_id=operation.department_id,
        name=name,
        description=description,
        status=DRAFT,
        label_id=label.id,
        call_reason_id=reason_id,
        call_me_back=call_me_back,
        survey=survey,
        created_by_email=created_by_email,
        created_at=now,
        updated_at=now,
    )
    session.add(feature_set)
    await session.flush()
    return feature_set


async def set_feature_set_status(
    session: AsyncSession, *, account_id: uuid.UUID, feature_set_id: uuid.UUID, status: str
) -> FeatureSet:
    if status not in FEATURE_SET_STATUSES:
        raise NumbersError(f"status must be one of {', '.join(FEATURE_SET_STATUSES)}")
    feature_set = await session.get(FeatureSet, feature_set_id)
    if feature_set is None or feature_set.account_id != account_id:
        raise NumbersError(f"feature set {feature_set_id} not found in this account")
    feature_set.status = status
    feature_set.updated_at = clock.now()
    await session.flush()
    return feature_set


async def feature_set_of(session: AsyncSession, account_id: uuid.UUID, feature_set_id: uuid.UUID) -> FeatureSet:
    """The account's feature set, or 404 (unknown and foreign ids look the same)."""
    feature_set = await session.get(FeatureSet, feature_set_id)
    if feature_set is None or feature_set.account_id != account_id:
        raise NotFound("feature set not found")
    return feature_set


@dataclass(frozen=True)
class TreeFilters:
    """FS/NN query filters (SPEC §5.6, §5.9); a process id also matches its sub-processes."""

    department_id: uuid.UUID | None = None
    operation_id: uuid.UUID | None = None
    process_id: uuid.UUID | None = None
    feature_set_id: uuid.UUID | None = None

    def predicates(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.department_id is not None:
            where.append(FeatureSet.department_id == self.department_id)
        if self.operation_id is not None:
            where.append(FeatureSet.operation_id == self.operation_id)
        if self.process_id is not None:
            where.append(or_(FeatureSet.process_id == self.process_id, FeatureSet.root_process_id == self.process_id))
        if self.feature_set_id is not None:
            where.append(FeatureSet.id == self.feature_set_id)
        return where


_Attached = aliased(Process, name="attached_process")
_Root = aliased(Process, name="root_process")


@dataclass(frozen=True)
class FeatureSetView:
    """A feature set with the names and ids of the tree above it (the FS item)."""

    feature_set: FeatureSet
    department_name: str
    calling_operation_id: uuid.UUID
    calling_operation_name: str
    process_name: str
    sub_process_name: str


def _feature_set_view_query() -> Select[Any]:
    return (
        select(
            FeatureSet,
            Department.name,
            CallingOperation.id,
            CallingOperation.name,
            _Root.name,
            _Attached.name,
        )
        .join(_Attached, _Attached.id == FeatureSet.process_id)
        .join(_Root, _Root.id == FeatureSet.root_process_id)
        .join(Department, Department.id == FeatureSet.department_id)
        .join(Operation, Operation.id == FeatureSet.operation_id)
        .join(CallingOperation, CallingOperation.id == Operation.calling_operation_id)
    )


def _to_view(row: Any) -> FeatureSetView:
    feature_set, department_name, calling_id, calling_name, root_name, attached_name = row
    is_sub = feature_set.process_id != feature_set.root_process_id
    return FeatureSetView(
        feature_set=feature_set,
        department_name=department_name,
        calling_operation_id=calling_id,
        calling_operation_name=calling_name,
        process_name=root_name,
        sub_process_name=attached_name if is_sub else "",
    )


async def feature_set_view(session: AsyncSession, feature_set_id: uuid.UUID) -> FeatureSetView:
    row = (await session.execute(_feature_set_view_query().where(FeatureSet.id == feature_set_id))).one()
    return _to_view(row)


async def list_feature_sets(
    session: AsyncSession, account_id: uuid.UUID, filters: TreeFilters, *, offset: int, limit: int
) -> tuple[list[FeatureSetView], int]:
    """One page of the account's feature sets, newest first, and the total count."""
    where = [FeatureSet.account_id == account_id, *filters.predicates()]
    total = await session.scalar(select(func.count()).select_from(FeatureSet).where(*where)) or 0
    rows = await session.execute(
        _feature_set_view_query()
        .where(*where)
        .order_by(FeatureSet.created_at.desc(), FeatureSet.id)
        .offset(offset)
        .limit(limit)
    )
    return [_to_view(row) for row in rows.all()], total


# --- number details (NN) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NumberView:
    phone_number: str
    phone_type: str
    status: str
    failure_reason: str | None
    account_id: uuid.UUID
    created_by_email: str
    department: str
    operation: str
    process: str
    subprocess: str
    feature_set_name: str
    call_me_back: bool
    label_name: str
    created_at: Any
    updated_at: Any


async def list_numbers(
    session: AsyncSession, account_id: uuid.UUID, filters: TreeFilters, *, offset: int, limit: int
) -> tuple[list[NumberView], int]:
    """One page of the account's numbers (newest first, ties by number) and the total count."""
    where = [
        BusinessNumber.account_id == account_id,
        BusinessNumber.status.in_(VISIBLE_STATES),
        *filters.predicates(),
    ]
    total = (
        await session.scalar(
            select(func.count())
            .select_from(BusinessNumber)
            .outerjoin(FeatureSet, FeatureSet.id == BusinessNumber.feature_set_id)
            .where(*where)
        )
        or 0
    )
    query = (
        select(
            BusinessNumber.phone_number,
            BusinessNumber.phone_type,
            BusinessNumber.status,
            BusinessNumber.failure_reason,
            BusinessNumber.account_id,
            BusinessNumber.created_by_email,
            BusinessNumber.created_at,
            BusinessNumber.updated_at,
            FeatureSet.name,
            FeatureSet.call_me_back,
            FeatureSet.process_id,
            FeatureSet.root_process_id,
            Department.name,
            CallingOperation.name,
            _Root.name,
            _Attached.name,
            LABELS.c.name,
        )
        .outerjoin(FeatureSet, FeatureSet.id == BusinessNumber.feature_set_id)
        .outerjoin(_Attached, _Attached.id == FeatureSet.process_id)
        .outerjoin(_Root, _Root.id == FeatureSet.root_process_id)
        .outerjoin(Department, Department.id == FeatureSet.department_id)
        .outerjoin(Operation, Operation.id == FeatureSet.operation_id)
        .outerjoin(CallingOperation, CallingOperation.id == Operation.calling_operation_id)
        .outerjoin(LABELS, LABELS.c.id == FeatureSet.label_id)
        .where(*where)
        .order_by(BusinessNumber.created_at.desc(), BusinessNumber.phone_number)
        .offset(offset)
        .limit(limit)
    )
    views = []
    for row in (await session.execute(query)).all():
        (phone_number, phone_type, status, failure_reason, account, email, created_at, updated_at) = row[:8]
        fs_name, cmb, process_id, root_id, dept, calling, root_name, attached_name, label_name = row[8:]
        views.append(
            NumberView(
                phone_number=phone_number,
                phone_type=phone_type,
                status=status,
                failure_reason=failure_reason,
                account_id=account,
                created_by_email=email,
                department=dept or "",
                operation=calling or "",
                process=root_name or "",
                subprocess=attached_name if process_id is not None and process_id != root_id else "",
                feature_set_name=fs_name or "",
                call_me_back=bool(cmb),
                label_name=label_name or "",
                created_at=created_at,
                updated_at=updated_at,
            )
        )
    return views, total


# --- list / delist (NL, ND) --------------------------------------------------------------------------

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
    if feature_set.status == ARCHIVED:
        raise InvalidInput("feature set is archived")
    account_id = feature_set.account_id
    valid, invalid = split_numbers(raw_numbers)
    await _lock_number_states(session)
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


# --- lookup ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListedIdentity:
    """What the app shows for a listed number: its feature set's static label and call reason."""

    label_id: uuid.UUID
    label_name: str
    logo_key: str
    call_reason: str | None
    feature_set_id: uuid.UUID
    feature_set_name: str


async def listed_identity(session: AsyncSession, caller: str) -> ListedIdentity | None:
    """The identity of a listed business number (a delisting one is still listed until its job is done)."""
    number = normalise_phone(caller)
    if number is None:
        return None
    row = (
        await session.execute(
            select(LABELS.c.id, LABELS.c.name, LABELS.c.logo_key, CallReason.text, FeatureSet.id, FeatureSet.name)
            .select_from(BusinessNumber)
            .join(FeatureSet, FeatureSet.id == BusinessNumber.feature_set_id)
            .join(LABELS, LABELS.c.id == FeatureSet.label_id)
            .outerjoin(CallReason, CallReason.id == FeatureSet.call_reason_id)
            .where(BusinessNumber.phone_number == number, BusinessNumber.status.in_((LISTED, DELISTING)))
        )
    ).first()
    if row is None:
        return None
    return ListedIdentity(*row)


@dataclass(frozen=True)
class ListedNumber:
    phone_number: str
    account_id: uuid.UUID
    feature_set_id: uuid.UUID
    feature_set_name: str
    call_me_back: bool
    survey: bool


async def listed_number(session: AsyncSession, phone_number: str) -> ListedNumber | None:
    """The listed number (normalised) with its account and feature-set flags, for engagement (CMB, surveys).

    A delisting number is listed until its job is done. ``listed_identity`` is the display-side twin.
    """
    row = (
        await session.execute(
            select(
                BusinessNumber.phone_number,
                BusinessNumber.account_id,
                FeatureSet.id,
                FeatureSet.name,
                FeatureSet.call_me_back,
                FeatureSet.survey,
            )
            .select_from(BusinessNumber)
            .join(FeatureSet, FeatureSet.id == BusinessNumber.feature_set_id)
            .where(BusinessNumber.phone_number == phone_number, BusinessNumber.status.in_((LISTED, DELISTING)))
        )
    ).first()
    return None if row is None else ListedNumber(*row)
