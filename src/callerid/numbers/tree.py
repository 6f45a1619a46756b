"""The organisation tree (departments > operations > processes) and feature sets, with their views and filters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from callerid import clock
from callerid.accounts import service as accounts
from callerid.call_reason import call_reason_problem
from callerid.display_text import storage_problem
from callerid.failures import NotFound
from callerid.labels.shared import get_label
from callerid.numbers.checks import NumbersError, _account, _check_name
from callerid.numbers.models import (
    DRAFT,
    FEATURE_SET_STATUSES,
    CallingOperation,
    CallReason,
    Department,
    FeatureSet,
    Operation,
    Process,
)


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
        if found.retired_at is not None:  # the operator retired it: no new operations (numbers.organisation)
            raise NumbersError(f"calling operation {found.name} is retired; choose another one")
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
    if department.archived_at is not None:
        raise NumbersError(f"department {department.name} is archived; restore it first")
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
    if operation.archived_at is not None:  # archiving marks the whole subtree, so this covers a parent process too
        raise NumbersError(f"operation {operation.name} is archived; restore it first")
    if parent_id is not None:
        parent = await session.get(Process, parent_id)
        if parent is None or parent.account_id != account_id:
            raise NumbersError(f"process {parent_id} not found in this account")
        if parent.operation_id != operation_id:
            raise NumbersError(f"process {parent_id} belongs to another operation")
        if parent.parent_id is not None:
            raise NumbersError(f"process {parent_id} is a sub-process; sub-processes cannot have sub-processes")
        if parent.archived_at is not None:
            raise NumbersError(f"process {parent.name} is archived; restore it first")
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


def check_feature_set_text(name: str | None, description: str, call_reason: str | None) -> None:
    """The rules ``create_feature_set`` applies to what is typed (name, description, static call reason), checked
    before a set can be made: the console's first-run setup keeps them as a draft until a label exists."""
    if len(description) > 500:
        raise NumbersError("description must be at most 500 characters")
    problem = storage_problem(description, "description")
    if problem is not None:
        raise NumbersError(problem)
    if name is not None and name.strip():
        _check_name(name, "feature set", displayed=True)
    if call_reason is not None:
        problem = call_reason_problem(call_reason, "call_reason")
        if problem is not None:
            raise NumbersError(problem)


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
    secure_branding: bool = False,
) -> FeatureSet:
    """A draft feature set on a process or sub-process, with a static label (any type) of the same account.

    Without ``created_by_email`` the account's first admin is recorded (CLI-created sets). ``secure_branding``: see
    ``set_secure_branding``.
    """
    await _account(session, account_id)
    process = await session.get(Process, process_id)
    if process is None or process.account_id != account_id:
        raise NumbersError(f"process {process_id} not found in this account")
    if process.archived_at is not None:
        raise NumbersError(f"process {process.name} is archived; restore it first")
    label = await get_label(session, account_id, label_id)
    if label is None:
        raise NumbersError(f"label {label_id} not found in this account")
    check_feature_set_text(name, description, call_reason)  # before anything is written
    operation = await session.get(Operation, process.operation_id)
    assert operation is not None  # FK
    if name is None or not name.strip():
        count = await session.scalar(select(func.count()).where(FeatureSet.account_id == account_id))
        name = f"New Feature Set-{(count or 0) + 1}"
    name = _check_name(name, "feature set", displayed=True)
    if created_by_email is None:
        admins = await accounts.admin_emails(session, account_id)
        created_by_email = admins[0] if admins else ""
    now = clock.now()
    reason_id: uuid.UUID | None = None
    if call_reason is not None:
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
        secure_branding=secure_branding,
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
    process = await session.get(Process, feature_set.process_id)
    if status != feature_set.status and process is not None and process.archived_at is not None:
        # Its node is archived (numbers.organisation): the set stays archived until the node is restored.
        raise NumbersError(f"process {process.name} is archived; restore it to change its feature sets")
    feature_set.status = status
    feature_set.updated_at = clock.now()
    await session.flush()
    return feature_set


