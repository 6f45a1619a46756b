"""Members and roles (SPEC §1.2, §10.6): the list, invitations, role changes, revoke / restore / delete, and a page
that says what each role may do. Every rule is ``accounts.members`` / ``accounts.permissions``; this is HTTP."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from callerid.accounts import members, permissions
from callerid.accounts.models import MEMBER_INVITED
from callerid.accounts.permissions import Permission
from callerid.accounts.service import AccountsError, NotFound
from callerid.console import web
from callerid.numbers.nodes import TreeNode

router = APIRouter()
KIND_TITLES = {"department": "Departments", "operation": "Operations", "process": "Processes and sub-processes"}


async def _view(page: web.Page, member: str) -> members.MemberView:
    async with page.runtime.db.session() as session:
        try:
            return await members.get_member(session, page.actor, web.path_uuid(member))
        except NotFound:
            raise web.not_found() from None


def _node_options(nodes: list[TreeNode]) -> list[tuple[str, object]]:
    """Scope choices grouped by kind, each named by its path."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for node in nodes:
        groups.setdefault(node.ref.kind, []).append((str(node.ref.id), node.title))
    options: list[tuple[str, object]] = [("", "No part of the organisation (admins)")]
    options.extend((KIND_TITLES[kind], choices) for kind, choices in groups.items())
    return options


async def _role_form(page: web.Page, role: str, *, narrow: bool = False) -> dict[str, object]:
    """Role and scope choices; ``narrow`` keeps only the nodes ``role`` can be bound to (the htmx swap)."""
    async with page.runtime.db.session() as session:
        owner_nodes: list[TreeNode] = []
        for owner_role in permissions.OWNER_ROLES if not narrow else (role,):
            owner_nodes.extend(await members.assignable_nodes(session, page.actor, owner_role))
    return {
        "roles": [(r, permissions.ROLE_TITLES[r]) for r in members.assignable_roles(page.actor)],
        "node_options": _node_options(owner_nodes),
        "has_nodes": bool(owner_nodes),
        "role": role,
    }


def _node_id(form: FormData) -> uuid.UUID | None:
    raw = web.text(form, "scope")
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


@router.get("/console/members")
async def list_members(request: Request) -> Response:
    page = await web.page_for(request, Permission.VIEW_MEMBERS)
    async with page.runtime.db.session() as session:
        views = await members.list_members(session, page.actor)
    return web.render(request, "members/list.html", {"views": views}, page=page)


@router.get("/console/members/roles")
async def roles(request: Request) -> Response:
    page = await web.page_for(request, Permission.VIEW_MEMBERS)
    table = [
        (permissions.PERMISSION_TITLES[p], [p in permissions.ROLE_PERMISSIONS[r] for r in permissions.ROLES])
        for p in Permission
    ]
    return web.render(request, "members/roles.html", {"table": table, "roles": permissions.ROLES}, page=page)


@router.get("/console/members/scope-field")
async def scope_field(request: Request) -> Response:
    """The "Responsible for" field for one role (htmx swaps it in when the role changes)."""
    page = await web.page_for(request, Permission.MANAGE_MEMBERS)
    role = request.query_params.get("role", "")
    known = role in permissions.ROLES
    context = await _role_form(page, role, narrow=known)
    context.update(scope="", errors={}, narrowed=known, csrf_token=page.current.csrf_token)
    return web.render_fragment(request, "members/_scope_field.html", context)


@router.get("/console/members/invite")
async def invite_form(request: Request) -> Response:
    page = await web.page_for(request, Permission.MANAGE_MEMBERS)
    context = await _role_form(page, members.assignable_roles(page.actor)[-1])
    return web.render(request, "members/invite.html", {**context, "email": "", "scope": ""}, page=page)


