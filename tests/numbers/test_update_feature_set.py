"""``tree.update_feature_set`` (the console's edit, SPEC §10.3): every field checked before anything is written, the
static call reason as its own row (a new text is a new ``call_reason_id``), a move to another process carried into
FS's filters, and nothing half-written when a rule is broken."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from callerid.config import Settings
from callerid.db import Database
from callerid.failures import NotFound
from callerid.numbers import service
from callerid.numbers.models import CallReason, FeatureSet, Process
from callerid.numbers.tree import update_feature_set
from tests.conftest import Tenant, create_tenant
from tests.numbers.conftest import Api, Tree, make_tree


def fields_of(tree: Tree, **changes: Any) -> dict[str, Any]:
    return {
        "account_id": tree.account_id,
        "feature_set_id": tree.fs,
        "process_id": tree.process_id,
        "label_id": tree.label_id,
        "name": "Main set",
        "description": "",
        "status": "draft",
        "call_reason": "Your parcel is on its way",
        "call_me_back": True,
        "survey": False,
        **changes,
    }


async def update(db: Database, **fields: Any) -> FeatureSet:
    async with db.transaction() as session:
        return await update_feature_set(session, **fields)


async def snapshot(db: Database, feature_set_id: uuid.UUID) -> tuple[Any, ...]:
    async with db.session() as session:
        fs = await session.get(FeatureSet, feature_set_id)
        reasons = await session.scalar(select(func.count()).select_from(CallReason))
    assert fs is not None
    return (fs.name, fs.process_id, fs.label_id, fs.status, fs.call_reason_id, fs.call_me_back, fs.updated_at, reasons)


async def test_a_move_to_a_sub_process_shows_in_fs_filters(db: Database, tree: Tree, api: Api) -> None:
    moved = await update(
        db, **fields_of(tree, process_id=tree.sub_process_id, name="  Night set 2 ", status="published")
    )
    assert (moved.name, moved.status) == ("Night set 2", "published")
    assert (moved.process_id, moved.root_process_id) == (tree.sub_process_id, tree.process_id)
    assert (moved.operation_id, moved.department_id) == (tree.operation_id, tree.department_id)
    response = await api.feature_sets(process_id=str(tree.sub_process_id))
    items = {item["id"]: item for item in response.json()["feature_sets"]}
    assert items[str(tree.fs)]["sub_process_name"] == "Night" and items[str(tree.fs)]["status"] == "published"


async def test_the_call_reason_keeps_its_id_for_the_same_text_and_gets_a_new_row_for_a_new_one(
    db: Database, tree: Tree
) -> None:
    first = (await snapshot(db, tree.fs))[4]
    assert (await update(db, **fields_of(tree))).call_reason_id == first
    changed = await update(db, **fields_of(tree, call_reason="Your parcel is at the door"))
    assert changed.call_reason_id not in (None, first)
    async with db.session() as session:
        old = await session.get(CallReason, first)
        new = await session.get(CallReason, changed.call_reason_id)
    # The old row stays (records and payloads may name it); the new one holds the new text as given.
    assert old is not None and old.text == "Your parcel is on its way"
    assert new is not None and new.text == "Your parcel is at the door"
    assert (await update(db, **fields_of(tree, call_reason=None))).call_reason_id is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "feature set name must be between 1 and 100 characters"),
        ({"name": "Main\u202eset"}, "feature set name contains characters that cannot be displayed"),
        ({"description": "x" * 501}, "description must be at most 500 characters"),
        ({"description": "a\x00b"}, "description contains characters that cannot be stored"),
        ({"status": "deleted"}, "status must be one of draft, published, archived"),
        ({"call_reason": "short"}, "call_reason must be between 10 and 100 characters"),
        ({"call_reason": "Your parcel/box is here"}, "call_reason contains unsupported special characters"),
        ({"call_reason": "Your parcel is here."}, "call_reason cannot start or end with a space, '.', ',' or '-'"),
        ({"label_id": uuid.UUID(int=7)}, "label 00000000-0000-0000-0000-000000000007 not found in this account"),
        ({"process_id": uuid.UUID(int=8)}, "process 00000000-0000-0000-0000-000000000008 not found in this account"),
    ],
)
async def test_a_broken_rule_changes_nothing(db: Database, tree: Tree, changes: dict[str, Any], message: str) -> None:
    before = await snapshot(db, tree.fs)
    # The other fields change too, so a partial write would show.
    fields = fields_of(
        tree, **{"name": "Renamed", "call_reason": "A brand new reason", "status": "published", **changes}
    )
    with pytest.raises(service.NumbersError) as refused:
        await update(db, **fields)
    assert str(refused.value) == message
    assert await snapshot(db, tree.fs) == before


async def test_another_accounts_process_label_and_set_are_refused(db: Database, settings: Settings, tree: Tree) -> None:
    other: Tenant = await create_tenant(db, settings, name="Other Co")
    theirs = await make_tree(db, other.account_id, prefix="Their ")
    before = await snapshot(db, tree.fs)
    with pytest.raises(service.NumbersError, match="not found in this account"):
        await update(db, **fields_of(tree, process_id=theirs.process_id))
    with pytest.raises(service.NumbersError, match="not found in this account"):
        await update(db, **fields_of(tree, label_id=theirs.label_id))
    with pytest.raises(NotFound):
        await update(db, **fields_of(tree, feature_set_id=theirs.fs))
    assert await snapshot(db, tree.fs) == before


async def test_a_set_is_not_moved_onto_an_archived_process_but_stays_editable_on_its_own(
    db: Database, tree: Tree
) -> None:
    async with db.transaction() as session:
        sub = await session.get(Process, tree.sub_process_id)
        assert sub is not None
        sub.archived_at = datetime.now(UTC)
    with pytest.raises(service.NumbersError, match="is archived"):
        await update(db, **fields_of(tree, process_id=tree.sub_process_id))
    async with db.transaction() as session:
        process = await session.get(Process, tree.process_id)
        assert process is not None
        process.archived_at = datetime.now(UTC)
    assert (await update(db, **fields_of(tree, name="Still editable"))).name == "Still editable"
