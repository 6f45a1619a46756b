"""The organisation tree's services (numbers.organisation) and the calling-operation catalogue
(numbers.calling_operations), on both databases; and the catalogue's CLI (`callerid catalogue calling-operations`).

Archiving is all or nothing: refused while any feature set below holds numbers, else the node, its subtree and their
feature sets together; restoring brings back exactly what went together. Archived nodes take nothing new, whoever
asks (the CLI's tree commands too), and are never offered as a choice.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from callerid import clock
from callerid.accounts import members
from callerid.accounts.permissions import ADMIN, Actor
from callerid.config import Settings
from callerid.db import Database
from callerid.failures import Forbidden, InvalidInput, NotFound
from callerid.numbers import calling_operations, nodes, organisation, service
from callerid.numbers.models import (
    ARCHIVED,
    DELISTING,
    LIST,
    PENDING,
    PUBLISHED,
    BusinessNumber,
    CallingOperation,
    FeatureSet,
    Process,
)
from callerid.numbers.nodes import OPERATION, PROCESS, NodeRef
from tests.numbers.conftest import Tree
from tests.numbers.test_cli import Cli


def admin_of(tree: Tree) -> Actor:
    return Actor(uuid.uuid4(), tree.account_id, "admin@example.com", ADMIN, None)


async def owner_of(db: Database, tree: Tree, role: str, ref: NodeRef) -> Actor:
    async with db.session() as session:
        scope = await nodes.find_node(session, tree.account_id, ref)
    return Actor(uuid.uuid4(), tree.account_id, f"{role}@example.com", role, scope)


async def add_number(db: Database, tree: Tree, status: str, **fields: object) -> None:
    now = clock.now()
    async with db.transaction() as session:
        values = {"feature_set_id": tree.fs_sub, **fields}
        session.add(
            BusinessNumber(
                phone_number="911234567890", account_id=tree.account_id, status=status, created_at=now,
                updated_at=now, **values,
            )
        )  # fmt: skip


async def is_archived(db: Database, model: type, node_id: uuid.UUID) -> bool:
    async with db.session() as session:
        row = await session.get(model, node_id)
    assert row is not None
    return row.archived_at is not None


async def statuses(db: Database, tree: Tree) -> dict[uuid.UUID, tuple[str, str | None]]:
    async with db.session() as session:
        rows = await session.execute(
            select(FeatureSet.id, FeatureSet.status, FeatureSet.status_before_archive).where(
                FeatureSet.account_id == tree.account_id
            )
        )
    return {row.id: (row.status, row.status_before_archive) for row in rows}


@pytest.mark.parametrize(
    ("status", "fields"),
    [(PENDING, {}), ("listed", {}), (DELISTING, {}), ("delisted", {"held_action": LIST})],
    ids=["pending", "listed", "delisting", "held list request"],
)
async def test_archiving_is_refused_while_a_feature_set_below_holds_numbers(
    db: Database, tree: Tree, status: str, fields: dict[str, object]
) -> None:
    if "held_action" in fields:
        fields = {**fields, "feature_set_id": None, "held_feature_set_id": tree.fs_sub}
    await add_number(db, tree, status, **fields)
    actor = admin_of(tree)
    for node_id in (tree.department_id, tree.operation_id, tree.process_id, tree.sub_process_id):
        with pytest.raises(organisation.OrganisationError) as refused:
            async with db.transaction() as session:
                await organisation.archive_node(session, actor, node_id)
        assert "cannot be archived while its feature sets hold 1 number (Night set): delist them first" in str(
            refused.value
        )
    assert not await is_archived(db, Process, tree.sub_process_id)
    assert set(await statuses(db, tree)) == {tree.fs, tree.fs_sub}
    assert {status for status, _ in (await statuses(db, tree)).values()} == {"draft"}


async def test_a_failed_number_does_not_hold_the_node_back(db: Database, tree: Tree) -> None:
    await add_number(db, tree, "failed")
    async with db.transaction() as session:
        impact = await organisation.archive_node(session, admin_of(tree), tree.sub_process_id)
    assert (impact.held_numbers, impact.feature_sets) == (0, ["Night set"])
    assert await is_archived(db, Process, tree.sub_process_id)
    assert not await is_archived(db, Process, tree.process_id)


async def test_archive_and_restore_take_the_subtree_and_feature_sets_with_them(
    db: Database, settings: Settings, tree: Tree
) -> None:
    actor = admin_of(tree)
    async with db.transaction() as session:
        await service.set_feature_set_status(
            session, account_id=tree.account_id, feature_set_id=tree.fs, status=PUBLISHED
        )
    async with db.transaction() as session:
        impact = await organisation.archive_node(session, actor, tree.operation_id)
    assert dict(impact.below) == {"process": 1, "sub-process": 1}
    assert await statuses(db, tree) == {tree.fs: (ARCHIVED, PUBLISHED), tree.fs_sub: (ARCHIVED, "draft")}
    async with db.session() as session:
        shown = {node.ref.id: node.archived for node in await nodes.account_tree(session, tree.account_id)}
        found = await nodes.find_node(session, tree.account_id, NodeRef(PROCESS, tree.sub_process_id))
    assert shown == {
        tree.department_id: False,
        tree.operation_id: True,
        tree.process_id: True,
        tree.sub_process_id: True,
    }
    assert found is not None and found.archived
    # Nothing new under it, by any path (the CLI's tree commands call these), and its sets stay archived.
    async with db.transaction() as session:
        for attempt, message in (
            (
                service.create_process(session, account_id=tree.account_id, operation_id=tree.operation_id, name="X"),
                "operation Last mile is archived; restore it first",
            ),
            (
                service.create_feature_set(
                    session, account_id=tree.account_id, process_id=tree.process_id, label_id=tree.label_id
                ),
                "process Doorstep is archived; restore it first",
            ),
            (
                service.set_feature_set_status(
                    session, account_id=tree.account_id, feature_set_id=tree.fs, status=PUBLISHED
                ),
                "process Doorstep is archived; restore it to change its feature sets",
            ),
        ):
            with pytest.raises(service.NumbersError, match=message):
                await attempt
    async with db.transaction() as session:
        with pytest.raises(InvalidInput, match="feature set is archived"):
            feature_set = await service.feature_set_of(session, tree.account_id, tree.fs)
            await service.list_numbers_into(
                session, settings, feature_set=feature_set, raw_numbers=["911234567890"], created_by_email="x@y.z"
            )
    with pytest.raises(organisation.OrganisationError, match="Logistics / Last mile / Doorstep is archived already"):
        async with db.transaction() as session:
            await organisation.archive_node(session, actor, tree.process_id)
    with pytest.raises(organisation.OrganisationError, match="Logistics / Last mile is archived; restore it first"):
        async with db.transaction() as session:
            await organisation.restore_node(session, actor, tree.process_id)
    async with db.transaction() as session:
        restored = await organisation.restore_node(session, actor, tree.operation_id)
    assert not restored.archived
    assert await statuses(db, tree) == {tree.fs: (PUBLISHED, None), tree.fs_sub: ("draft", None)}
    assert not await is_archived(db, Process, tree.sub_process_id)


async def test_a_set_archived_by_hand_stays_archived_when_its_node_comes_back(db: Database, tree: Tree) -> None:
    actor = admin_of(tree)
    async with db.transaction() as session:
        await service.set_feature_set_status(
            session, account_id=tree.account_id, feature_set_id=tree.fs, status=ARCHIVED
        )
        await organisation.archive_node(session, actor, tree.department_id)
    async with db.transaction() as session:
        await organisation.restore_node(session, actor, tree.department_id)
    assert await statuses(db, tree) == {tree.fs: (ARCHIVED, None), tree.fs_sub: ("draft", None)}


async def test_owners_change_only_strictly_below_their_node(db: Database, tree: Tree) -> None:
    operation_owner = await owner_of(db, tree, "operation_owner", NodeRef(OPERATION, tree.operation_id))
    async with db.transaction() as session:
        with pytest.raises(Forbidden, match="it is the operation you are responsible for"):
            await organisation.rename_node(session, operation_owner, tree.operation_id, "Mine")
        with pytest.raises(NotFound):
            await organisation.rename_node(session, operation_owner, tree.department_id, "Mine")
        with pytest.raises(organisation.OrganisationError, match="only admins add departments"):
            await organisation.add_node(session, operation_owner, parent_id=None, name="Mine")
        renamed = await organisation.rename_node(session, operation_owner, tree.process_id, "  Porch  ")
        added = await organisation.add_node(session, operation_owner, parent_id=tree.process_id, name="Weekend")
    assert renamed.title == "Logistics / Last mile / Porch"
    assert (organisation.kind_of(added), added.title) == ("sub-process", "Logistics / Last mile / Porch / Weekend")
    process_owner = await owner_of(db, tree, "process_owner", NodeRef(PROCESS, tree.sub_process_id))
    async with db.session() as session:
        seen = await organisation.organisation(session, process_owner)
        assert [node.node.title for node in seen.walk()] == ["Logistics / Last mile / Porch / Night"]
        assert not seen.roots[0].can_add and not seen.roots[0].can_change and not seen.can_add_department
        assert await organisation.parent_choices(session, process_owner) == []


async def test_names_are_checked_and_unique_among_siblings(db: Database, tree: Tree) -> None:
    actor = admin_of(tree)
    async with db.transaction() as session:
        entry = await calling_operations.find_calling_operation(session, "DELIVERY")
        with pytest.raises(organisation.OrganisationError, match="there is already an operation named Last mile"):
            await organisation.add_node(
                session, actor, parent_id=tree.department_id, name="LAST MILE", calling_operation_id=entry.id
            )
        with pytest.raises(service.NumbersError, match="department name contains characters that cannot be stored"):
            await organisation.add_node(session, actor, parent_id=None, name="Bad\x00name")
        other = await organisation.add_node(session, actor, parent_id=None, name="Warehouses")
        # The same name under another parent is another node.
        same = await organisation.add_node(
            session, actor, parent_id=other.ref.id, name="Last mile", calling_operation_id=entry.id
        )
    assert same.title == "Warehouses / Last mile"


async def test_invitations_and_role_changes_never_bind_to_an_archived_node(db: Database, tree: Tree) -> None:
    actor = admin_of(tree)
    async with db.transaction() as session:
        await organisation.archive_node(session, actor, tree.sub_process_id)
    async with db.session() as session:
        offered = {node.ref.id for node in await members.assignable_nodes(session, actor, "process_owner")}
    assert offered == {tree.process_id}


async def test_the_catalogue_is_edited_by_id_or_name_and_retired_entries_take_no_new_operations(
    db: Database, tree: Tree
) -> None:
    async with db.transaction() as session:
        added = await calling_operations.add_calling_operation(session, "  Appointments ")
        with pytest.raises(organisation.OrganisationError, match="calling operation Appointments exists already"):
            await calling_operations.add_calling_operation(session, "appointments")
        with pytest.raises(organisation.OrganisationError, match="calling operation Delivery exists already"):
            await calling_operations.rename_calling_operation(session, str(added.id), "delivery")
        renamed = await calling_operations.rename_calling_operation(session, "APPOINTMENTS", "Bookings")
        assert (renamed.id, renamed.name) == (added.id, "Bookings")
        await calling_operations.retire_calling_operation(session, "Bookings")
        with pytest.raises(organisation.OrganisationError, match="is retired already"):
            await calling_operations.retire_calling_operation(session, str(added.id))
        with pytest.raises(NotFound, match="calling operation 'Nothing' not found"):
            await calling_operations.retire_calling_operation(session, "Nothing")
    async with db.session() as session:
        everything = {
            e.entry.name: (e.retired, e.operations) for e in await calling_operations.calling_operations(session)
        }
        offered = [e.entry.name for e in await calling_operations.calling_operations(session, include_retired=False)]
    assert everything["Bookings"] == (True, 0) and everything["Delivery"] == (False, 1)
    assert "Bookings" not in offered and "Delivery" in offered
    # The CLI's create-on-first-use stays, but not for a retired name; the console's choice refuses it too.
    with pytest.raises(service.NumbersError, match="calling operation Bookings is retired; choose another one"):
        async with db.transaction() as session:
            await service.create_operation(
                session,
                account_id=tree.account_id,
                department_id=tree.department_id,
                name="Calls",
                calling_operation_name="bookings",
            )
    with pytest.raises(organisation.OrganisationError, match="retired"):
        async with db.transaction() as session:
            await organisation.add_node(
                session, admin_of(tree), parent_id=tree.department_id, name="Calls", calling_operation_id=added.id
            )
    async with db.transaction() as session:
        await calling_operations.restore_calling_operation(session, "bookings")
        operation, entry = await service.create_operation(
            session,
            account_id=tree.account_id,
            department_id=tree.department_id,
            name="Calls",
            calling_operation_name="Bookings",
        )
        # A name nobody has used yet is still made on first use (the CLI's --calling-operation).
        await service.create_operation(
            session,
            account_id=tree.account_id,
            department_id=tree.department_id,
            name="Other calls",
            calling_operation_name="Surveys",
        )
    assert (operation.calling_operation_id, entry.id) == (added.id, added.id)
    async with db.session() as session:
        assert await session.scalar(select(CallingOperation.name).where(CallingOperation.name == "Surveys"))


def test_the_catalogue_from_the_cli(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    # A new database starts with the entries the spec names.
    listed = cli.json("catalogue", "calling-operations", "list")["calling_operations"]
    assert [(e["name"], e["retired"], e["operations"]) for e in listed] == [
        ("Collections", False, 0),
        ("Delivery", False, 0),
        ("Sales", False, 0),
    ]
    added = cli.json("catalogue", "calling-operations", "add", "--name", "Appointments")
    assert (added["name"], added["retired"], added["retired_at"]) == ("Appointments", False, None)
    renamed = cli.json("catalogue", "calling-operations", "rename", "--entry", added["id"], "--name", "Bookings")
    assert (renamed["id"], renamed["name"]) == (added["id"], "Bookings")
    retired = cli.json("catalogue", "calling-operations", "retire", "--entry", "bookings")
    assert retired["retired"] is True and retired["retired_at"].endswith("Z")
    active = cli.json("catalogue", "calling-operations", "list", "--active")["calling_operations"]
    assert "Bookings" not in [e["name"] for e in active]
    assert cli.fails("catalogue", "calling-operations", "retire", "--entry", "Bookings") == (
        "error: calling operation Bookings is retired already\n"
    )
    assert cli.fails("catalogue", "calling-operations", "add", "--name", "sales") == (
        "error: calling operation Sales exists already\n"
    )
    assert cli.fails("catalogue", "calling-operations", "rename", "--entry", "nope", "--name", "X") == (
        "error: calling operation 'nope' not found\n"
    )
    assert "between 1 and 100 characters" in cli.fails("catalogue", "calling-operations", "add", "--name", " ")
    account = cli.json("accounts", "create", "--name", "Acme", "--admin-email", "boss@acme.test")["client_account_id"]
    department = cli.json("departments", "create", "--account", account, "--name", "Logistics")["id"]
    refused = cli.fails(
        "operations", "create", "--account", account, "--department", department, "--name", "Calls",
        "--calling-operation", "Bookings",
    )  # fmt: skip
    assert refused == "error: calling operation Bookings is retired; choose another one\n"
    cli.json("catalogue", "calling-operations", "restore", "--entry", "Bookings")
    operation = cli.json(
        "operations", "create", "--account", account, "--department", department, "--name", "Calls",
        "--calling-operation", "bookings",
    )  # fmt: skip
    assert (operation["calling_operation_id"], operation["calling_operation_name"]) == (added["id"], "Bookings")
    counts = {
        e["name"]: e["operations"] for e in cli.json("catalogue", "calling-operations", "list")["calling_operations"]
    }
    assert counts["Bookings"] == 1
    text = cli.run("catalogue", "calling-operations", "list")
    assert text.returncode == 0 and "Calling operations" in text.stdout and "name: Bookings" in text.stdout
