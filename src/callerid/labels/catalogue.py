"""The operator's label-category catalogue (SPEC §10.2), free of HTTP.

A label carries its category and sub-category as bare integers, because that is what the wire shows. The
catalogue says which integers exist, what they are called and which sub-category belongs to which category, so
that the console can offer them in select boxes and a new label can only use a real pair. It is reference data
the operator edits (``callerid catalogue ...``); a label keeps its integers whatever later happens to the
catalogue, which only governs labels still to be made.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Executable, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.display_text import storage_problem
from callerid.labels.models import LabelCategory, LabelSubCategory
from callerid.labels.service import LabelError

MAX_ID = 2**31 - 1  # the id columns (and the labels' category columns) are 32-bit integers on PostgreSQL
NAME_MAX_CHARS = 100
DEFAULT_CATALOGUE_FILE = Path(__file__).with_name("default_catalogue.json")
# Keys a catalogue file may hold besides its categories ("about" is the packaged file's note to the reader).
_TOP_LEVEL_KEYS = frozenset({"categories", "about"})
_CATEGORY_KEYS = frozenset({"id", "name", "sub_categories"})
_SUB_CATEGORY_KEYS = frozenset({"id", "name"})


@dataclass(frozen=True)
class SubCategory:
    id: int
    name: str
    category_id: int

    def as_dict(self) -> dict[str, Any]:
        """As the catalogue file lists it (inside its category)."""
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    sub_categories: tuple[SubCategory, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """As the catalogue file lists it."""
        return {"id": self.id, "name": self.name, "sub_categories": [sub.as_dict() for sub in self.sub_categories]}


@dataclass(frozen=True)
class Catalogue:
    """Every category in id order, each with its sub-categories in id order."""

    categories: tuple[Category, ...]

    def category(self, category_id: int) -> Category | None:
        return next((category for category in self.categories if category.id == category_id), None)

    def sub_category(self, sub_category_id: int) -> SubCategory | None:
        return next(
            (sub for category in self.categories for sub in category.sub_categories if sub.id == sub_category_id),
            None,
        )

    def as_dict(self) -> dict[str, Any]:
        """The shape of ``default_catalogue.json``, which ``import_catalogue`` takes back."""
        return {"categories": [category.as_dict() for category in self.categories]}


# --- reading -----------------------------------------------------------------------------------------


async def load_catalogue(session: AsyncSession) -> Catalogue:
    """The whole catalogue (a few dozen rows), for the console's select boxes and the CLI."""
    categories = (await session.execute(select(LabelCategory.id, LabelCategory.name).order_by(LabelCategory.id))).all()
    subs = (
        await session.execute(
            select(LabelSubCategory.id, LabelSubCategory.name, LabelSubCategory.category_id).order_by(
                LabelSubCategory.id
            )
        )
    ).all()
    by_category: dict[int, list[SubCategory]] = {}
    for row in subs:
        by_category.setdefault(row.category_id, []).append(SubCategory(row.id, row.name, row.category_id))
    return Catalogue(tuple(Category(row.id, row.name, tuple(by_category.get(row.id, ()))) for row in categories))


async def export_catalogue(session: AsyncSession) -> dict[str, Any]:
    """The catalogue in the shape of ``default_catalogue.json`` (``{"categories": [...]}``)."""
    return (await load_catalogue(session)).as_dict()


def default_catalogue() -> dict[str, Any]:
    """The catalogue callerid ships with, as read from the packaged file."""
    data: dict[str, Any] = json.loads(DEFAULT_CATALOGUE_FILE.read_text(encoding="utf-8"))
    return data


# --- the rule for labels -----------------------------------------------------------------------------


async def check_category(
    session: AsyncSession, category: int | None, sub_category: int | None, *, required: bool
) -> None:
    """The one category rule for a new label (SPEC §10.2).

    A given category must be in the catalogue, and a given sub-category must be in it under that category. With
    ``required`` (the console) a category must be chosen, and a sub-category too when that category has any.
    Callers check first that the values are non-negative integers.
    """
    if category is None and required:
        raise LabelError("category is required")
    if sub_category is not None and category is None:
        raise LabelError("a sub-category needs a category")
    if category is None:
        return
    # Out-of-range numbers are simply absent (PostgreSQL would refuse them as 32-bit parameters).
    if not _in_range(category) or await session.get(LabelCategory, category) is None:
        raise LabelError(f"category {category} is not in the catalogue")
    if sub_category is None:
        first = select(LabelSubCategory.id).where(LabelSubCategory.category_id == category).limit(1)
        if required and await session.scalar(first) is not None:  # (an id may be 0)
            raise LabelError("sub-category is required")
        return
    owner = await session.get(LabelSubCategory, sub_category) if _in_range(sub_category) else None
    if owner is None:
        raise LabelError(f"sub-category {sub_category} is not in the catalogue")
    if owner.category_id != category:
        raise LabelError(f"sub-category {sub_category} does not belong to category {category}")