@router.post("/console/members/invite")
async def invite(request: Request) -> Response:
    page, form = await web.form_for(request, Permission.MANAGE_MEMBERS)
    email, role = web.text(form, "email"), web.text(form, "role")
    try:
        async with page.runtime.db.transaction() as session:
            invitation = await members.invite_member(
                session, page.settings, page.actor, email=email, role=role, node_id=_node_id(form)
            )
    except AccountsError as exc:
        context = await _role_form(page, role)
        context.update(email=email, scope=web.text(form, "scope"), errors={exc.field or "form": exc.message})
        return web.render(request, "members/invite.html", context, page=page, status_code=400)
    return web.redirect(
        f"/console/members/{invitation.member.id}", flash=f"Invitation sent to {invitation.member.email}"
    )


@router.get("/console/members/{member}")
async def member_page(request: Request, member: str) -> Response:
    page = await web.page_for(request, Permission.VIEW_MEMBERS)
    view = await _view(page, member)
    manageable = view.member.id != page.actor.member_id and permissions.allowed(
        page.actor,
        Permission.MANAGE_MEMBERS,
        permissions.ACCOUNT_WIDE if view.scope is None else permissions.Target(view.scope),
    )
    context = await _role_form(page, view.member.role)
    context.update(view=view, manageable=manageable, scope=str(view.member.scope_id or ""))
    return web.render(request, "members/member.html", context, page=page)


@router.post("/console/members/{member}/role")
async def change_role(request: Request, member: str) -> Response:
    page, form = await web.form_for(request, Permission.MANAGE_MEMBERS)
    view = await _view(page, member)
    role = web.text(form, "role")
    try:
        async with page.runtime.db.transaction() as session:
            changed = await members.change_role(session, page.actor, view.member.id, role=role, node_id=_node_id(form))
    except AccountsError as exc:
        context = await _role_form(page, role)
        context.update(
            view=view, manageable=True, scope=web.text(form, "scope"), errors={exc.field or "form": exc.message}
        )
        return web.render(request, "members/member.html", context, page=page, status_code=400)
    return web.redirect(
        f"/console/members/{view.member.id}", flash=f"{changed.member.email} is now {changed.role_title}"
    )


@router.get("/console/members/{member}/{action}")
async def confirm(request: Request, member: str, action: str) -> Response:
    if action not in ("revoke", "delete"):
        raise web.not_found()
    page = await web.page_for(request, Permission.MANAGE_MEMBERS)
    view = await _view(page, member)
    return web.render(request, "members/confirm.html", {"view": view, "action": action}, page=page)


@router.post("/console/members/{member}/{action}")
async def act(request: Request, member: str, action: str) -> Response:
    if action not in ("revoke", "restore", "delete", "resend-invitation"):
        raise web.not_found()
    page, _ = await web.form_for(request, Permission.MANAGE_MEMBERS)
    view = await _view(page, member)
    email = view.member.email
    try:
        async with page.runtime.db.transaction() as session:
            if action == "revoke":
                await members.revoke_member(session, page.actor, view.member.id)
                message = f"Access revoked for {email}: their sessions have ended"
            elif action == "restore":
                restored = await members.restore_member(session, page.actor, view.member.id)
                message = f"Access restored for {email}" + (
                    " (they still have to accept the invitation)" if restored.status == MEMBER_INVITED else ""
                )
            elif action == "resend-invitation":
                await members.resend_invitation(session, page.settings, page.actor, view.member.id)
                message = f"A new invitation was sent to {email}; earlier links stop working"
            else:
                await members.delete_member(session, page.actor, view.member.id)
                message = f"{email} was deleted"
    except AccountsError as exc:
        context = await _role_form(page, view.member.role)
        context.update(view=view, manageable=True, scope=str(view.member.scope_id or ""), errors={"form": exc.message})
        return web.render(request, "members/member.html", context, page=page, status_code=400)
    target = "/console/members" if action == "delete" else f"/console/members/{view.member.id}"
    return web.redirect(target, flash=message)
