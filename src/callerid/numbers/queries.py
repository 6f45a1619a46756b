"""Reading numbers: the number details listing (NN) and the look-ups of a listed number (caller-ID, Call Me Back)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.db import Database
from callerid.db.keyedreads import KeyedQuery
from callerid.db.values import in_values
from callerid.labels.shared import LABELS
from callerid.numbers.checks import VISIBLE_STATES
from callerid.numbers.models import (
    DELISTING,
    LISTED,
    BusinessNumber,
    CallingOperation,
    CallReason,
    Department,
    FeatureSet,
    Operation,
)
from callerid.numbers.tree import TreeFilters, _Attached, _Root
from callerid.phone import normalise_phone


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
    feature_set_id: uuid.UUID | None = None  # not on the wire (NN); the console links to the set


async def list_numbers(
    session: AsyncSession,
    account_id: uuid.UUID,
    filters: TreeFilters,
    *,
    offset: int,
    limit: int,
    extra: Sequence[ColumnElement[bool]] = (),
) -> tuple[list[NumberView], int]:
    """One page of the account's numbers (newest first, ties by number) and the total count.

    ``extra``: more conditions on ``BusinessNumber`` / ``FeatureSet`` (the console's status, number and subtree).
    """
    where = [
        BusinessNumber.account_id == account_id,
        BusinessNumber.status.in_(VISIBLE_STATES),
        *filters.predicates(),
        *extra,
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
            BusinessNumber.feature_set_id,
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
        (phone_number, phone_type, status, failure_reason, account, email, created_at, updated_at, fs_id) = row[:9]
        fs_name, cmb, process_id, root_id, dept, calling, root_name, attached_name, label_name = row[9:]
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
                feature_set_id=fs_id,
            )
        )
    return views, total


# --- lookup ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListedIdentity:
    """What the app shows for a listed number: its feature set's static label and call reason. ``secure_branding``
    (issue 13): shown only for calls the business pre-announced with a call record; ``account_id`` is whose
    number it is (a blocked attempt is counted there)."""

    label_id: uuid.UUID
    label_name: str
    logo_key: str
    call_reason: str | None
    feature_set_id: uuid.UUID
    feature_set_name: str
    account_id: uuid.UUID
    secure_branding: bool


def _listed_identity_query(where: Any) -> Any:
    # The one listing read of the lookup, also for secure branding: its flag and account come with the same row.
    return (
        select(
            BusinessNumber.phone_number,
            LABELS.c.id,
            LABELS.c.name,
            LABELS.c.logo_key,
            CallReason.text,
            FeatureSet.id,
            FeatureSet.name,
            BusinessNumber.account_id,
            FeatureSet.secure_branding,
        )
        .select_from(BusinessNumber)
        .join(FeatureSet, FeatureSet.id == BusinessNumber.feature_set_id)
        .join(LABELS, LABELS.c.id == FeatureSet.label_id)
        .outerjoin(CallReason, CallReason.id == FeatureSet.call_reason_id)
        .where(where, in_values(BusinessNumber.status, "listed_states"))
    )


# Built once: the caller-ID lookup runs it for every call without a personalised record. A delisting number is
# still listed until its job is done.
_LISTED_IDENTITY = KeyedQuery(
    one=_listed_identity_query(BusinessNumber.phone_number == bindparam("phone_number")).limit(1),
    many=_listed_identity_query(in_values(BusinessNumber.phone_number, "numbers")),
    parameter="numbers",
    key="phone_number",
    shared={"listed_states": [LISTED, DELISTING]},
)


async def listed_identity(db: Database, caller: str) -> ListedIdentity | None:
    """The identity of a listed business number (a delisting one is still listed until its job is done)."""
    number = normalise_phone(caller)
    if number is None:
        return None
    rows = await db.read_keyed(_LISTED_IDENTITY, [number])
    if not rows:
        return None
    row = rows[0]
    return ListedIdentity(*row[1:8], secure_branding=bool(row[8]))


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