async def update_feature_set(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    feature_set_id: uuid.UUID,
    process_id: uuid.UUID,
    label_id: uuid.UUID,
    name: str,
    description: str,
    status: str,
    call_reason: str | None,
    call_me_back: bool,
    survey: bool,
    secure_branding: bool | None = None,
) -> FeatureSet:
    """Set every field of a feature set (the console's edit form), checking all of them before writing anything.
    ``secure_branding`` None leaves it as it is (see ``set_secure_branding``).

    The static call reason is a row of its own whose id is on the wire (``call_reason_id``): a new text gets a new
    ``CallReason`` as ``create_feature_set`` makes one, the same text keeps its id, None removes it. Moving the set
    to another process or sub-process of the account moves the tree ids copied on it; its numbers follow it.
    """
    feature_set = await feature_set_of(session, account_id, feature_set_id)
    process = await session.get(Process, process_id)
    if process is None or process.account_id != account_id:
        raise NumbersError(f"process {process_id} not found in this account")
    if process.id != feature_set.process_id and process.archived_at is not None:
        raise NumbersError(f"process {process_id} is archived")
    current_process = (
        process if process.id == feature_set.process_id else await session.get(Process, feature_set.process_id)
    )
    if status != feature_set.status and current_process is not None and current_process.archived_at is not None:
        # Its node is archived (numbers.organisation): the set stays archived until the node is restored.
        raise NumbersError(f"process {current_process.name} is archived; restore it to change its feature sets")
    label = await get_label(session, account_id, label_id)
    if label is None:
        raise NumbersError(f"label {label_id} not found in this account")
    name = _check_name(name, "feature set", displayed=True)
    if len(description) > 500:
        raise NumbersError("description must be at most 500 characters")
    problem = storage_problem(description, "description")
    if problem is not None:
        raise NumbersError(problem)
    if status not in FEATURE_SET_STATUSES:
        raise NumbersError(f"status must be one of {', '.join(FEATURE_SET_STATUSES)}")
    current_reason = (
        await session.get(CallReason, feature_set.call_reason_id) if feature_set.call_reason_id is not None else None
    )
    reason_id = None
    if call_reason is not None:
        problem = call_reason_problem(call_reason, "call_reason")
        if problem is not None:
            raise NumbersError(problem)
        reason_id = current_reason.id if current_reason is not None and current_reason.text == call_reason else None
    operation = await session.get(Operation, process.operation_id)
    assert operation is not None  # FK
    # Every rule holds: now write.
    now = clock.now()
    if call_reason is not None and reason_id is None:
        reason = CallReason(id=uuid.uuid4(), account_id=account_id, text=call_reason, created_at=now)
        session.add(reason)
        await session.flush()
        reason_id = reason.id
    feature_set.process_id = process.id
    feature_set.root_process_id = process.parent_id or process.id
    feature_set.operation_id = operation.id
    feature_set.department_id = operation.department_id
    feature_set.label_id = label.id
    feature_set.name = name
    feature_set.description = description
    feature_set.status = status
    feature_set.call_reason_id = reason_id
    feature_set.call_me_back = call_me_back
    feature_set.survey = survey
    if secure_branding is not None:
        feature_set.secure_branding = secure_branding
    feature_set.updated_at = now
    await session.flush()
    return feature_set


async def set_secure_branding(
    session: AsyncSession, *, account_id: uuid.UUID, feature_set_id: uuid.UUID, enabled: bool
) -> FeatureSet:
    """Turn secure branding (issue 13, an extension; off by default) on or off for a feature set: when on, its
    numbers' identity is shown only for calls the business pre-announced with a call record for that receiver, and
    any other lookup is answered unverified and counted as a blocked attempt (``analytics.blocked``).

    Takes effect on the next lookup: the lookup reads the flag with the listing itself, which nothing caches.
    """
    feature_set = await feature_set_of(session, account_id, feature_set_id)
    if feature_set.secure_branding != enabled:
        feature_set.secure_branding = enabled
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
