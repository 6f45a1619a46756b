"""``callerid catalogue``: the label categories and sub-categories new labels choose from (SPEC §10.2).

Labels keep their integers whatever is changed here; the catalogue only governs labels still to be made.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.cli.calling_operations import calling_operations_app
from callerid.cli.common import JSON_OPTION, emit, fail, run_with_db
from callerid.config import Settings
from callerid.db import Database
from callerid.labels import catalogue

catalogue_app = typer.Typer(
    help="The catalogue of label categories and sub-categories (integers) that new labels choose from.",
    no_args_is_help=True,
)
catalogue_app.add_typer(calling_operations_app, name="calling-operations")

T = TypeVar("T")
ID_HELP = "an integer from 0 to 2147483647"


def _in_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one catalogue edit in its own transaction; a broken rule ends the command with its message."""

    async def run(settings: Settings, db: Database) -> T:
        async with db.transaction() as session:
            return await work(session)

    return run_with_db(run)


def _sub_category_json(sub: catalogue.SubCategory) -> dict[str, Any]:
    return {"id": sub.id, "name": sub.name, "category": sub.category_id}


def _counts(value: catalogue.Catalogue) -> dict[str, Any]:
    return {
        "categories": len(value.categories),
        "sub_categories": sum(len(category.sub_categories) for category in value.categories),
    }


@catalogue_app.command("list")
def catalogue_list(as_json: bool = JSON_OPTION) -> None:
    """Show every category with its sub-categories (the numbers ``callerid labels create`` takes)."""

    async def run(settings: Settings, db: Database) -> catalogue.Catalogue:
        async with db.session() as session:
            return await catalogue.load_catalogue(session)

    value = run_with_db(run)
    if as_json:
        emit(value.as_dict(), True)
        return
    # A tree for people: "10 Retail and e-commerce" with "142: Flowers and gifts" under it.
    tree: dict[str, Any] = {
        f"{category.id} {category.name}": {str(sub.id): sub.name for sub in category.sub_categories}
        or "(no sub-categories)"
        for category in value.categories
    }
    emit(tree, False, title="Label catalogue (category, then sub-category: name)")


@catalogue_app.command("export")
def catalogue_export(
    file: Path | None = typer.Option(None, "--file", help="write the catalogue to this JSON file (default: stdout)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the catalogue as JSON (the shape ``import`` takes), or write it to ``--file``."""

    async def run(settings: Settings, db: Database) -> catalogue.Catalogue:
        async with db.session() as session:
            return await catalogue.load_catalogue(session)

    value = run_with_db(run)
    if file is None:
        emit(value.as_dict(), True)
        return
    try:
        file.write_text(json.dumps(value.as_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {str(file)!r}: {exc.strerror or exc}")
    emit({"file": str(file), **_counts(value)}, as_json, title="Catalogue exported")


@catalogue_app.command("import")
def catalogue_import(
    file: Path = typer.Option(..., "--file", help="a JSON file in the shape `callerid catalogue export` writes"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Replace the whole catalogue with the file's; nothing changes unless all of it is valid."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"cannot read {str(file)!r}: {exc.strerror or exc}")
    except (UnicodeDecodeError, ValueError) as exc:
        fail(f"{str(file)!r} is not a JSON file: {exc}")
    imported = _in_transaction(lambda session: catalogue.import_catalogue(session, data))
    emit(_counts(imported), as_json, title="Catalogue imported")


@catalogue_app.command("reset")
def catalogue_reset(as_json: bool = JSON_OPTION) -> None:
    """Put back the catalogue callerid ships with."""
    restored = _in_transaction(catalogue.reset_catalogue)
    emit(_counts(restored), as_json, title="Catalogue reset to the default")


@catalogue_app.command("add-category")
def add_category(
    category_id: int = typer.Option(..., "--id", help=ID_HELP),
    name: str = typer.Option(..., "--name", help="1-100 characters, unique"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a category (then add its sub-categories with ``add-sub-category``)."""
    added = _in_transaction(lambda session: catalogue.add_category(session, category_id, name))
    emit(added.as_dict(), as_json, title="Category added")


@catalogue_app.command("rename-category")
def rename_category(
    category_id: int = typer.Option(..., "--id", help="the category's number"),
    name: str = typer.Option(..., "--name", help="1-100 characters, unique"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Rename a category (labels refer to it by number, so they follow)."""
    renamed = _in_transaction(lambda session: catalogue.rename_category(session, category_id, name))
    emit(renamed.as_dict(), as_json, title="Category renamed")


@catalogue_app.command("remove-category")
def remove_category(
    category_id: int = typer.Option(..., "--id", help="the category's number"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove a category and its sub-categories. Labels that use it keep their numbers."""
    removed = _in_transaction(lambda session: catalogue.remove_category(session, category_id))
    emit(removed.as_dict(), as_json, title="Category removed")


@catalogue_app.command("add-sub-category")
def add_sub_category(
    category_id: int = typer.Option(..., "--category", help="the number of the category it belongs to"),
    sub_category_id: int = typer.Option(..., "--id", help=f"{ID_HELP}, unique across all sub-categories"),
    name: str = typer.Option(..., "--name", help="1-100 characters, unique within its category"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a sub-category to a category."""
    added = _in_transaction(lambda session: catalogue.add_sub_category(session, category_id, sub_category_id, name))
    emit(_sub_category_json(added), as_json, title="Sub-category added")


@catalogue_app.command("rename-sub-category")
def rename_sub_category(
    sub_category_id: int = typer.Option(..., "--id", help="the sub-category's number"),
    name: str = typer.Option(..., "--name", help="1-100 characters, unique within its category"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Rename a sub-category."""
    renamed = _in_transaction(lambda session: catalogue.rename_sub_category(session, sub_category_id, name))
    emit(_sub_category_json(renamed), as_json, title="Sub-category renamed")


@catalogue_app.command("remove-sub-category")
def remove_sub_category(
    sub_category_id: int = typer.Option(..., "--id", help="the sub-category's number"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove a sub-category. Labels that use it keep their numbers."""
    removed = _in_transaction(lambda session: catalogue.remove_sub_category(session, sub_category_id))
    emit(_sub_category_json(removed), as_json, title="Sub-category removed")
