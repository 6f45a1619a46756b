"""``callerid catalogue calling-operations``: the calling operations (Delivery, Sales, Collections, ...) that every
account's operations are bound to (SPEC §1.3, §11). The console offers the entries that are not retired; members
never create them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.cli.common import JSON_OPTION, emit, run_with_db
from callerid.config import Settings
from callerid.db import Database
from callerid.numbers import calling_operations as catalogue
from callerid.numbers.models import CallingOperation
from callerid.timefmt import iso_z

calling_operations_app = typer.Typer(
    help="The calling operations (Delivery, Sales, ...) operations are bound to; shared by every account.",
    no_args_is_help=True,
)
ENTRY_OPTION = typer.Option(..., "--entry", help="the entry's id or its current name")
NAME_OPTION = typer.Option(..., "--name", help="1-100 characters, unique (case-insensitive)")


def _edit(work: Callable[[AsyncSession], Awaitable[CallingOperation]]) -> dict[str, Any]:
    """One catalogue edit in its own transaction; a broken rule ends the command with its message."""

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.transaction() as session:
            return _entry_json(await work(session))

    return run_with_db(run)


def _entry_json(entry: CallingOperation, operations: int | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": str(entry.id),
        "name": entry.name,
        "retired": entry.retired_at is not None,
        "retired_at": iso_z(entry.retired_at) if entry.retired_at is not None else None,
        "created_at": iso_z(entry.created_at),
    }
    if operations is not None:
        shown["operations"] = operations
    return shown


@calling_operations_app.command("list")
def calling_operations_list(
    active: bool = typer.Option(False, "--active", help="only the entries new operations may choose"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Every entry with the number of operations bound to it (in all accounts)."""

    async def run(_: Settings, db: Database) -> list[catalogue.CatalogueEntry]:
        async with db.session() as session:
            return await catalogue.calling_operations(session, include_retired=not active)

    entries = run_with_db(run)
    emit(
        {"calling_operations": [_entry_json(e.entry, e.operations) for e in entries]},
        as_json,
        title="Calling operations",
    )


@calling_operations_app.command("add")
def calling_operations_add(name: str = NAME_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Add an entry; the console offers it for new operations at once."""
    emit(
        _edit(lambda session: catalogue.add_calling_operation(session, name)), as_json, title="Calling operation added"
    )


@calling_operations_app.command("rename")
def calling_operations_rename(entry: str = ENTRY_OPTION, name: str = NAME_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Rename an entry: every operation bound to it, in every account, shows the new name (FS, NN) at once."""
    renamed = _edit(lambda session: catalogue.rename_calling_operation(session, entry, name))
    emit(renamed, as_json, title="Calling operation renamed")


@calling_operations_app.command("retire")
def calling_operations_retire(entry: str = ENTRY_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Stop offering an entry for new operations; the operations bound to it keep it."""
    emit(
        _edit(lambda session: catalogue.retire_calling_operation(session, entry)),
        as_json,
        title="Calling operation retired",
    )


@calling_operations_app.command("restore")
def calling_operations_restore(entry: str = ENTRY_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Offer a retired entry for new operations again."""
    restored = _edit(lambda session: catalogue.restore_calling_operation(session, entry))
    emit(restored, as_json, title="Calling operation restored")
