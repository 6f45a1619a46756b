"""Who may do what in the console: roles, their permissions, and the one function that decides (SPEC §1.2, §10.6).

Admins act on the whole account. Department, Operation and Process Owners are bound to one node of the account's
tree and act only inside its subtree; they invite and manage members at or below their own level there. Every
console route asks :func:`authorize` (never a role name directly), so the rules live here once and the security
tests can walk them as a matrix of route x role.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from callerid import failures
from callerid.numbers.nodes import DEPARTMENT, OPERATION, PROCESS, TreeNode

ADMIN = "admin"
DEPARTMENT_OWNER = "department_owner"
OPERATION_OWNER = "operation_owner"
PROCESS_OWNER = "process_owner"
ROLES = (ADMIN, DEPARTMENT_OWNER, OPERATION_OWNER, PROCESS_OWNER)
OWNER_ROLES = ROLES[1:]

ROLE_TITLES = {
    ADMIN: "Admin",
    DEPARTMENT_OWNER: "Department Owner",
    OPERATION_OWNER: "Operation Owner",
    PROCESS_OWNER: "Process Owner",
}
# The node kind each owner role is bound to; admins are bound to none.
ROLE_NODE_KIND = {DEPARTMENT_OWNER: DEPARTMENT, OPERATION_OWNER: OPERATION, PROCESS_OWNER: PROCESS}
# Lower is more: a member may give a role of their own rank or a lower one.
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}


class Permission(StrEnum):
    VIEW_HOME = "view_home"
    VIEW_LABELS = "view_labels"
    MANAGE_LABELS = "manage_labels"
    MANAGE_API_KEYS = "manage_api_keys"
    MANAGE_WEBHOOKS = "manage_webhooks"
    MANAGE_ACCOUNT = "manage_account"
    VIEW_MEMBERS = "view_members"
    MANAGE_MEMBERS = "manage_members"
    OWN_PROFILE = "own_profile"
    VIEW_ORGANISATION = "view_organisation"
    MANAGE_ORGANISATION = "manage_organisation"
    VIEW_FEATURE_SETS = "view_feature_sets"
    MANAGE_FEATURE_SETS = "manage_feature_sets"
    VIEW_NUMBERS = "view_numbers"
    MANAGE_NUMBERS = "manage_numbers"
    VIEW_ACTIVITY = "view_activity"
    VIEW_CALL_RECORDS = "view_call_records"
    VIEW_ANALYTICS = "view_analytics"
    SET_UP_ACCOUNT = "set_up_account"


PERMISSION_TITLES = {
    Permission.VIEW_HOME: "See the account overview",
    Permission.VIEW_LABELS: "See caller-ID labels and their ids",
    Permission.MANAGE_LABELS: "Create caller-ID labels",
    Permission.MANAGE_API_KEYS: "Create, regenerate and delete API keys; see the clientAccountId",
    Permission.MANAGE_WEBHOOKS: "Manage webhooks, their secrets, tests and event log; resend events",
    Permission.MANAGE_ACCOUNT: "Change account settings: name, timezone, failure e-mails, two-factor policy",
    Permission.VIEW_MEMBERS: "See members (owners: those in their part of the organisation)",
    Permission.MANAGE_MEMBERS: "Invite members and change, revoke or delete them, at or below their own level",
    Permission.OWN_PROFILE: "Change their own password and two-factor sign-in",
    Permission.VIEW_ORGANISATION: "See the organisation tree (owners: their part of it)",
    Permission.MANAGE_ORGANISATION: "Create, rename and archive departments, operations and processes in their part",
    Permission.VIEW_FEATURE_SETS: "See feature sets (owners: those in their part of the organisation)",
    Permission.MANAGE_FEATURE_SETS: "Create and edit feature sets, their Call Me Back and survey, in their part",
    Permission.VIEW_NUMBERS: "See business numbers and their listing state (owners: of their feature sets)",
    Permission.MANAGE_NUMBERS: "List and delist numbers on feature sets in their part of the organisation",
    Permission.VIEW_ACTIVITY: "See call activity, Call Me Back requests and survey answers (owners: of their part)",
    # Batches and call records belong to the whole account (labels are account-level): admins only.
    Permission.VIEW_CALL_RECORDS: "See batches and call records",
    Permission.VIEW_ANALYTICS: "See figures and charts of calls, and get the weekly report (owners: of their part)",
    # The first-run setup creates account-wide things (departments, labels): admins only.
    Permission.SET_UP_ACCOUNT: "Follow the first-run setup: calling operation, process, feature set, label, numbers",
}

_EVERYONE = frozenset({Permission.VIEW_HOME, Permission.VIEW_LABELS, Permission.OWN_PROFILE})
# Owners work inside their subtree: each object they act on is checked with its node (``Target``).
_OWNERS = _EVERYONE | {
    Permission.VIEW_MEMBERS,
    Permission.MANAGE_MEMBERS,
    Permission.VIEW_ORGANISATION,
    Permission.MANAGE_ORGANISATION,
    Permission.VIEW_FEATURE_SETS,
    Permission.MANAGE_FEATURE_SETS,
    Permission.VIEW_NUMBERS,
    Permission.MANAGE_NUMBERS,
    Permission.VIEW_ACTIVITY,
    Permission.VIEW_ANALYTICS,
}
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    ADMIN: frozenset(Permission),
    DEPARTMENT_OWNER: _OWNERS,
    OPERATION_OWNER: _OWNERS,
    PROCESS_OWNER: _OWNERS,
}


@dataclass(frozen=True)
class Actor:
    """A signed-in member as the rules see them; ``scope`` is the owner's node (None for admins)."""

    member_id: uuid.UUID
    account_id: uuid.UUID
    email: str
    role: str
    scope: TreeNode | None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


@dataclass(frozen=True)
class Target:
    """Where the object acted on lives: a node of the tree, or the whole account (``node`` None). With ``role``,
    the action gives that role (an invitation, a role change), which must be at or below the actor's own."""

    node: TreeNode | None
    role: str | None = None


ACCOUNT_WIDE = Target(node=None)


def allowed(actor: Actor, permission: Permission, target: Target | None = None) -> bool:
    """The one decision: the role grants ``permission`` and, for objects in the tree, the actor's subtree holds
    the target (admins hold everything). A role being given must rank at or below the actor's.

    Without a target it answers whether the role may do this at all (what a page checks before it loads the
    object); the object itself is then checked with its target.
    """
    if permission not in ROLE_PERMISSIONS.get(actor.role, frozenset()):
        return False
    if target is None:
        return True
    if target.role is not None and ROLE_RANK.get(target.role, -1) < ROLE_RANK[actor.role]:
        return False
    if actor.is_admin:
        return True
    if target.node is None or actor.scope is None:
        return False  # account-level objects (admins, settings) are beyond every subtree
    return actor.scope.ref in target.node.path


class Forbidden(failures.Forbidden):
    """The actor may not do this (the console answers 403, or 404 where existence must not leak)."""

    def __init__(self, permission: Permission):
        failures.Forbidden.__init__(self)
        self.permission = permission


def authorize(actor: Actor, permission: Permission, target: Target | None = None) -> None:
    if not allowed(actor, permission, target):
        raise Forbidden(permission)


def role_matches_node(role: str, node: TreeNode | None) -> bool:
    """Admins have no node; each owner role is bound to a node of its own kind."""
    if role == ADMIN:
        return node is None
    kind = ROLE_NODE_KIND.get(role)
    return kind is not None and node is not None and node.ref.kind == kind
