"""What other domains may ask about an account's organisation tree: its nodes and each node's path.

The console's authorisation (``accounts.permissions``) binds owners to one node and limits them to its subtree;
"is X inside Y's subtree" is "is Y on X's path", so a node's path (department > operation > process >
sub-process) is all it needs. The tree never moves (``numbers.models``), so a path never changes.

Archived nodes (``numbers.organisation``) are still nodes: their members, feature sets and numbers keep their
places. ``TreeNode.archived`` tells them apart, so that whoever offers nodes to choose from leaves them out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.numbers.models import Department, Operation, Process

DEPARTMENT = "department"
OPERATION = "operation"
PROCESS = "process"
NODE_KINDS = (DEPARTMENT, OPERATION, PROCESS)


@dataclass(frozen=True)
class NodeRef:
    kind: str
    id: uuid.UUID


@dataclass(frozen=True)
class TreeNode:
    """One node with its path from the department down (the node itself last) and the names along it."""

    ref: NodeRef
    path: tuple[NodeRef, ...]
    names: tuple[str, ...]
    archived: bool = False  # archiving marks the whole subtree, so a node's own mark is enough

    @property
    def name(self) -> str:
        return self.names[-1]

    @property
    def title(self) -> str:
        """``Sales / Delivery / Returns``: how the console names a node."""
        return " / ".join(self.names)

    @property
    def depth(self) -> int:
        return len(self.path) - 1


async def account_tree(session: AsyncSession, account_id: uuid.UUID) -> list[TreeNode]:
    """Every node of the account, archived ones included (``TreeNode.archived``), each department followed by its
    subtree, siblings by name."""
    departments = (
        await session.execute(
            select(Department.id, Department.name, Department.archived_at)
            .where(Department.account_id == account_id)
            .order_by(Department.name)
        )
    ).all()
    operations = (
        await session.execute(
            select(Operation.id, Operation.department_id, Operation.name, Operation.archived_at)
            .where(Operation.account_id == account_id)
            .order_by(Operation.name)
        )
    ).all()
    processes = (
        await session.execute(
            select(Process.id, Process.operation_id, Process.parent_id, Process.name, Process.archived_at)
            .where(Process.account_id == account_id)
            .order_by(Process.name)
        )
    ).all()
    nodes: list[TreeNode] = []
    for department in departments:
        d_ref = NodeRef(DEPARTMENT, department.id)
        nodes.append(TreeNode(d_ref, (d_ref,), (department.name,), department.archived_at is not None))
        for operation in (o for o in operations if o.department_id == department.id):
            o_ref = NodeRef(OPERATION, operation.id)
            o_path, o_names = (d_ref, o_ref), (department.name, operation.name)
            nodes.append(TreeNode(o_ref, o_path, o_names, operation.archived_at is not None))
            for process in (p for p in processes if p.operation_id == operation.id and p.parent_id is None):
                p_ref = NodeRef(PROCESS, process.id)
                p_path, p_names = (*o_path, p_ref), (*o_names, process.name)
                nodes.append(TreeNode(p_ref, p_path, p_names, process.archived_at is not None))
                for sub in (s for s in processes if s.parent_id == process.id):
                    s_ref = NodeRef(PROCESS, sub.id)
                    nodes.append(TreeNode(s_ref, (*p_path, s_ref), (*p_names, sub.name), sub.archived_at is not None))
    return nodes


async def find_node(session: AsyncSession, account_id: uuid.UUID, ref: NodeRef) -> TreeNode | None:
    """The account's node ``ref`` with its path, or None when the account has no such node."""
    if ref.kind == DEPARTMENT:
        department = await session.get(Department, ref.id)
        if department is None or department.account_id != account_id:
            return None
        return TreeNode(ref, (ref,), (department.name,), department.archived_at is not None)
    if ref.kind == OPERATION:
        operation = await session.get(Operation, ref.id)
        if operation is None or operation.account_id != account_id:
            return None
        parent = await find_node(session, account_id, NodeRef(DEPARTMENT, operation.department_id))
        if parent is None:
            return None
        return TreeNode(ref, (*parent.path, ref), (*parent.names, operation.name), operation.archived_at is not None)
    if ref.kind == PROCESS:
        process = await session.get(Process, ref.id)
        if process is None or process.account_id != account_id:
            return None
        if process.parent_id is not None:
            parent = await find_node(session, account_id, NodeRef(PROCESS, process.parent_id))
        else:
            parent = await find_node(session, account_id, NodeRef(OPERATION, process.operation_id))
        if parent is None:
            return None
        return TreeNode(ref, (*parent.path, ref), (*parent.names, process.name), process.archived_at is not None)
    return None
