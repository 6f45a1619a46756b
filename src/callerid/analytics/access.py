"""Whose figures a member may see (issue 13 §5): admins the whole account, owners the feature sets of their subtree.

Decided node by node with ``permissions.allowed`` (the one rule of the console), so the Analytics page and the weekly
report e-mail narrow an owner's figures exactly as every other page narrows their feature sets.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.accounts.permissions import Actor, Permission, Target, allowed
from callerid.numbers.models import FeatureSet
from callerid.numbers.nodes import PROCESS, account_tree


@dataclass(frozen=True)
class Visible:
    """The feature sets whose figures a member sees (id -> name) and whether that is the whole account."""

    feature_sets: dict[uuid.UUID, str]
    whole_account: bool

    @property
    def scope_ids(self) -> frozenset[uuid.UUID] | None:
        """``Scope.feature_set_ids``: None for the whole account (figures of no feature set included)."""
        return None if self.whole_account else frozenset(self.feature_sets)


async def visible_feature_sets(session: AsyncSession, actor: Actor) -> Visible:
    rows = (
        await session.execute(
            select(FeatureSet.id, FeatureSet.name, FeatureSet.process_id).where(
                FeatureSet.account_id == actor.account_id
            )
        )
    ).all()
    if not allowed(actor, Permission.VIEW_ANALYTICS):
        return Visible({}, False)
    if actor.is_admin:
        return Visible({row.id: row.name for row in rows}, True)
    nodes = {node.ref.id: node for node in await account_tree(session, actor.account_id)}
    visible = {}
    for row in rows:
        node = nodes.get(row.process_id)
        if node is not None and node.ref.kind == PROCESS and allowed(actor, Permission.VIEW_ANALYTICS, Target(node)):
            visible[row.id] = row.name
    return Visible(visible, False)