# --- the operator's edits ------------------------------------------------------------------------------
# Each runs in the caller's transaction. Names are stripped of surrounding spaces and compared ignoring case.


async def add_category(session: AsyncSession, category_id: int, name: str) -> Category:
    """Add a category without sub-categories."""
    category_id = _check_id(category_id, "category id")
    name = _check_name(name, "category name")
    catalogue = await load_catalogue(session)
    if catalogue.category(category_id) is not None:
        raise LabelError(f"category {category_id} is already in the catalogue")
    _check_free_category_name(catalogue, name, keep=None)
    await _write(session, insert(LabelCategory).values(id=category_id, name=name))
    return Category(category_id, name)


async def rename_category(session: AsyncSession, category_id: int, name: str) -> Category:
    name = _check_name(name, "category name")
    catalogue = await load_catalogue(session)
    category = _existing_category(catalogue, category_id)
    _check_free_category_name(catalogue, name, keep=category.id)
    await _write(session, update(LabelCategory).where(LabelCategory.id == category.id).values(name=name))
    return Category(category.id, name, category.sub_categories)


async def remove_category(session: AsyncSession, category_id: int) -> Category:
    """Remove a category with its sub-categories; returns what was removed.

    Allowed even when labels use it: they keep their integers (the catalogue governs new labels only). The last
    category cannot go, since the console requires one for every new label.
    """
    catalogue = await load_catalogue(session)
    category = _existing_category(catalogue, category_id)
    if len(catalogue.categories) == 1:
        raise LabelError("the catalogue needs at least one category")
    await _write(session, delete(LabelSubCategory).where(LabelSubCategory.category_id == category.id))
    await _write(session, delete(LabelCategory).where(LabelCategory.id == category.id))
    return category


async def add_sub_category(session: AsyncSession, category_id: int, sub_category_id: int, name: str) -> SubCategory:
    """Add a sub-category to an existing category; its id is unique across the whole catalogue."""
    sub_category_id = _check_id(sub_category_id, "sub-category id")
    name = _check_name(name, "sub-category name")
    catalogue = await load_catalogue(session)
    category = _existing_category(catalogue, category_id)
    taken = catalogue.sub_category(sub_category_id)
    if taken is not None:
        raise LabelError(
            f"sub-category {sub_category_id} is already in the catalogue (in category {taken.category_id})"
        )
    _check_free_sub_category_name(category, name, keep=None)
    await _write(session, insert(LabelSubCategory).values(id=sub_category_id, category_id=category.id, name=name))
    return SubCategory(sub_category_id, name, category.id)


async def rename_sub_category(session: AsyncSession, sub_category_id: int, name: str) -> SubCategory:
    name = _check_name(name, "sub-category name")
    catalogue = await load_catalogue(session)
    sub = _existing_sub_category(catalogue, sub_category_id)
    category = catalogue.category(sub.category_id)
    assert category is not None  # the foreign key
    _check_free_sub_category_name(category, name, keep=sub.id)
    await _write(session, update(LabelSubCategory).where(LabelSubCategory.id == sub.id).values(name=name))
    return SubCategory(sub.id, name, sub.category_id)


async def remove_sub_category(session: AsyncSession, sub_category_id: int) -> SubCategory:
    """Remove a sub-category; returns what was removed. Labels that use it keep their integers."""
    sub = _existing_sub_category(await load_catalogue(session), sub_category_id)
    await _write(session, delete(LabelSubCategory).where(LabelSubCategory.id == sub.id))
    return sub


async def import_catalogue(session: AsyncSession, data: Any) -> Catalogue:
    """Replace the whole catalogue with ``data`` (the shape ``export_catalogue`` gives).

    All of ``data`` is checked before anything is written, so a broken file changes nothing. Labels keep their
    integers even where the new catalogue no longer has them.
    """
    catalogue = parse_catalogue(data)
    await _write(session, delete(LabelSubCategory))
    await _write(session, delete(LabelCategory))
    await _write(session, insert(LabelCategory), [{"id": c.id, "name": c.name} for c in catalogue.categories])
    subs = [
        {"id": sub.id, "category_id": sub.category_id, "name": sub.name}
        for category in catalogue.categories
        for sub in category.sub_categories
    ]
    if subs:
        await _write(session, insert(LabelSubCategory), subs)
    return catalogue


async def reset_catalogue(session: AsyncSession) -> Catalogue:
    """Put back the catalogue callerid ships with (``default_catalogue.json``)."""
    return await import_catalogue(session, default_catalogue())


