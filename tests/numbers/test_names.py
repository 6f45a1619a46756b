"""Text of the number-management domain (callerid.display_text), on both databases: feature-set names and static
call reasons are shown on phones (display rule); tree names and descriptions need only be storable (no NUL)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from callerid.db import Database
from callerid.numbers import service
from tests.numbers.conftest import Api, Tree

CANNOT_DISPLAY = "contains characters that cannot be displayed"
CANNOT_STORE = "contains characters that cannot be stored"
UNDISPLAYABLE = {
    "NUL": "\x00",
    "newline": "\n",
    "RLO": "\u202e",
    "LRI": "\u2066",
    "ZWSP": "\u200b",
    "BOM": "\ufeff",
    "private use": "\ue000",
}


async def _feature_set(db: Database, tree: Tree, **kwargs: Any) -> uuid.UUID:
    async with db.transaction() as session:
        created = await service.create_feature_set(
            session, account_id=tree.account_id, process_id=tree.process_id, label_id=tree.label_id, **kwargs
        )
    return created.id


async def _refused(db: Database, tree: Tree, **kwargs: Any) -> str:
    with pytest.raises(service.NumbersError) as raised:
        await _feature_set(db, tree, **kwargs)
    return str(raised.value)


@pytest.mark.parametrize("char", UNDISPLAYABLE.values(), ids=UNDISPLAYABLE.keys())
async def test_feature_set_names_and_call_reasons_phones_cannot_display_are_refused(
    db: Database, tree: Tree, char: str
) -> None:
    assert await _refused(db, tree, name=f"Main{char}set") == f"feature set name {CANNOT_DISPLAY}"
    assert await _refused(db, tree, name="Main", call_reason=f"Your parcel{char} is here") == (
        f"call_reason {CANNOT_DISPLAY}"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("नमस्ते डिलीवरी", "आपका पार्सल रास्ते में है"),
        ("مرحبا", "طلبك في الطريق"),
        ("鲜花速递", "您的鲜花订单正在配送中"),
        ("🌸 Flowers 👨‍👩‍👧", "Your ❤️ parcel is on its way"),
    ],
)
async def test_feature_set_names_in_any_script_are_kept_exactly(
    api: Api, db: Database, tree: Tree, name: str, reason: str
) -> None:
    feature_set_id = await _feature_set(db, tree, name=name, call_reason=reason)
    listed = (await api.feature_sets(limit=100)).json()["feature_sets"]
    [item] = [entry for entry in listed if entry["id"] == str(feature_set_id)]
    assert item["name"] == name


async def test_tree_names_and_descriptions_with_a_nul_are_refused(db: Database, tree: Tree) -> None:
    assert await _refused(db, tree, name="Main", description="for\x00night") == f"description {CANNOT_STORE}"
    refusals = [
        (service.create_department, {"name": "Sa\x00les"}, f"department name {CANNOT_STORE}"),
        (
            service.create_operation,
            {"department_id": tree.department_id, "name": "Deli\x00very", "calling_operation_name": "Delivery"},
            f"operation name {CANNOT_STORE}",
        ),
        (
            service.create_operation,
            {"department_id": tree.department_id, "name": "Delivery", "calling_operation_name": "Deli\x00very"},
            f"calling operation name {CANNOT_STORE}",
        ),
        (
            service.create_process,
            {"operation_id": tree.operation_id, "name": "Re\x00turns"},
            f"process name {CANNOT_STORE}",
        ),
    ]
    for create, kwargs, message in refusals:
        with pytest.raises(service.NumbersError) as raised:
            async with db.transaction() as session:
                await create(session, account_id=tree.account_id, **kwargs)
        assert str(raised.value) == message
    # Not display text: a department may hold a tab (the console shows it as text), and keeps any script.
    async with db.transaction() as session:
        department = await service.create_department(session, account_id=tree.account_id, name="बिक्री\tSales")
    assert department.name == "बिक्री\tSales"


async def test_a_number_with_a_nul_is_an_invalid_number(api: Api, tree: Tree) -> None:
    response = await api.publish(tree.fs, ["9112345\x0067891"])
    assert response.status_code == 200
    assert response.json()["invalid_numbers"] == ["9112345\x0067891"]
