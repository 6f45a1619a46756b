"""The organisation tree as members manage it (SPEC §10.3, §10.6): add, rename, archive and restore nodes. (The
calling-operation catalogue operations are bound to is the operator's: ``numbers.calling_operations``.)

Who may do what, on top of ``accounts.permissions``: admins add departments and change any node; an owner adds
below their own node (a Department Owner operations, processes and sub-processes; an Operation Owner processes and
sub-processes; a Process Owner sub-processes) and renames, archives or restores only nodes strictly below it, never
their own node or anything above. A node outside the actor's subtree is reported as not found, never as forbidden.

Archiving hides a node and its whole subtree (one ``archived_at`` on all of them) and archives their feature sets,
so that nothing new is made in them and no number can be listed into them (``listing`` refuses archived sets). It
is refused while any feature set below holds numbers (pending, listed, delisting, or waiting to be listed): delist
them first. Restoring brings back what was archived together with the node, feature sets with their old status.

The tree creation rules themselves (names, parents, one level of sub-processes) are ``numbers.tree``'s.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.accounts import permissions
from callerid.accounts.permissions import ACCOUNT_WIDE, Actor, Permission, Target
from callerid.db.write import lock_session
from callerid.failures import Forbidden, NotFound
from callerid.numbers import nodes, tree
from callerid.numbers.checks import NUMBER_STATES_LOCK, NumbersError, _check_name
from callerid.numbers.models import (
    ARCHIVED,
    HELD_STATES,
    LIST,
    BusinessNumber,
    CallingOperation,
    Department,
    FeatureSet,
    Operation,
    Process,
)
from callerid.numbers.nodes import DEPARTMENT, OPERATION, PROCESS, NodeRef, TreeNode

SUB_PROCESS = "sub-process"
# What each kind of node holds (a sub-process holds nothing: one level of sub-processes).
CHILD_KIND = {DEPARTMENT: OPERATION, OPERATION: PROCESS, PROCESS: SUB_PROCESS}
_MODELS: dict[str, type[Department] | type[Operation] | type[Process]] = {
    DEPARTMENT: Department,
    OPERATION: Operation,
    PROCESS: Process,
}


class OrganisationError(NumbersError):
    """A tree or catalogue change that breaks a rule; ``field`` names the form input it is about."""


def kind_of(node: TreeNode) -> str:
    """``department``, ``operation``, ``process`` or ``sub-process`` (a process one level down)."""
    return SUB_PROCESS if node.ref.kind == PROCESS and node.depth == 3 else node.ref.kind


def child_kind(node: TreeNode | None) -> str | None:
    """The kind of node that can be added under ``node`` (None: the account, which holds departments)."""
    return DEPARTMENT if node is None else CHILD_KIND.get(kind_of(node))


# --- who may do what --------------------------------------------------------------------------------------------


def may_see(actor: Actor, node: TreeNode) -> bool:
    return permissions.allowed(actor, Permission.VIEW_ORGANISATION, Target(node))


def may_add_under(actor: Actor, node: TreeNode | None) -> bool:
    """Departments are the admins'; anything else goes under a node of the actor's subtree that takes children."""
    if node is None:
        return permissions.allowed(actor, Permission.MANAGE_ORGANISATION, ACCOUNT_WIDE)
    return (
        child_kind(node) is not None
        and not node.archived
        and permissions.allowed(actor, Permission.MANAGE_ORGANISATION, Target(node))
    )


def may_change(actor: Actor, node: TreeNode) -> bool:
    """Rename, archive, restore: admins any node, owners only nodes strictly below their own."""
    if not permissions.allowed(actor, Permission.MANAGE_ORGANISATION, Target(node)):
        return False
    return actor.is_admin or actor.scope is None or actor.scope.ref != node.ref


async def visible_node(session: AsyncSession, actor: Actor, node_id: uuid.UUID) -> TreeNode:
    """The account's node with this id (of whichever kind) inside the actor's subtree, else NotFound."""
    for kind in nodes.NODE_KINDS:
        node = await nodes.find_node(session, actor.account_id, NodeRef(kind, node_id))
        if node is not None:
            if may_see(actor, node):
                return node
            break
    raise NotFound("node not found")


async def _changeable(session: AsyncSession, actor: Actor, node_id: uuid.UUID, verb: str) -> TreeNode:
    node = await visible_node(session, actor, node_id)
    if not may_change(actor, node):
        raise Forbidden(
            f"you cannot {verb} {node.title}: it is the {kind_of(node)} you are responsible for; ask an admin"
        )
    return node


# --- the tree as the console shows it ---------------------------------------------------------------------------


@dataclass
class OrgNode:
    """A node with what the tree page shows about it and what the viewer may do with it."""

    node: TreeNode
    kind: str
    created_at: datetime
    archived_at: datetime | None
    calling_operation: str = ""  # operations: the catalogue entry's name
    calling_operation_retired: bool = False
    feature_sets: int = 0  # on this process or sub-process
    can_add: bool = False
    can_change: bool = False
    children: list[OrgNode] = field(default_factory=list)

    @property
    def id(self) -> uuid.UUID:
        return self.node.ref.id

    @property
    def child_kind(self) -> str | None:
        return CHILD_KIND.get(self.kind)

    def walk(self) -> list[OrgNode]:
        """This node and its subtree, parents first (the CSV's order)."""
        return [self, *(node for child in self.children for node in child.walk())]


@dataclass(frozen=True)
class Organisation:
    roots: list[OrgNode]
    counts: Counter[str]  # shown nodes by kind
    archived_hidden: int  # archived nodes the filter leaves out
    can_add_department: bool

    def walk(self) -> list[OrgNode]:
        return [node for root in self.roots for node in root.walk()]


async def organisation(session: AsyncSession, actor: Actor, *, include_archived: bool = False) -> Organisation:
    """The part of the tree the actor may see (the whole tree for admins, their node's subtree for owners), as
    nested nodes; archived ones only with ``include_archived``."""
    permissions.authorize(actor, Permission.VIEW_ORGANISATION)
    account_id = actor.account_id
    created: dict[uuid.UUID, tuple[datetime, datetime | None]] = {}
    for model in _MODELS.values():
        rows = await session.execute(
            select(model.id, model.created_at, model.archived_at).where(model.account_id == account_id)
        )
        created.update({row.id: (row.created_at, row.archived_at) for row in rows})
    entries = {
        row.id: (row.name, row.retired_at is not None)
        for row in await session.execute(
            select(Operation.id, CallingOperation.name, CallingOperation.retired_at)
            .join(CallingOperation, CallingOperation.id == Operation.calling_operation_id)
            .where(Operation.account_id == account_id)
        )
    }
    feature_sets = dict(
        (
            await session.execute(
                select(FeatureSet.process_id, func.count())
                .where(FeatureSet.account_id == account_id)
                .group_by(FeatureSet.process_id)
            )
        ).all()
    )
    by_ref: dict[NodeRef, OrgNode] = {}
    roots: list[OrgNode] = []
    counts: Counter[str] = Counter()
    hidden = 0
    for node in await nodes.account_tree(session, account_id):
        if not may_see(actor, node):
            continue
        if node.archived and not include_archived:
            hidden += 1
            continue
        created_at, archived_at = created[node.ref.id]
        entry_name, retired = entries.get(node.ref.id, ("", False))
        shown = OrgNode(
            node=node,
            kind=kind_of(node),
            created_at=created_at,
            archived_at=archived_at,
            calling_operation=entry_name,
            calling_operation_retired=retired,
            feature_sets=int(feature_sets.get(node.ref.id, 0)),
            can_add=may_add_under(actor, node),
            can_change=may_change(actor, node),
        )
        counts[shown.kind] += 1
        by_ref[node.ref] = shown
        parent = by_ref.get(node.path[-2]) if len(node.path) > 1 else None
        (parent.children if parent is not None else roots).append(shown)
    return Organisation(roots, counts, hidden, may_add_under(actor, None))


async def parent_choices(session: AsyncSession, actor: Actor) -> list[TreeNode]:
    """The nodes the actor may add something under (not archived, not sub-processes), in tree order."""
    return [node for node in await nodes.account_tree(session, actor.account_id) if may_add_under(actor, node)]


# --- adding ----------------------------------------------------------------------------------------------------


async def _check_new_name(
    session: AsyncSession, actor: Actor, parent: TreeNode | None, name: str, kind: str, *, skip: uuid.UUID | None = None
) -> str:
    """The name as stored, unique (case-insensitive) among its siblings, archived ones included, so that a path
    names one node in every list that offers nodes to choose from."""
    name = _check_name(name, kind)
    where: list[ColumnElement[bool]]
    if parent is None:
        model: type[Department] | type[Operation] | type[Process] = Department
        where = [Department.account_id == actor.account_id]
    elif parent.ref.kind == DEPARTMENT:
        model, where = Operation, [Operation.department_id == parent.ref.id]
    elif parent.ref.kind == OPERATION:
        model, where = Process, [Process.operation_id == parent.ref.id, Process.parent_id.is_(None)]
    else:
        model, where = Process, [Process.parent_id == parent.ref.id]
    if skip is not None:
        where.append(model.id != skip)
    taken = await session.scalar(select(model.name).where(*where, func.lower(model.name) == name.lower()).limit(1))
    if taken is not None:
        place = "in this account" if parent is None else f"in {parent.title}"
        article = "an" if kind[0] in "aeiou" else "a"
        raise OrganisationError(f"there is already {article} {kind} named {taken} {place}; choose another name", "name")
    return name


async def add_node(
    session: AsyncSession,
    actor: Actor,
    *,
    parent_id: uuid.UUID | None,
    name: str,
    calling_operation_id: uuid.UUID | None = None,
) -> TreeNode:
    """A department (no parent), or an operation, process or sub-process under ``parent_id``; an operation is
    bound to a catalogue entry that is not retired."""
    parent = None if parent_id is None else await visible_node(session, actor, parent_id)
    if parent is not None and parent.archived:
        raise OrganisationError(f"{kind_of(parent)} {parent.title} is archived; restore it first", "parent")
    if not may_add_under(actor, parent):
        if parent is None:
            raise OrganisationError("only admins add departments; choose where to add it", "parent")
        raise OrganisationError(f"nothing can be added under {parent.title}; choose where to add it", "parent")
    kind = child_kind(parent)
    assert kind is not None  # may_add_under
    name = await _check_new_name(session, actor, parent, name, kind)
    if parent is None:
        department = await tree.create_department(session, account_id=actor.account_id, name=name)
        ref = NodeRef(DEPARTMENT, department.id)
    elif kind == OPERATION:
        entry = None if calling_operation_id is None else await session.get(CallingOperation, calling_operation_id)
        if entry is None:
            raise OrganisationError("choose a calling operation from the list", "calling_operation")
        if entry.retired_at is not None:
            raise OrganisationError(
                f"calling operation {entry.name} is retired; choose another one", "calling_operation"
            )
        operation, _ = await tree.create_operation(
            session,
            account_id=actor.account_id,
            department_id=parent.ref.id,
            name=name,
            calling_operation_name=entry.name,
        )
        ref = NodeRef(OPERATION, operation.id)
    else:
        sub = kind == SUB_PROCESS
        process = await tree.create_process(
            session,
            account_id=actor.account_id,
            operation_id=parent.path[1].id,
            name=name,
            parent_id=parent.ref.id if sub else None,
        )
        ref = NodeRef(PROCESS, process.id)
    added = await nodes.find_node(session, actor.account_id, ref)
    assert added is not None
    return added


# --- renaming, archiving, restoring -----------------------------------------------------------------------------


async def rename_node(session: AsyncSession, actor: Actor, node_id: uuid.UUID, name: str) -> TreeNode:
    """A new name for the node; ids stay, so the API's filters and the feature sets keep working."""
    node = await _changeable(session, actor, node_id, "rename")
    parent = None
    if len(node.path) > 1:
        parent = await nodes.find_node(session, actor.account_id, node.path[-2])
    name = await _check_new_name(session, actor, parent, name, kind_of(node), skip=node.ref.id)
    row = await session.get(_MODELS[node.ref.kind], node.ref.id)
    assert row is not None
    row.name = name
    await session.flush()
    renamed = await nodes.find_node(session, actor.account_id, node.ref)
    assert renamed is not None
    return renamed


def _processes_below(node: TreeNode) -> ColumnElement[bool]:
    """Processes and sub-processes of the node's subtree (the node itself when it is one)."""
    if node.ref.kind == DEPARTMENT:
        operations = select(Operation.id).where(Operation.department_id == node.ref.id)
        return Process.operation_id.in_(operations.scalar_subquery())
    if node.ref.kind == OPERATION:
        return Process.operation_id == node.ref.id
    return or_(Process.id == node.ref.id, Process.parent_id == node.ref.id)


def _feature_sets_below(node: TreeNode) -> ColumnElement[bool]:
    """Feature sets of the node's subtree, by the tree ids each set keeps a copy of."""
    column = {DEPARTMENT: FeatureSet.department_id, OPERATION: FeatureSet.operation_id}.get(node.ref.kind)
    if column is not None:
        return column == node.ref.id
    return FeatureSet.root_process_id == node.ref.id if node.depth == 2 else FeatureSet.process_id == node.ref.id


@dataclass(frozen=True)
class ArchiveImpact:
    """What archiving a node takes with it, and what stands in its way."""

    node: TreeNode
    below: Counter[str]  # nodes in use under it, by kind
    feature_sets: list[str]  # names of the sets that would be archived with it
    held_numbers: int  # numbers pending, listed, delisting or waiting to be listed in its feature sets
    holding_sets: list[str]  # names of the sets holding them

    @property
    def blocked(self) -> bool:
        return self.held_numbers > 0

    @property
    def refusal(self) -> str:
        numbers = f"{self.held_numbers} number{'s' if self.held_numbers != 1 else ''}"
        sets = ", ".join(self.holding_sets[:3]) + (" and others" if len(self.holding_sets) > 3 else "")
        return f"{self.node.title} cannot be archived while its feature sets hold {numbers} ({sets}): delist them first"


async def archive_impact(session: AsyncSession, actor: Actor, node_id: uuid.UUID) -> ArchiveImpact:
    """What the archive confirmation names: the nodes and feature sets that go with it, or why it cannot."""
    node = await _changeable(session, actor, node_id, "archive")
    return await _impact(session, actor.account_id, node)


async def _impact(session: AsyncSession, account_id: uuid.UUID, node: TreeNode) -> ArchiveImpact:
    below: Counter[str] = Counter()
    for other in await nodes.account_tree(session, account_id):
        if other.ref != node.ref and node.ref in other.path and not other.archived:
            below[kind_of(other)] += 1
    in_subtree = _feature_sets_below(node)
    sets = (
        await session.execute(
            select(FeatureSet.id, FeatureSet.name, FeatureSet.status).where(in_subtree).order_by(FeatureSet.name)
        )
    ).all()
    set_ids = select(FeatureSet.id).where(in_subtree).scalar_subquery()
    holding = (
        await session.execute(
            select(FeatureSet.name, func.count())
            .join(
                BusinessNumber,
                or_(
                    (BusinessNumber.feature_set_id == FeatureSet.id) & BusinessNumber.status.in_(HELD_STATES),
                    (BusinessNumber.held_feature_set_id == FeatureSet.id) & (BusinessNumber.held_action == LIST),
                ),
            )
            .where(FeatureSet.id.in_(set_ids))
            .group_by(FeatureSet.name)
            .order_by(FeatureSet.name)
        )
    ).all()
    return ArchiveImpact(
        node=node,
        below=below,
        feature_sets=[row.name for row in sets if row.status != ARCHIVED],
        held_numbers=sum(int(count) for _, count in holding),
        holding_sets=[name for name, _ in holding],
    )


async def archive_node(session: AsyncSession, actor: Actor, node_id: uuid.UUID) -> ArchiveImpact:
    """Archive the node, its subtree and their feature sets at once; refused while any of those sets holds
    numbers. Takes the number-states lock, so that no listing slips in between the check and the archiving."""
    node = await _changeable(session, actor, node_id, "archive")
    if node.archived:
        raise OrganisationError(f"{node.title} is archived already")
    await lock_session(session, NUMBER_STATES_LOCK)
    impact = await _impact(session, actor.account_id, node)
    if impact.blocked:
        raise OrganisationError(impact.refusal)
    now = clock.now()
    row = await session.get(_MODELS[node.ref.kind], node.ref.id)
    assert row is not None
    row.archived_at = now
    if node.ref.kind == DEPARTMENT:
        operations = (Operation.department_id == node.ref.id) & Operation.archived_at.is_(None)
        await session.execute(update(Operation).where(operations).values(archived_at=now))
    await session.execute(
        update(Process).where(_processes_below(node), Process.archived_at.is_(None)).values(archived_at=now)
    )
    await session.execute(
        update(FeatureSet)
        .where(_feature_sets_below(node), FeatureSet.status != ARCHIVED)
        .values(status_before_archive=FeatureSet.status, status=ARCHIVED, updated_at=now)
    )
    await session.flush()
    return impact


async def restore_node(session: AsyncSession, actor: Actor, node_id: uuid.UUID) -> TreeNode:
    """Bring back the node and what was archived together with it (a part archived on its own before stays
    archived), feature sets with the status they had. Its parent must be in use."""
    node = await _changeable(session, actor, node_id, "restore")
    if not node.archived:
        raise OrganisationError(f"{node.title} is not archived")
    if len(node.path) > 1:
        parent = await nodes.find_node(session, actor.account_id, node.path[-2])
        if parent is not None and parent.archived:
            raise OrganisationError(f"{parent.title} is archived; restore it first")
    row = await session.get(_MODELS[node.ref.kind], node.ref.id)
    assert row is not None and row.archived_at is not None
    when = row.archived_at
    if node.ref.kind == DEPARTMENT:
        together = (Operation.department_id == node.ref.id) & (Operation.archived_at == when)
        await session.execute(update(Operation).where(together).values(archived_at=None))
    restored = list(
        (await session.scalars(select(Process.id).where(_processes_below(node), Process.archived_at == when))).all()
    )
    if restored:
        await session.execute(update(Process).where(Process.id.in_(restored)).values(archived_at=None))
    row.archived_at = None
    if restored:
        await session.execute(
            update(FeatureSet)
            .where(
                FeatureSet.process_id.in_(restored),
                FeatureSet.status == ARCHIVED,
                FeatureSet.status_before_archive.is_not(None),
            )
            .values(status=FeatureSet.status_before_archive, status_before_archive=None, updated_at=clock.now())
        )
    await session.flush()
    back = await nodes.find_node(session, actor.account_id, node.ref)
    assert back is not None
    return back
