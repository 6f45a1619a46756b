"""Members of an account and the account's own settings: invitations, roles, revocation, deletion (SPEC §10.6).

Every function takes the acting member (:class:`~callerid.accounts.permissions.Actor`) and asks
``permissions.authorize`` before it reads or changes anything, so the console, and whatever calls these later,
enforce the same rules. A member outside the actor's subtree is reported as not found, never as forbidden, so
that an owner cannot learn who else exists.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.accounts import permissions
from callerid.accounts.models import (
    MEMBER_ACTIVE,
    MEMBER_INVITED,
    MEMBER_REVOKED,
    ClientAccount,
    ConsoleSession,
    Member,
    MemberToken,
    TrustedBrowser,
)
from callerid.accounts.permissions import ACCOUNT_WIDE, ADMIN, Actor, Permission, Target
from callerid.accounts.secrets import hash_password, new_link_token, sha256_hex
from callerid.accounts.service import AccountsError, NotFound, check_email, check_storable
from callerid.config import Settings
from callerid.numbers import nodes
from callerid.numbers.nodes import NodeRef, TreeNode
from callerid.webhooks import mail

INVITE = "invite"
RESET = "reset"
PASSWORD_MAX_LENGTH = 256


@dataclass(frozen=True)
class MemberView:
    member: Member
    scope: TreeNode | None

    @property
    def role_title(self) -> str:
        return permissions.ROLE_TITLES.get(self.member.role, self.member.role)


# --- who is acting ----------------------------------------------------------------------------------------


async def actor_of(session: AsyncSession, member: Member) -> Actor:
    scope = await _scope_node(session, member)
    return Actor(member.id, member.account_id, member.email, member.role, scope)


async def _scope_node(session: AsyncSession, member: Member) -> TreeNode | None:
    if member.scope_kind is None or member.scope_id is None:
        return None
    return await nodes.find_node(session, member.account_id, NodeRef(member.scope_kind, member.scope_id))


def _target_of(view: MemberView) -> Target:
    return ACCOUNT_WIDE if view.scope is None else Target(node=view.scope)


# --- passwords ----------------------------------------------------------------------------------------------


def check_password(settings: Settings, password: str, *, email: str, field: str = "password") -> str:
    """The console's password rule: long enough, not absurdly long, not the e-mail address itself."""
    minimum = settings.console_password_min_length
    if len(password) < minimum:
        raise AccountsError(f"password must be at least {minimum} characters", field=field)
    if len(password) > PASSWORD_MAX_LENGTH:
        raise AccountsError(f"password must be at most {PASSWORD_MAX_LENGTH} characters", field=field)
    if password.strip().lower() == email.lower():
        raise AccountsError("password must not be your e-mail address", field=field)
    return password


async def end_sessions(session: AsyncSession, member_id: uuid.UUID) -> int:
    """Sign the member out everywhere at once (revocation, new password)."""
    result = await session.execute(delete(ConsoleSession).where(ConsoleSession.member_id == member_id))
    return int(getattr(result, "rowcount", 0) or 0)


async def set_password(session: AsyncSession, member: Member, password_hash: str) -> None:
    """A new password ends every session and trusted browser of the member and voids their open links."""
    member.password_hash = password_hash
    member.password_changed_at = clock.now()
    await end_sessions(session, member.id)
    await session.execute(delete(TrustedBrowser).where(TrustedBrowser.member_id == member.id))
    await session.execute(
        update(MemberToken)
        .where(MemberToken.member_id == member.id, MemberToken.used_at.is_(None))
        .values(used_at=clock.now())
    )
    await session.flush()


# --- one-time links -----------------------------------------------------------------------------------------


