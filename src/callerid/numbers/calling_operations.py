"""The operator's calling-operation catalogue (SPEC §1.3, §11): the entries an operation is bound to (Delivery,
Sales, Collections, ...), shared by every account and edited with ``callerid catalogue calling-operations``.

Members never create entries; the console offers the entries that are not retired. ``numbers.tree`` keeps its
create-on-first-use for the CLI's ``operations create --calling-operation NAME`` (refusing retired names).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.failures import NotFound
from callerid.numbers.checks import _check_name
from callerid.numbers.models import CallingOperation, Operation
from callerid.numbers.organisation import OrganisationError


@dataclass(frozen=True)
class CatalogueEntry:
    entry: CallingOperation
    operations: int  # operations bound to it, in every account

    @property
    def retired(self) -> bool:
        return self.entry.retired_at is not None


async def calling_operations(session: AsyncSession, *, include_retired: bool = True) -> list[CatalogueEntry]:
    """The catalogue by name; without ``include_retired``, what a new operation may choose from."""
    used = (
        select(Operation.calling_operation_id, func.count().label("operations"))
        .group_by(Operation.calling_operation_id)
        .subquery()
    )
    query = (
        select(CallingOperation, func.coalesce(used.c.operations, 0))
        .outerjoin(used, used.c.calling_operation_id == CallingOperation.id)
        .order_by(func.lower(CallingOperation.name), CallingOperation.name)
    )
    if not include_retired:
        query = query.where(CallingOperation.retired_at.is_(None))
    return [CatalogueEntry(entry, int(count)) for entry, count in (await session.execute(query)).all()]


async def find_calling_operation(session: AsyncSession, entry: str) -> CallingOperation:
    """The entry with this id, or else this name (case-insensitive)."""
    try:
        found = await session.get(CallingOperation, uuid.UUID(entry.strip()))
    except ValueError:
        found = await session.scalar(
            select(CallingOperation).where(func.lower(CallingOperation.name) == entry.strip().lower())
        )
    if found is None:
        raise NotFound(f"calling operation {entry.strip()!r} not found")
    return found


async def _unique_entry_name(session: AsyncSession, name: str, *, skip: uuid.UUID | None = None) -> str:
    name = _check_name(name, "calling operation")
    where = [func.lower(CallingOperation.name) == name.lower()]
    if skip is not None:
        where.append(CallingOperation.id != skip)
    taken = await session.scalar(select(CallingOperation.name).where(*where).limit(1))
    if taken is not None:
        raise OrganisationError(f"calling operation {taken} exists already", "name")
    return name


async def add_calling_operation(session: AsyncSession, name: str) -> CallingOperation:
    entry = CallingOperation(id=uuid.uuid4(), name=await _unique_entry_name(session, name), created_at=clock.now())
    session.add(entry)
    await session.flush()
    return entry


async def rename_calling_operation(session: AsyncSession, entry: str, name: str) -> CallingOperation:
    """Every operation bound to it shows the new name at once (FS ``calling_operation_name``, NN ``operation``)."""
    found = await find_calling_operation(session, entry)
    found.name = await _unique_entry_name(session, name, skip=found.id)
    await session.flush()
    return found


async def retire_calling_operation(session: AsyncSession, entry: str) -> CallingOperation:
    """No longer offered for new operations; the operations bound to it keep it."""
    found = await find_calling_operation(session, entry)
    if found.retired_at is not None:
        raise OrganisationError(f"calling operation {found.name} is retired already")
    found.retired_at = clock.now()
    await session.flush()
    return found


async def restore_calling_operation(session: AsyncSession, entry: str) -> CallingOperation:
    found = await find_calling_operation(session, entry)
    if found.retired_at is None:
        raise OrganisationError(f"calling operation {found.name} is not retired")
    found.retired_at = None
    await session.flush()
    return found
