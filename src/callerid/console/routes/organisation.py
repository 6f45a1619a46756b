"""Organisation (SPEC §10.3): the account's tree of departments > operations > processes > sub-processes, with each
node's id to copy (the API's FS/NN filters take them); adding, renaming, archiving and restoring nodes. Who may do
what, and every rule, is ``numbers.organisation``; this module parses, calls and renders."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from callerid.accounts.permissions import Permission
from callerid.console import web
from callerid.failures import Forbidden, NotFound
from callerid.numbers import calling_operations, organisation
from callerid.numbers.checks import NumbersError
from callerid.numbers.nodes import DEPARTMENT, OPERATION, TreeNode
from callerid.numbers.organisation import SUB_PROCESS, ArchiveImpact
from callerid.timefmt import iso_z

router = APIRouter()
VIEW = Permission.VIEW_ORGANISATION
MANAGE = Permission.MANAGE_ORGANISATION
KIND_TITLES = {DEPARTMENT: "Department", OPERATION: "Operation", "process": "Process", SUB_PROCESS: "Sub-process"}
PLURALS = {DEPARTMENT: "departments", OPERATION: "operations", "process": "processes", SUB_PROCESS: "sub-processes"}
# Where each of the service's messages belongs on the form (its first words name the input).
FIELD_OF_MESSAGE = (
    ("department name", "name"),
    ("operation name", "name"),
    ("process name", "name"),
    ("sub-process name", "name"),
    ("there is already", "name"),
    ("calling operation", "calling_operation"),
    ("choose a calling operation", "calling_operation"),
    ("department", "parent"),
    ("operation", "parent"),
    ("process", "parent"),
    ("sub-process", "parent"),
    ("only admins", "parent"),
    ("nothing can be added", "parent"),
)
# What the API shows of each kind's name, for the rename confirmation.
RENAME_EFFECT = {
    DEPARTMENT: "in this console and in the API's feature sets (department_name) and numbers (department)",
    OPERATION: "in this console; the API shows the operation's calling operation instead, which does not change",
    "process": "in this console and in the API's feature sets (process_name) and numbers (process)",
    SUB_PROCESS: "in this console and in the API's feature sets (sub_process_name) and numbers (subprocess)",
}


def _failure(exc: NotFound | Forbidden) -> web.PageError:
    if isinstance(exc, NotFound):
        return web.not_found()
    return web.PageError(403, "Not allowed", exc.message[:1].upper() + exc.message[1:] + ".")


async def _changeable_node(page: web.Page, node_id: str) -> TreeNode:
    """The node the page is about, when the viewer may change it (404 outside their subtree, 403 their own)."""
    async with page.runtime.db.session() as session:
        try:
            node = await organisation.visible_node(session, page.actor, web.path_uuid(node_id))
        except NotFound as exc:
            raise _failure(exc) from None
    if not organisation.may_change(page.actor, node):
        kind = organisation.kind_of(node)
        raise _failure(Forbidden(f"you cannot change {node.title}: it is the {kind} you are responsible for"))
    return node


# --- the tree ----------------------------------------------------------------------------------------------------


def _show_archived(request: Request) -> bool:
    return request.query_params.get("archived", "") in ("1", "on", "true")


def _main_action(page: web.Page) -> tuple[str, str] | None:
    """Admins add departments; an owner adds below their own node, when it takes children and is in use."""
    if page.actor.is_admin:
        return "/console/organisation/new", "Add department"
    scope = page.actor.scope
    if scope is None or not organisation.may_add_under(page.actor, scope):
        return None
    return f"/console/organisation/new?parent={scope.ref.id}", f"Add {organisation.child_kind(scope)}"


async def _tree_page(page: web.Page, *, show_archived: bool, error: str = "", status_code: int = 200) -> Response:
    async with page.runtime.db.session() as session:
        tree = await organisation.organisation(session, page.actor, include_archived=show_archived)
    summary = [
        f"{tree.counts[kind]} {PLURALS[kind] if tree.counts[kind] != 1 else kind}"
        for kind in PLURALS
        if tree.counts[kind]
    ]
    return web.render(
        page.request,
        "organisation/tree.html",
        {
            "tree": tree,
            "summary": summary,
            "filters": {"archived": "1" if show_archived else ""},
            "main_action": _main_action(page),
            "kind_titles": KIND_TITLES,
            "errors": {"form": error} if error else {},
        },
        page=page,
        status_code=status_code,
    )


@router.get("/console/organisation")
async def tree_page(request: Request) -> Response:
    page = await web.page_for(request, VIEW)
    return await _tree_page(page, show_archived=_show_archived(request))


@router.get("/console/organisation/export.csv")
async def export_tree(request: Request) -> Response:
    page = await web.page_for(request, VIEW)
    async with page.runtime.db.session() as session:
        tree = await organisation.organisation(session, page.actor, include_archived=_show_archived(request))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["id", "kind", "name", "path", "parent_id", "calling_operation", "status", "archived_at", "created_at"]
    )
    for shown in tree.walk():
        node = shown.node
        writer.writerow(
            [
                shown.id,
                shown.kind,
                node.name,
                node.title,
                node.path[-2].id if len(node.path) > 1 else "",
                shown.calling_operation,
                "archived" if shown.archived_at else "active",
                iso_z(shown.archived_at) if shown.archived_at else "",
                iso_z(shown.created_at),
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={**web.SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="organisation.csv"'},
    )


# --- adding ------------------------------------------------------------------------------------------------------


async def _add_form(
    page: web.Page, parent_raw: str, values: dict[str, str], errors: dict[str, str], *, choose: bool
) -> dict[str, Any]:
    """The add form: under one given node (``?parent=``), a department (admins, no parent), or, for an owner who
    came without one, a choice of where (``choose``)."""
    async with page.runtime.db.session() as session:
        parent: TreeNode | None = None
        if parent_raw and not choose:
            try:
                parent = await organisation.visible_node(session, page.actor, web.path_uuid(parent_raw))
            except NotFound as exc:
                raise _failure(exc) from None
        choices = await organisation.parent_choices(session, page.actor) if choose else []
        entries = await calling_operations.calling_operations(session, include_retired=False)
    kind = organisation.child_kind(parent)
    if not choose and (kind is None or not organisation.may_add_under(page.actor, parent)):
        if parent is not None and parent.archived:
            raise web.PageError(400, "Archived", f"{parent.title} is archived: restore it before adding to it.")
        if parent is not None:
            raise web.PageError(400, "Nothing to add here", f"Nothing can be added under {parent.title}.")
        raise _failure(Forbidden("only admins add departments"))
    # Grouped by what would be added: "New operation in" Sales, "New process in" Sales / Delivery, ...
    groups: dict[str, list[tuple[str, str]]] = {}
    if organisation.may_add_under(page.actor, None):
        groups["New department"] = [("", "In the account")]
    for node in choices:
        groups.setdefault(f"New {organisation.child_kind(node)} in", []).append((str(node.ref.id), node.title))
    placeholder = [] if "New department" in groups else [("", "Choose where")]
    return {
        "parent": parent,
        "kind": kind,
        "choose": choose,
        "parent_options": placeholder + list(groups.items()),
        "has_choices": bool(choices) or "New department" in groups,
        "needs_calling_operation": kind == OPERATION or (choose and any(n.ref.kind == DEPARTMENT for n in choices)),
        "entry_options": [("", "Choose a calling operation")] + [(str(e.entry.id), e.entry.name) for e in entries],
        "has_entries": bool(entries),
        "values": values,
        "errors": errors,
        "kind_titles": KIND_TITLES,
    }


@router.get("/console/organisation/new")
async def new_node(request: Request) -> Response:
    page = await web.page_for(request, MANAGE)
    parent_raw = request.query_params.get("parent", "")
    choose = not parent_raw and not page.actor.is_admin
    values = {"parent": parent_raw, "name": "", "calling_operation": ""}
    context = await _add_form(page, parent_raw, values, {}, choose=choose)
    return web.render(request, "organisation/new.html", context, page=page)


def _uuid_or_none(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


@router.post("/console/organisation")
async def add_node(request: Request) -> Response:
    page, form = await web.form_for(request, MANAGE)
    values = {name: web.text(form, name) for name in ("parent", "name", "calling_operation")}
    choose = web.text(form, "choose") == "1"
    errors: dict[str, str] = {}
    parent_id = _uuid_or_none(values["parent"].strip())
    if values["parent"].strip() and parent_id is None:
        errors["parent"] = "choose where to add it from the list"
    else:
        try:
            async with page.runtime.db.transaction() as session:
                added = await organisation.add_node(
                    session,
                    page.actor,
                    parent_id=parent_id,
                    name=values["name"],
                    calling_operation_id=_uuid_or_none(values["calling_operation"].strip()),
                )
        except NotFound:
            errors["parent"] = "choose where to add it from the list"
        except NumbersError as exc:
            errors[exc.field or web.field_of(exc.message, FIELD_OF_MESSAGE)] = exc.message
    if errors:
        parent_raw = "" if parent_id is None or errors.get("parent") else str(parent_id)
        context = await _add_form(page, parent_raw, values, errors, choose=choose or bool(errors.get("parent")))
        return web.render(request, "organisation/new.html", context, page=page, status_code=400)
    kind = KIND_TITLES[organisation.kind_of(added)]
    return web.redirect(f"/console/organisation#node-{added.ref.id}", flash=f"{kind} {added.title} added")


# --- renaming, archiving, restoring ------------------------------------------------------------------------------


def _rename_context(node: TreeNode, name: str, errors: dict[str, str]) -> dict[str, Any]:
    kind = organisation.kind_of(node)
    return {"node": node, "kind": kind, "effect": RENAME_EFFECT[kind], "name": name, "errors": errors}


@router.get("/console/organisation/{node_id}/rename")
async def rename_form(request: Request, node_id: str) -> Response:
    page = await web.page_for(request, MANAGE)
    node = await _changeable_node(page, node_id)
    return web.render(request, "organisation/rename.html", _rename_context(node, node.name, {}), page=page)


@router.post("/console/organisation/{node_id}/rename")
async def rename(request: Request, node_id: str) -> Response:
    page, form = await web.form_for(request, MANAGE)
    node = await _changeable_node(page, node_id)
    name = web.text(form, "name")
    try:
        async with page.runtime.db.transaction() as session:
            renamed = await organisation.rename_node(session, page.actor, node.ref.id, name)
    except NumbersError as exc:
        context = _rename_context(node, name, {"name": exc.message})
        return web.render(request, "organisation/rename.html", context, page=page, status_code=400)
    return web.redirect(f"/console/organisation#node-{node.ref.id}", flash=f"{node.title} renamed to {renamed.name}")


def _archive_context(impact: ArchiveImpact, errors: dict[str, str]) -> dict[str, Any]:
    below = [
        f"{impact.below[kind]} {PLURALS[kind] if impact.below[kind] != 1 else kind}"
        for kind in PLURALS
        if impact.below[kind]
    ]
    return {
        "impact": impact,
        "node": impact.node,
        "kind": organisation.kind_of(impact.node),
        "below": below,
        "errors": errors,
    }


@router.get("/console/organisation/{node_id}/archive")
async def archive_form(request: Request, node_id: str) -> Response:
    page = await web.page_for(request, MANAGE)
    node = await _changeable_node(page, node_id)
    async with page.runtime.db.session() as session:
        impact = await organisation.archive_impact(session, page.actor, node.ref.id)
    return web.render(request, "organisation/archive.html", _archive_context(impact, {}), page=page)


@router.post("/console/organisation/{node_id}/archive")
async def archive(request: Request, node_id: str) -> Response:
    page, _ = await web.form_for(request, MANAGE)
    node = await _changeable_node(page, node_id)
    try:
        async with page.runtime.db.transaction() as session:
            await organisation.archive_node(session, page.actor, node.ref.id)
    except NumbersError as exc:
        async with page.runtime.db.session() as session:
            impact = await organisation.archive_impact(session, page.actor, node.ref.id)
        context = _archive_context(impact, {"form": exc.message})
        return web.render(request, "organisation/archive.html", context, page=page, status_code=400)
    return web.redirect("/console/organisation", flash=f"{node.title} archived; show archived nodes to restore it")


@router.post("/console/organisation/{node_id}/restore")
async def restore(request: Request, node_id: str) -> Response:
    page, _ = await web.form_for(request, MANAGE)
    node = await _changeable_node(page, node_id)
    try:
        async with page.runtime.db.transaction() as session:
            await organisation.restore_node(session, page.actor, node.ref.id)
    except NumbersError as exc:
        return await _tree_page(page, show_archived=True, error=exc.message, status_code=400)
    return web.redirect(f"/console/organisation?archived=1#node-{node.ref.id}", flash=f"{node.title} restored")