def parse_catalogue(data: Any) -> Catalogue:
    """Check a whole catalogue (as read from a JSON file) and return it sorted by id; the first broken rule
    raises, naming the field by its path in the file (``categories[2].sub_categories[0].id``)."""
    if not isinstance(data, dict) or "categories" not in data:
        raise LabelError('the catalogue must be a JSON object with a "categories" list')
    _check_keys(data, _TOP_LEVEL_KEYS, "the catalogue")
    entries = data["categories"]
    if not isinstance(entries, list):
        raise LabelError("categories must be a list")
    if not entries:
        raise LabelError("the catalogue needs at least one category")
    categories: list[Category] = []
    category_ids: dict[int, str] = {}
    category_names: dict[str, str] = {}
    sub_ids: dict[int, str] = {}
    for index, entry in enumerate(entries):
        where = f"categories[{index}]"
        if not isinstance(entry, dict):
            raise LabelError(f"{where} must be an object with id, name and sub_categories")
        _check_keys(entry, _CATEGORY_KEYS, where)
        category_id = _check_id(entry.get("id"), f"{where}.id")
        name = _check_name(entry.get("name"), f"{where}.name")
        _check_unique(category_ids, category_id, f"{where}.id {category_id}")
        _check_unique(category_names, name.casefold(), f'{where}.name "{name}"')
        sub_entries = entry.get("sub_categories", [])
        if not isinstance(sub_entries, list):
            raise LabelError(f"{where}.sub_categories must be a list")
        subs: list[SubCategory] = []
        sub_names: dict[str, str] = {}
        for sub_index, sub_entry in enumerate(sub_entries):
            sub_where = f"{where}.sub_categories[{sub_index}]"
            if not isinstance(sub_entry, dict):
                raise LabelError(f"{sub_where} must be an object with id and name")
            _check_keys(sub_entry, _SUB_CATEGORY_KEYS, sub_where)
            sub_id = _check_id(sub_entry.get("id"), f"{sub_where}.id")
            sub_name = _check_name(sub_entry.get("name"), f"{sub_where}.name")
            _check_unique(sub_ids, sub_id, f"{sub_where}.id {sub_id}")
            _check_unique(sub_names, sub_name.casefold(), f'{sub_where}.name "{sub_name}"')
            subs.append(SubCategory(sub_id, sub_name, category_id))
        categories.append(Category(category_id, name, tuple(sorted(subs, key=lambda sub: sub.id))))
    return Catalogue(tuple(sorted(categories, key=lambda category: category.id)))


# --- helpers -------------------------------------------------------------------------------------------


def _in_range(value: int) -> bool:
    return 0 <= value <= MAX_ID


def _check_id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not _in_range(value):
        raise LabelError(f"{field} must be an integer from 0 to {MAX_ID}")
    return value


def _check_name(value: Any, field: str) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(name) <= NAME_MAX_CHARS:
        raise LabelError(f"{field} must be between 1 and {NAME_MAX_CHARS} characters")
    problem = storage_problem(name, field)
    if problem is not None:
        raise LabelError(problem)
    return name


def _check_keys(entry: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(key) for key in entry if key not in allowed)
    if unknown:
        raise LabelError(f'{where} has an unknown field "{unknown[0]}" (allowed: {", ".join(sorted(allowed))})')


def _check_unique(seen: dict[Any, str], key: Any, what: str) -> None:
    """``what`` is e.g. ``categories[3].id 7``; ``seen`` maps each key to the path that used it first."""
    if key in seen:
        raise LabelError(f"{what} is used twice (also {seen[key]})")
    seen[key] = what.split(" ", 1)[0]


def _existing_category(catalogue: Catalogue, category_id: int) -> Category:
    category = catalogue.category(category_id)
    if category is None:
        raise LabelError(f"category {category_id} is not in the catalogue")
    return category


def _existing_sub_category(catalogue: Catalogue, sub_category_id: int) -> SubCategory:
    sub = catalogue.sub_category(sub_category_id)
    if sub is None:
        raise LabelError(f"sub-category {sub_category_id} is not in the catalogue")
    return sub


def _same_name(entries: Iterable[Category | SubCategory], name: str, keep: int | None) -> Category | SubCategory | None:
    folded = name.casefold()
    return next((entry for entry in entries if entry.id != keep and entry.name.casefold() == folded), None)


def _check_free_category_name(catalogue: Catalogue, name: str, *, keep: int | None) -> None:
    clash = _same_name(catalogue.categories, name, keep)
    if clash is not None:
        raise LabelError(f'category name "{name}" is already used by category {clash.id}')


def _check_free_sub_category_name(category: Category, name: str, *, keep: int | None) -> None:
    clash = _same_name(category.sub_categories, name, keep)
    if clash is not None:
        raise LabelError(
            f'sub-category name "{name}" is already used by sub-category {clash.id} of category {category.id}'
        )


async def _write(session: AsyncSession, statement: Executable, rows: list[dict[str, Any]] | None = None) -> None:
    """Run one write (``rows``: one per insert); a constraint broken by a concurrent edit becomes a message
    rather than a crash."""
    try:
        await session.execute(statement, rows)
    except IntegrityError:
        raise LabelError("the catalogue was changed by someone else at the same time; try again") from None
