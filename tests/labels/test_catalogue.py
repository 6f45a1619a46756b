"""The label-category catalogue: reading it, the one rule for new labels, and the operator's edits (SPEC §10.2)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from callerid.config import Settings
from callerid.db import Database
from callerid.http import Page
from callerid.labels import catalogue, service
from callerid.labels.catalogue import Catalogue, Category, SubCategory
from tests.conftest import Tenant
from tests.labels.images import image_bytes

T = TypeVar("T")
DEFAULT = {"categories": catalogue.default_catalogue()["categories"]}


@pytest.fixture
async def cat_db(db: Database) -> AsyncIterator[Database]:
    """The database, with the default catalogue put back after the test (it is kept between tests)."""
    yield db
    async with db.transaction() as session:
        await catalogue.reset_catalogue(session)


async def edit(db: Database, change: Callable[..., Awaitable[T]], *args: Any) -> T:
    async with db.transaction() as session:
        return await change(session, *args)


async def current(db: Database) -> dict[str, Any]:
    async with db.session() as session:
        return await catalogue.export_catalogue(session)


async def refused(db: Database, change: Callable[..., Awaitable[Any]], *args: Any) -> str:
    """The message of an edit that must fail (and, being in a transaction, change nothing)."""
    with pytest.raises(service.LabelError) as raised:
        await edit(db, change, *args)
    return str(raised.value)


def category_of(data: dict[str, Any], category_id: int) -> dict[str, Any]:
    return next(c for c in data["categories"] if c["id"] == category_id)


# --- reading -----------------------------------------------------------------------------------------


async def test_the_default_catalogue_is_seeded_in_id_order(db: Database) -> None:
    async with db.session() as session:
        loaded = await catalogue.load_catalogue(session)
    assert [c.id for c in loaded.categories] == list(range(1, 13))
    assert sum(len(c.sub_categories) for c in loaded.categories) == 43
    for category in loaded.categories:
        ids = [sub.id for sub in category.sub_categories]
        assert ids == sorted(ids)
        assert {sub.category_id for sub in category.sub_categories} == {category.id}
    retail = loaded.category(10)
    assert retail is not None and retail.name == "Retail and e-commerce"
    assert loaded.sub_category(142) == SubCategory(142, "Flowers and gifts", 10)
    assert loaded.category(99) is None and loaded.sub_category(999) is None


async def test_export_is_the_packaged_file_without_its_note(db: Database) -> None:
    exported = await current(db)
    assert exported == DEFAULT
    assert set(exported) == {"categories"}
    assert set(exported["categories"][0]) == {"id", "name", "sub_categories"}
    assert set(exported["categories"][0]["sub_categories"][0]) == {"id", "name"}


# --- the rule for new labels ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "sub_category", "required", "message"),
    [
        (None, None, False, None),
        (10, None, False, None),
        (10, 142, False, None),
        (10, 142, True, None),
        (None, None, True, "category is required"),
        (10, None, True, "sub-category is required"),
        (None, 142, False, "a sub-category needs a category"),
        (None, 142, True, "category is required"),
        (99, None, False, "category 99 is not in the catalogue"),
        (99, 142, True, "category 99 is not in the catalogue"),
        (3_000_000_000, None, False, "category 3000000000 is not in the catalogue"),
        (10, 101, False, "sub-category 101 does not belong to category 10"),
        (10, 101, True, "sub-category 101 does not belong to category 10"),
        (10, 999, False, "sub-category 999 is not in the catalogue"),
        (10, 3_000_000_000, False, "sub-category 3000000000 is not in the catalogue"),
    ],
)
async def test_check_category(
    db: Database, category: int | None, sub_category: int | None, required: bool, message: str | None
) -> None:
    async with db.session() as session:
        if message is None:
            await catalogue.check_category(session, category, sub_category, required=required)
            return
        with pytest.raises(service.LabelError) as raised:
            await catalogue.check_category(session, category, sub_category, required=required)
    assert str(raised.value) == message


async def test_a_category_without_sub_categories_needs_none(cat_db: Database) -> None:
    await edit(cat_db, catalogue.add_category, 13, "Charity")
    async with cat_db.session() as session:
        await catalogue.check_category(session, 13, None, required=True)


async def test_labels_keep_their_numbers_when_the_catalogue_drops_them(
    cat_db: Database, settings: Settings, tenant: Tenant
) -> None:
    async with cat_db.transaction() as session:
        label = await service.create_label(
            session,
            settings,
            account_id=tenant.account_id,
            name="FlowerEra",
            logo=image_bytes(),
            category=10,
            sub_category=142,
            require_category=True,
        )
    removed = await edit(cat_db, catalogue.remove_category, 10)
    assert [sub.id for sub in removed.sub_categories] == [141, 142, 143, 144, 145]
    async with cat_db.session() as session:
        labels = await service.list_dynamic_labels(session, tenant.account_id, Page(1, 10))
    assert [(lb.id, lb.category, lb.sub_category) for lb in labels] == [(label.id, 10, 142)]
    # ... but no new label can use them
    with pytest.raises(service.LabelError, match=r"^category 10 is not in the catalogue$"):
        async with cat_db.transaction() as session:
            await service.create_label(
                session, settings, account_id=tenant.account_id, name="Other", logo=image_bytes(), category=10
            )


# --- categories ----------------------------------------------------------------------------------------


async def test_add_rename_and_remove_a_category(cat_db: Database) -> None:
    added = await edit(cat_db, catalogue.add_category, 13, "  Charity  ")
    assert added == Category(13, "Charity", ())
    assert category_of(await current(cat_db), 13) == {"id": 13, "name": "Charity", "sub_categories": []}

    renamed = await edit(cat_db, catalogue.rename_category, 13, "Charities")
    assert renamed == Category(13, "Charities", ())
    assert await edit(cat_db, catalogue.rename_category, 13, "CHARITIES") == Category(13, "CHARITIES", ())
    # a rename keeps the sub-categories
    retail = await edit(cat_db, catalogue.rename_category, 10, "Shops")
    assert (retail.name, [sub.id for sub in retail.sub_categories]) == ("Shops", [141, 142, 143, 144, 145])

    assert await edit(cat_db, catalogue.remove_category, 13) == Category(13, "CHARITIES", ())
    removed = await edit(cat_db, catalogue.remove_category, 10)
    assert removed.name == "Shops"
    after = await current(cat_db)
    assert [c["id"] for c in after["categories"]] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
    async with cat_db.session() as session:
        assert (await catalogue.load_catalogue(session)).sub_category(142) is None  # went with its category


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((10, "Charity"), "category 10 is already in the catalogue"),
        ((13, "retail AND e-commerce"), 'category name "retail AND e-commerce" is already used by category 10'),
        ((13, ""), "category name must be between 1 and 100 characters"),
        ((13, "   "), "category name must be between 1 and 100 characters"),
        ((13, "x" * 101), "category name must be between 1 and 100 characters"),
        ((13, "Char\x00ity"), "category name contains characters that cannot be stored"),
        ((-1, "Charity"), "category id must be an integer from 0 to 2147483647"),
        ((2**31, "Charity"), "category id must be an integer from 0 to 2147483647"),
        ((True, "Charity"), "category id must be an integer from 0 to 2147483647"),
    ],
)
async def test_adding_a_category_is_checked(cat_db: Database, args: tuple[Any, ...], message: str) -> None:
    assert await refused(cat_db, catalogue.add_category, *args) == message
    assert await current(cat_db) == DEFAULT


async def test_names_of_100_characters_and_id_0_are_accepted(cat_db: Database) -> None:
    assert await edit(cat_db, catalogue.add_category, 0, "x" * 100) == Category(0, "x" * 100, ())
    assert (await current(cat_db))["categories"][0] == {"id": 0, "name": "x" * 100, "sub_categories": []}


@pytest.mark.parametrize(
    ("change", "args", "message"),
    [
        (catalogue.rename_category, (99, "Charity"), "category 99 is not in the catalogue"),
        (catalogue.rename_category, (10, "insurance"), 'category name "insurance" is already used by category 2'),
        (catalogue.rename_category, (10, " "), "category name must be between 1 and 100 characters"),
        (catalogue.remove_category, (99,), "category 99 is not in the catalogue"),
    ],
)
async def test_renaming_and_removing_a_category_are_checked(
    cat_db: Database, change: Callable[..., Awaitable[Any]], args: tuple[Any, ...], message: str
) -> None:
    assert await refused(cat_db, change, *args) == message
    assert await current(cat_db) == DEFAULT


async def test_the_last_category_cannot_be_removed(cat_db: Database) -> None:
    only = {"categories": [{"id": 1, "name": "Everything", "sub_categories": []}]}
    await edit(cat_db, catalogue.import_catalogue, only)
    assert await refused(cat_db, catalogue.remove_category, 1) == "the catalogue needs at least one category"
    assert await current(cat_db) == only


# --- sub-categories -------------------------------------------------------------------------------------


async def test_add_rename_and_remove_a_sub_category(cat_db: Database) -> None:
    added = await edit(cat_db, catalogue.add_sub_category, 10, 146, " Books ")
    assert added == SubCategory(146, "Books", 10)
    # names are unique within a category only
    assert await edit(cat_db, catalogue.add_sub_category, 1, 106, "Books") == SubCategory(106, "Books", 1)
    assert category_of(await current(cat_db), 10)["sub_categories"][-1] == {"id": 146, "name": "Books"}

    assert await edit(cat_db, catalogue.rename_sub_category, 146, "Books and music") == SubCategory(
        146, "Books and music", 10
    )
    assert await edit(cat_db, catalogue.rename_sub_category, 146, "BOOKS AND MUSIC") == SubCategory(
        146, "BOOKS AND MUSIC", 10
    )
    assert await edit(cat_db, catalogue.remove_sub_category, 146) == SubCategory(146, "BOOKS AND MUSIC", 10)
    assert await edit(cat_db, catalogue.remove_sub_category, 106) == SubCategory(106, "Books", 1)
    assert await current(cat_db) == DEFAULT


async def test_sub_category_0_is_required_like_any_other(cat_db: Database) -> None:
    await edit(
        cat_db,
        catalogue.import_catalogue,
        {"categories": [{"id": 0, "name": "Zero", "sub_categories": [{"id": 0, "name": "Nil"}]}]},
    )
    async with cat_db.session() as session:
        with pytest.raises(service.LabelError, match=r"^sub-category is required$"):
            await catalogue.check_category(session, 0, None, required=True)
        await catalogue.check_category(session, 0, 0, required=True)


async def test_removing_every_sub_category_makes_none_required(cat_db: Database) -> None:
    for sub_id in (181, 182, 183):
        await edit(cat_db, catalogue.remove_sub_category, sub_id)
    assert category_of(await current(cat_db), 8) == {"id": 8, "name": "Government and utilities", "sub_categories": []}
    async with cat_db.session() as session:
        await catalogue.check_category(session, 8, None, required=True)


@pytest.mark.parametrize(
    ("change", "args", "message"),
    [
        (catalogue.add_sub_category, (99, 146, "Books"), "category 99 is not in the catalogue"),
        (
            catalogue.add_sub_category,
            (1, 142, "Books"),
            "sub-category 142 is already in the catalogue (in category 10)",
        ),
        (
            catalogue.add_sub_category,
            (10, 146, "fashion"),
            'sub-category name "fashion" is already used by sub-category 141 of category 10',
        ),
        (catalogue.add_sub_category, (10, -5, "Books"), "sub-category id must be an integer from 0 to 2147483647"),
        (catalogue.add_sub_category, (10, 146, ""), "sub-category name must be between 1 and 100 characters"),
        (catalogue.add_sub_category, (10, 146, "x" * 101), "sub-category name must be between 1 and 100 characters"),
        (catalogue.rename_sub_category, (999, "Books"), "sub-category 999 is not in the catalogue"),
        (
            catalogue.rename_sub_category,
            (142, "ELECTRONICS"),
            'sub-category name "ELECTRONICS" is already used by sub-category 143 of category 10',
        ),
        (catalogue.rename_sub_category, (142, "\t"), "sub-category name must be between 1 and 100 characters"),
        (
            catalogue.rename_sub_category,
            (142, "Bo\x00oks"),
            "sub-category name contains characters that cannot be stored",
        ),
        (catalogue.remove_sub_category, (999,), "sub-category 999 is not in the catalogue"),
    ],
)
async def test_sub_category_edits_are_checked(
    cat_db: Database, change: Callable[..., Awaitable[Any]], args: tuple[Any, ...], message: str
) -> None:
    assert await refused(cat_db, change, *args) == message
    assert await current(cat_db) == DEFAULT


# --- import, export, reset ------------------------------------------------------------------------------

SMALL = {
    "categories": [
        {"id": 7, "name": "Zoo", "sub_categories": [{"id": 72, "name": "Lions"}, {"id": 71, "name": "Tigers"}]},
        {"id": 3, "name": "Bakery", "sub_categories": []},
        {"id": 5, "name": "Garden"},
    ]
}


async def test_import_replaces_the_whole_catalogue_sorted_by_id(cat_db: Database) -> None:
    imported = await edit(cat_db, catalogue.import_catalogue, SMALL)
    expected = {
        "categories": [
            {"id": 3, "name": "Bakery", "sub_categories": []},
            {"id": 5, "name": "Garden", "sub_categories": []},
            {"id": 7, "name": "Zoo", "sub_categories": [{"id": 71, "name": "Tigers"}, {"id": 72, "name": "Lions"}]},
        ]
    }
    assert imported == Catalogue(
        (
            Category(3, "Bakery"),
            Category(5, "Garden"),
            Category(7, "Zoo", (SubCategory(71, "Tigers", 7), SubCategory(72, "Lions", 7))),
        )
    )
    assert await current(cat_db) == expected
    # what export gives, import takes back unchanged
    await edit(cat_db, catalogue.import_catalogue, await current(cat_db))
    assert await current(cat_db) == expected


async def test_reset_restores_the_default(cat_db: Database) -> None:
    await edit(cat_db, catalogue.import_catalogue, SMALL)
    await edit(cat_db, catalogue.add_sub_category, 3, 142, "Bread")
    restored = await edit(cat_db, catalogue.reset_catalogue)
    assert restored.as_dict() == DEFAULT
    assert await current(cat_db) == DEFAULT
    async with cat_db.session() as session:
        await catalogue.check_category(session, 10, 142, required=True)


def broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The default catalogue with one thing broken (late in the file: the valid part before it is not kept)."""
    data = copy.deepcopy(catalogue.default_catalogue())
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], 'the catalogue must be a JSON object with a "categories" list'),
        ({"about": "x"}, 'the catalogue must be a JSON object with a "categories" list'),
        ({"categories": {}}, "categories must be a list"),
        ({"categories": []}, "the catalogue needs at least one category"),
        (
            {"categories": [], "version": 2},
            'the catalogue has an unknown field "version" (allowed: about, categories)',
        ),
        ({"categories": ["Banking"]}, "categories[0] must be an object with id, name and sub_categories"),
        (broken(lambda d: d["categories"][11].pop("id")), "categories[11].id must be an integer from 0 to 2147483647"),
        (
            broken(lambda d: d["categories"][11].update(id="12")),
            "categories[11].id must be an integer from 0 to 2147483647",
        ),
        (
            broken(lambda d: d["categories"][11].update(id=12.0)),
            "categories[11].id must be an integer from 0 to 2147483647",
        ),
        (
            broken(lambda d: d["categories"][11].update(name=None)),
            "categories[11].name must be between 1 and 100 characters",
        ),
        (
            broken(lambda d: d["categories"][11].update(subcategories=[])),
            'categories[11] has an unknown field "subcategories" (allowed: id, name, sub_categories)',
        ),
        (
            broken(lambda d: d["categories"][11].update(id=1)),
            "categories[11].id 1 is used twice (also categories[0].id)",
        ),
        (
            broken(lambda d: d["categories"][11].update(name="INSURANCE")),
            'categories[11].name "INSURANCE" is used twice (also categories[1].name)',
        ),
        (
            broken(lambda d: d["categories"][11].update(sub_categories={})),
            "categories[11].sub_categories must be a list",
        ),
        (
            broken(lambda d: d["categories"][11]["sub_categories"].append(7)),
            "categories[11].sub_categories[3] must be an object with id and name",
        ),
        (
            broken(lambda d: d["categories"][11]["sub_categories"].append({"id": 101, "name": "Again"})),
            "categories[11].sub_categories[3].id 101 is used twice (also categories[0].sub_categories[0].id)",
        ),
        (
            broken(lambda d: d["categories"][11]["sub_categories"].append({"id": 214, "name": "other"})),
            'categories[11].sub_categories[3].name "other" is used twice (also categories[11].sub_categories[2].name)',
        ),
        (
            broken(lambda d: d["categories"][11]["sub_categories"].append({"id": 214, "name": "Other", "x": 1})),
            'categories[11].sub_categories[3] has an unknown field "x" (allowed: id, name)',
        ),
        (
            broken(lambda d: d["categories"][11]["sub_categories"].append({"id": -1, "name": "Minus"})),
            "categories[11].sub_categories[3].id must be an integer from 0 to 2147483647",
        ),
        (
            broken(lambda d: d["categories"][11]["sub_categories"].append({"id": 214, "name": "y" * 101})),
            "categories[11].sub_categories[3].name must be between 1 and 100 characters",
        ),
    ],
)
async def test_a_broken_import_changes_nothing(cat_db: Database, data: Any, message: str) -> None:
    await edit(cat_db, catalogue.import_catalogue, SMALL)
    with pytest.raises(service.LabelError) as raised:
        await edit(cat_db, catalogue.import_catalogue, data)
    assert str(raised.value) == message
    assert await current(cat_db) == catalogue.parse_catalogue(SMALL).as_dict()