async def issue_link(session: AsyncSession, member: Member, purpose: str, lifetime: timedelta) -> str:
    """A one-time link token (stored hashed); earlier unused links of the same purpose stop working."""
    now = clock.now()
    await session.execute(
        update(MemberToken)
        .where(MemberToken.member_id == member.id, MemberToken.purpose == purpose, MemberToken.used_at.is_(None))
        .values(used_at=now)
    )
    token = new_link_token()
    session.add(
        MemberToken(
            token_hash=sha256_hex(token),
            member_id=member.id,
            purpose=purpose,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    await session.flush()
    return token


async def redeem_link(session: AsyncSession, token: str, purpose: str) -> Member | None:
    """The member a live link of ``purpose`` is for, marking it used; None when unknown, used or expired."""
    row = await session.get(MemberToken, sha256_hex(token), with_for_update=True)
    if row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= clock.now():
        return None
    member = await session.get(Member, row.member_id)
    if member is None:
        return None
    row.used_at = clock.now()
    await session.flush()
    return member


async def peek_link(session: AsyncSession, token: str, purpose: str) -> Member | None:
    """Like ``redeem_link`` without using it up (to show the form the link leads to)."""
    row = await session.get(MemberToken, sha256_hex(token))
    if row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= clock.now():
        return None
    return await session.get(Member, row.member_id)


# --- listing ------------------------------------------------------------------------------------------------


async def list_members(session: AsyncSession, actor: Actor) -> list[MemberView]:
    """The members the actor may see: everyone for admins, their subtree (themselves included) for owners."""
    permissions.authorize(actor, Permission.VIEW_MEMBERS)
    rows = await session.scalars(
        select(Member).where(Member.account_id == actor.account_id).order_by(Member.created_at, Member.email)
    )
    tree = {node.ref: node for node in await nodes.account_tree(session, actor.account_id)}
    views = []
    for member in rows.all():
        scope = None
        if member.scope_kind is not None and member.scope_id is not None:
            scope = tree.get(NodeRef(member.scope_kind, member.scope_id))
        view = MemberView(member, scope)
        if member.id == actor.member_id or _visible(actor, view):
            views.append(view)
    return views


def _visible(actor: Actor, view: MemberView) -> bool:
    return permissions.allowed(actor, Permission.MANAGE_MEMBERS, _target_of(view))


async def get_member(session: AsyncSession, actor: Actor, member_id: uuid.UUID) -> MemberView:
    permissions.authorize(actor, Permission.VIEW_MEMBERS)
    member = await session.get(Member, member_id)
    if member is None or member.account_id != actor.account_id:
        raise NotFound("member not found")
    view = MemberView(member, await _scope_node(session, member))
    if member.id != actor.member_id and not _visible(actor, view):
        raise NotFound("member not found")
    return view


async def assignable_nodes(session: AsyncSession, actor: Actor, role: str) -> list[TreeNode]:
    """The nodes the actor may bind a member of ``role`` to (empty for admins, who have none); archived nodes are
    not offered."""
    kind = permissions.ROLE_NODE_KIND.get(role)
    if kind is None:
        return []
    return [
        node
        for node in await nodes.account_tree(session, actor.account_id)
        if node.ref.kind == kind
        and not node.archived
        and permissions.allowed(actor, Permission.MANAGE_MEMBERS, Target(node, role))
    ]


def assignable_roles(actor: Actor) -> list[str]:
    """Roles at or below the actor's own."""
    return [role for role in permissions.ROLES if permissions.ROLE_RANK[role] >= permissions.ROLE_RANK[actor.role]]


# --- changing members -----------------------------------------------------------------------------------------


async def _resolve_role_scope(
    session: AsyncSession, actor: Actor, role: str, node_id: uuid.UUID | None
) -> TreeNode | None:
    """Check that the actor may give ``role`` bound to ``node_id``; the node (None for admins)."""
    if role not in permissions.ROLES:
        raise AccountsError("choose a role", field="role")
    if not permissions.allowed(actor, Permission.MANAGE_MEMBERS, Target(actor.scope, role)):
        raise AccountsError("you can only give roles at or below your own", field="role")
    node: TreeNode | None = None
    kind = permissions.ROLE_NODE_KIND.get(role)
    if kind is not None:
        if node_id is None:
            raise AccountsError(f"choose the {kind} this {permissions.ROLE_TITLES[role]} is responsible for", "scope")
        node = await nodes.find_node(session, actor.account_id, NodeRef(kind, node_id))
        if node is None:
            raise AccountsError(f"choose a {kind} of this account", field="scope")
        if node.archived:
            raise AccountsError(f"{node.title} is archived; choose another {kind}", field="scope")
    if not permissions.allowed(actor, Permission.MANAGE_MEMBERS, Target(node, role)):
        raise AccountsError(f"choose a {kind} inside your part of the account", field="scope")
    return node


async def _lock_account(session: AsyncSession, account_id: uuid.UUID) -> ClientAccount:
    """Serialise member changes of one account (PostgreSQL row lock; SQLite has one writer anyway)."""
    account = await session.get(ClientAccount, account_id, with_for_update=True)
    if account is None:
        raise NotFound("account not found")
    return account


async def _active_admins(session: AsyncSession, account_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Member)
        .where(Member.account_id == account_id, Member.role == ADMIN, Member.status == MEMBER_ACTIVE)
    )
    return int(count or 0)


@dataclass(frozen=True)
class Invitation:
    member: Member
    link: str


async def invite_member(
    session: AsyncSession,
    settings: Settings,
    actor: Actor,
    *,
    email: str,
    role: str,
    node_id: uuid.UUID | None = None,
) -> Invitation:
    """A new member in state ``invited`` and an e-mailed one-time link (valid ``console_invite_days``) to set a
    password. Inviting an address that is already a member is refused (a revoked one is restored instead)."""
    address = check_email(email, what="email")
    node = await _resolve_role_scope(session, actor, role, node_id)
    account = await _lock_account(session, actor.account_id)
    existing = await session.scalar(
        select(Member).where(Member.account_id == actor.account_id, Member.email == address)
    )
    if existing is not None:
        state = {MEMBER_REVOKED: "has had access revoked; restore it from their page"}.get(
            existing.status, "is already a member of this account"
        )
        raise AccountsError(f"{address} {state}", field="email")
    member = Member(
        id=uuid.uuid4(),
        account_id=actor.account_id,
        email=address,
        role=role,
        scope_kind=None if node is None else node.ref.kind,
        scope_id=None if node is None else node.ref.id,
        password_hash="",
        status=MEMBER_INVITED,
        two_factor=False,
        failure_emails=role == ADMIN,
        invited_by_email=actor.email,
        created_at=clock.now(),
    )
    session.add(member)
    await session.flush()
    link = await send_invitation(session, settings, member, account_name=account.name)
    return Invitation(member, link)


async def send_invitation(session: AsyncSession, settings: Settings, member: Member, *, account_name: str) -> str:
    """(Re)send the invitation mail with a fresh link; earlier links stop working."""
    token = await issue_link(session, member, INVITE, timedelta(days=settings.console_invite_days))
    link = f"{settings.base_url}/console/invitation/{token}"
    role = permissions.ROLE_TITLES.get(member.role, member.role)
    await mail.queue_mail(
        session,
        account_id=member.account_id,
        recipients=[member.email],
        subject=f"You are invited to {account_name} on callerid",
        body=(
            f"{member.invited_by_email or 'An admin'} invited you to the callerid console of {account_name} "
            f"as {role}.\n\n"
            f"Set your password and sign in here (the link works once, for {settings.console_invite_days} days):\n"
            f"{link}\n\nIf you did not expect this, ignore this e-mail.\n"
        ),
    )
    return link


async def resend_invitation(session: AsyncSession, settings: Settings, actor: Actor, member_id: uuid.UUID) -> str:
    view = await get_member(session, actor, member_id)
    permissions.authorize(actor, Permission.MANAGE_MEMBERS, _target_of(view))
    if view.member.status != MEMBER_INVITED:
        raise AccountsError(f"{view.member.email} has already accepted the invitation")
    account = await _lock_account(session, actor.account_id)
    return await send_invitation(session, settings, view.member, account_name=account.name)


async def accept_invitation(session: AsyncSession, settings: Settings, *, token: str, password: str) -> Member:
    """Set the invited member's password from their link; they are active from now on."""
    member = await peek_link(session, token, INVITE)
    if member is None or member.status != MEMBER_INVITED:
        raise AccountsError("this invitation link is not valid any more; ask for a new one", field="token")
    check_password(settings, password, email=member.email)
    await redeem_link(session, token, INVITE)
    member.status = MEMBER_ACTIVE
    await set_password(session, member, hash_password(password))
    return member


async def change_role(
    session: AsyncSession, actor: Actor, member_id: uuid.UUID, *, role: str, node_id: uuid.UUID | None = None
) -> MemberView:
    view = await get_member(session, actor, member_id)
    if view.member.id == actor.member_id:
        raise AccountsError("you cannot change your own role; ask another admin", field="role")
    permissions.authorize(actor, Permission.MANAGE_MEMBERS, _target_of(view))
    node = await _resolve_role_scope(session, actor, role, node_id)
    await _lock_account(session, actor.account_id)
    member = view.member
    demoting_admin = member.role == ADMIN and role != ADMIN and member.status == MEMBER_ACTIVE
    if demoting_admin and await _active_admins(session, actor.account_id) <= 1:
        raise AccountsError("the account must keep at least one active admin", field="role")
    member.role = role
    member.scope_kind = None if node is None else node.ref.kind
    member.scope_id = None if node is None else node.ref.id
    if role != ADMIN:
        member.failure_emails = False
    await session.flush()
    return MemberView(member, node)


async def _changeable(session: AsyncSession, actor: Actor, member_id: uuid.UUID, verb: str) -> Member:
    view = await get_member(session, actor, member_id)
    if view.member.id == actor.member_id:
        raise AccountsError(f"you cannot {verb} yourself")
    permissions.authorize(actor, Permission.MANAGE_MEMBERS, _target_of(view))
    await _lock_account(session, actor.account_id)
    member = view.member
    if member.role == ADMIN and member.status == MEMBER_ACTIVE and await _active_admins(session, actor.account_id) <= 1:
        raise AccountsError("the account must keep at least one active admin")
    return member


async def revoke_member(session: AsyncSession, actor: Actor, member_id: uuid.UUID) -> Member:
    """Disable sign-in and end every session at once; the member and their history stay (restorable)."""
    member = await _changeable(session, actor, member_id, "revoke")
    if member.status == MEMBER_REVOKED:
        return member
    member.status = MEMBER_REVOKED
    member.revoked_at = clock.now()
    await end_sessions(session, member.id)
    await session.execute(delete(TrustedBrowser).where(TrustedBrowser.member_id == member.id))
    await session.execute(
        update(MemberToken)
        .where(MemberToken.member_id == member.id, MemberToken.used_at.is_(None))
        .values(used_at=clock.now())
    )
    await session.flush()
    return member


async def restore_member(session: AsyncSession, actor: Actor, member_id: uuid.UUID) -> Member:
    """Give a revoked member access again (with their old password; invited ones go back to invited)."""
    view = await get_member(session, actor, member_id)
    permissions.authorize(actor, Permission.MANAGE_MEMBERS, _target_of(view))
    member = view.member
    if member.status != MEMBER_REVOKED:
        raise AccountsError(f"{member.email} has access already")
    member.status = MEMBER_ACTIVE if member.password_hash else MEMBER_INVITED
    member.revoked_at = None
    await session.flush()
    return member


async def delete_member(session: AsyncSession, actor: Actor, member_id: uuid.UUID) -> str:
    """Remove the member for good (sessions, links and trusted browsers go with the row). Returns the e-mail."""
    member = await _changeable(session, actor, member_id, "delete")
    email = member.email
    await session.delete(member)
    await session.flush()
    return email


# --- the member's own sign-in settings -------------------------------------------------------------------------


async def set_own_two_factor(session: AsyncSession, actor: Actor, *, enabled: bool) -> None:
    permissions.authorize(actor, Permission.OWN_PROFILE)
    await session.execute(update(Member).where(Member.id == actor.member_id).values(two_factor=enabled))


# --- account settings -------------------------------------------------------------------------------------------


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise AccountsError(f"timezone {value!r} is not an IANA timezone (e.g. Asia/Kolkata)", "timezone") from None
    return value


async def update_account_settings(
    session: AsyncSession,
    actor: Actor,
    *,
    name: str,
    timezone: str,
    failure_email_member_ids: list[uuid.UUID],
    require_two_factor: bool,
) -> ClientAccount:
    """Account name, timezone (Call Me Back uses it), which admins get webhook-failure e-mails, 2FA policy."""
    permissions.authorize(actor, Permission.MANAGE_ACCOUNT)
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise AccountsError("account name must be between 1 and 200 characters", field="name")
    check_storable(name, "account name", field="name")
    check_timezone(timezone)
    account = await _lock_account(session, actor.account_id)
    admins = list(
        (
            await session.scalars(
                select(Member).where(
                    Member.account_id == actor.account_id, Member.role == ADMIN, Member.status != MEMBER_REVOKED
                )
            )
        ).all()
    )
    chosen = set(failure_email_member_ids)
    if not chosen & {admin.id for admin in admins}:
        raise AccountsError("choose at least one admin to receive webhook-failure e-mails", field="failure_emails")
    for admin in admins:
        admin.failure_emails = admin.id in chosen
    account.name = name
    account.timezone = timezone
    account.require_two_factor = require_two_factor
    await session.flush()
    return account


async def failure_notice_recipients(session: AsyncSession, account_id: uuid.UUID) -> list[str]:
    """Who gets the webhook-failure e-mail (SPEC §9.6): the active admins chosen in the settings; every active
    admin when none is chosen (an account never goes unwarned)."""
    rows = (
        await session.execute(
            select(Member.email, Member.failure_emails)
            .where(Member.account_id == account_id, Member.role == ADMIN, Member.status == MEMBER_ACTIVE)
            .order_by(Member.email)
        )
    ).all()
    chosen = [row.email for row in rows if row.failure_emails]
    return chosen or [row.email for row in rows]
