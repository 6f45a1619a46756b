"""Feature sets (SPEC §5.6, §10.3): the list searched by name or by a number in a set, filtered by the tree and
status, with CSV; creating and editing a set; a set's page with its numbers counted and its Call Me Back hours.
Owners see and change only the sets in their subtree; any other set answers 404 like a missing one. The rules are
``numbers.tree`` (the CLI's and the API's), the Call Me Back config ``engagement.cmb``."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from callerid.accounts.permissions import Actor, Permission, Target, allowed
from callerid.console import web
from callerid.engagement import cmb
from callerid.engagement.windows import WEEKDAYS
from callerid.failures import InvalidInput, NotFound
from callerid.http import Page
from callerid.labels import queries as label_queries
from callerid.labels.models import DYNAMIC, STATIC
from callerid.numbers import feature_set_queries as queries
from callerid.numbers import tree
from callerid.numbers.models import DRAFT, FEATURE_SET_STATUSES, FeatureSet
from callerid.numbers.nodes import DEPARTMENT, OPERATION, PROCESS, NodeRef, TreeNode, account_tree, find_node
from callerid.timefmt import iso_z

router = APIRouter()
VIEW = Permission.VIEW_FEATURE_SETS
MANAGE = Permission.MANAGE_FEATURE_SETS
PER_PAGE = 50
STATUS_TITLES = {"draft": "Draft", "published": "Published", "archived": "Archived"}
STATUS_TONES = {"draft": "pending", "published": "success", "archived": "neutral"}
FILTERS = ("q", "department", "operation", "process", "status")
TEXT_FIELDS = ("name", "process", "label", "call_reason", "description", "status")
FLAGS = ("call_me_back", "survey", "secure_branding")
# Where each of the service's messages belongs on the form (its first words name the input).
FIELD_OF_MESSAGE = (
    ("feature set name", "name"),
    ("process", "process"),
    ("label", "label"),
    ("call_reason", "call_reason"),
    ("description", "description"),
    ("status", "status"),
)
TEMPLATE_GLOBALS = {"status_titles": STATUS_TITLES, "status_tones": STATUS_TONES}


# --- who sees what --------------------------------------------------------------------------------------------


def scope_filters(actor: Actor) -> tree.TreeFilters | None:
    """An owner's subtree as FS filters (a process owner's process also holds its sub-processes); None: all."""
    if actor.scope is None:
        return None
    ref = actor.scope.ref
    return tree.TreeFilters(
        department_id=ref.id if ref.kind == DEPARTMENT else None,
        operation_id=ref.id if ref.kind == OPERATION else None,
        process_id=ref.id if ref.kind == PROCESS else None,
    )


@dataclass(frozen=True)
class Loaded:
    view: tree.FeatureSetView
    node: TreeNode

    @property
    def feature_set(self) -> FeatureSet:
        return self.view.feature_set


async def feature_set_for(page: web.Page, raw_id: str, permission: Permission) -> Loaded:
    """The set ``raw_id`` when the member may act on it; 404 otherwise, the same as for a set that does not exist."""
    feature_set_id = web.path_uuid(raw_id)
    async with page.runtime.db.session() as session:
        try:
            feature_set = await tree.feature_set_of(session, page.account_id, feature_set_id)
        except NotFound:
            raise web.not_found() from None
        node = await find_node(session, page.account_id, NodeRef(PROCESS, feature_set.process_id))
        view = await tree.feature_set_view(session, feature_set.id)
    if node is None or not allowed(page.actor, permission, Target(node)):
        raise web.not_found()
    return Loaded(view, node)


def hours_summary(windows: list[dict[str, str]]) -> tuple[list[tuple[str, str]], str]:
    """Each weekday's hours for reading (touching slots run together), and how they are cut into slots."""
    hours = cmb.hours_of(windows)
    days = []
    for weekday in WEEKDAYS:
        spans = [f"{w['start']}-{w['end']}" for w in hours.windows if w["weekday"] == weekday]
        days.append((weekday, ", ".join(spans) if spans else "no callbacks"))
    slots = "each window is one slot" if hours.slot_minutes is None else f"in {hours.slot_minutes}-minute slots"
    return days, slots


# --- the list ---------------------------------------------------------------------------------------------------


async def _visible_nodes(page: web.Page) -> list[TreeNode]:
    async with page.runtime.db.session() as session:
        nodes = await account_tree(session, page.account_id)
    return [node for node in nodes if allowed(page.actor, VIEW, Target(node))]


def _filter_options(nodes: list[TreeNode]) -> dict[str, list[tuple[str, str]]]:
    def of(kind: str, everything: str) -> list[tuple[str, str]]:
        return [("", everything)] + [(str(n.ref.id), n.title) for n in nodes if n.ref.kind == kind]

    return {
        "department": of(DEPARTMENT, "All departments"),
        "operation": of(OPERATION, "All operations"),
        "process": of(PROCESS, "All processes"),
        "status": [("", "All statuses")] + [(s, STATUS_TITLES[s]) for s in FEATURE_SET_STATUSES],
    }


def _search(
    page: web.Page, request: Request, nodes: list[TreeNode]
) -> tuple[dict[str, str], queries.FeatureSetSearch, dict[str, str]]:
    """The filters as typed (for the form and links), as the query takes them, and any errors."""
    shown = {name: request.query_params.get(name, "").strip()[:100] for name in FILTERS}
    errors: dict[str, str] = {}
    chosen: dict[str, uuid.UUID] = {}
    for kind in (DEPARTMENT, OPERATION, PROCESS):
        if not shown[kind]:
            continue
        try:
            node_id = uuid.UUID(shown[kind])
        except ValueError:
            node_id = None
        if node_id is not None and any(n.ref == NodeRef(kind, node_id) for n in nodes):
            chosen[kind] = node_id
        else:
            errors[kind] = f"choose a {kind} from the list"
    if shown["status"] and shown["status"] not in FEATURE_SET_STATUSES:
        errors["status"] = "choose a status from the list"
    search = queries.FeatureSetSearch(
        text=shown["q"],
        status=shown["status"] if "status" not in errors else "",
        tree=tree.TreeFilters(
            department_id=chosen.get(DEPARTMENT), operation_id=chosen.get(OPERATION), process_id=chosen.get(PROCESS)
        ),
        scope=scope_filters(page.actor),
    )
    return shown, search, errors


def _process_paths(nodes: list[TreeNode]) -> dict[uuid.UUID, TreeNode]:
    return {node.ref.id: node for node in nodes if node.ref.kind == PROCESS}


@router.get("/console/feature-sets")
async def list_feature_sets(request: Request) -> Response:
    page = await web.page_for(request, VIEW)
    nodes = await _visible_nodes(page)
    shown, search, errors = _search(page, request, nodes)
    number = web.page_number(request)
    rows: list[queries.FeatureSetRow] = []
    total = 0
    if not errors:
        async with page.runtime.db.session() as session:
            rows, total = await queries.search_feature_sets(session, page.account_id, search, Page(number, PER_PAGE))
    return web.render(
        request,
        "feature_sets/list.html",
        {
            **TEMPLATE_GLOBALS,
            "rows": rows,
            "total": total,
            "current": number,
            "total_pages": Page(number, PER_PAGE).total_pages(total),
            "filters": shown,
            "filtered": any(shown.values()),
            "errors": errors,
            "options": _filter_options(nodes),
            "has_processes": any(n.ref.kind == PROCESS for n in nodes),
            "paths": _process_paths(nodes),
        },
        page=page,
        status_code=400 if errors else 200,
    )


@router.get("/console/feature-sets/export.csv")
async def export_feature_sets(request: Request) -> Response:
    page = await web.page_for(request, VIEW)
    nodes = await _visible_nodes(page)
    _shown, search, errors = _search(page, request, nodes)
    if errors:
        raise web.PageError(400, "Filters not valid", "; ".join(errors.values()))
    async with page.runtime.db.session() as session:
        rows, _total = await queries.search_feature_sets(session, page.account_id, search, None)
    paths = _process_paths(nodes)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "feature_set_id", "name", "status", "department", "operation", "calling_operation", "process",
            "sub_process", "label", "label_id", "call_me_back", "survey", "numbers_listed", "created_at", "updated_at",
        ]
    )  # fmt: skip
    for row in rows:
        fs, view = row.view.feature_set, row.view
        node = paths.get(fs.process_id)
        writer.writerow(
            [
                fs.id, fs.name, fs.status, view.department_name, node.names[1] if node else "",
                view.calling_operation_name, view.process_name, view.sub_process_name, row.label_name, fs.label_id,
                "yes" if fs.call_me_back else "no", "yes" if fs.survey else "no", row.listed_count,
                iso_z(fs.created_at), iso_z(fs.updated_at),
            ]
        )  # fmt: skip
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={**web.SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="feature-sets.csv"'},
    )


# --- create and edit ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choices:
    """What the form offers: processes the member may use (not archived) and the account's labels."""

    processes: list[TreeNode]
    labels: list[Any]

    def process_options(self) -> list[tuple[str, Any]]:
        # The whole path in each option: a closed select shows only the chosen option, never its group.
        return [("", "Choose a process"), *((str(node.ref.id), node.title) for node in self.processes)]

    def label_options(self) -> list[tuple[str, Any]]:
        groups = [
            ("Static labels (for feature sets)", [(str(x.id), x.name) for x in self.labels if x.label_type == STATIC]),
            ("Dynamic labels", [(str(x.id), x.name) for x in self.labels if x.label_type == DYNAMIC]),
        ]
        return [("", "Choose a label")] + [(title, items) for title, items in groups if items]

    def process(self, raw: str) -> uuid.UUID | None:
        return _one_of(raw, {node.ref.id for node in self.processes})

    def label(self, raw: str) -> uuid.UUID | None:
        return _one_of(raw, {label.id for label in self.labels})


def _one_of(raw: str, ids: set[uuid.UUID]) -> uuid.UUID | None:
    try:
        value = uuid.UUID(raw.strip())
    except ValueError:
        return None
    return value if value in ids else None


async def _choices(page: web.Page, current_process: uuid.UUID | None = None) -> Choices:
    async with page.runtime.db.session() as session:
        nodes = await account_tree(session, page.account_id)
        archived = await queries.archived_process_ids(session, page.account_id)
        labels, _total = await label_queries.search_labels(session, page.account_id, label_queries.LabelFilter(), None)
    processes = [
        node
        for node in nodes
        if node.ref.kind == PROCESS
        and (node.ref.id not in archived or node.ref.id == current_process)
        and allowed(page.actor, MANAGE, Target(node))
    ]
    return Choices(processes, sorted(labels, key=lambda label: label.name.lower()))


def _form_values(form: FormData) -> dict[str, str]:
    values = {name: web.text(form, name) for name in TEXT_FIELDS}
    values.update({flag: "on" if web.text(form, flag) else "" for flag in FLAGS})
    return values


def _values_of(loaded: Loaded, call_reason: str | None) -> dict[str, str]:
    fs = loaded.feature_set
    return {
        "name": fs.name,
        "process": str(fs.process_id),
        "label": str(fs.label_id),
        "call_reason": call_reason or "",
        "description": fs.description,
        "status": fs.status,
        "call_me_back": "on" if fs.call_me_back else "",
        "survey": "on" if fs.survey else "",
        "secure_branding": "on" if fs.secure_branding else "",
    }


def _checked(values: dict[str, str], choices: Choices) -> tuple[uuid.UUID | None, uuid.UUID | None, dict[str, str]]:
    """The chosen process and label, which must be among those offered (else the field's error)."""
    errors: dict[str, str] = {}
    process_id, label_id = choices.process(values["process"]), choices.label(values["label"])
    if process_id is None:
        errors["process"] = "choose a process or sub-process from the list"
    if label_id is None:
        errors["label"] = "choose a label from the list"
    return process_id, label_id, errors


def _form_page(
    request: Request,
    page: web.Page,
    choices: Choices,
    values: dict[str, str],
    errors: dict[str, str],
    loaded: Loaded | None = None,
) -> Response:
    context = {
        **TEMPLATE_GLOBALS,
        "values": values,
        "errors": errors,
        "loaded": loaded,
        "editing": loaded is not None,
        "process_options": choices.process_options(),
        "label_options": choices.label_options(),
        "status_options": [(s, STATUS_TITLES[s]) for s in FEATURE_SET_STATUSES],
        "has_processes": bool(choices.processes),
        "has_labels": bool(choices.labels),
    }
    return web.render(request, "feature_sets/form.html", context, page=page, status_code=400 if errors else 200)


@router.get("/console/feature-sets/new")
async def new_feature_set(request: Request) -> Response:
    page = await web.page_for(request, MANAGE)
    choices = await _choices(page)
    values = {name: "" for name in (*TEXT_FIELDS, *FLAGS)}
    values["status"] = DRAFT
    values["process"] = request.query_params.get("process", "")[:40]  # from the organisation page's "Add feature set"
    return _form_page(request, page, choices, values, {})


@router.post("/console/feature-sets")
async def create_feature_set(request: Request) -> Response:
    page, form = await web.form_for(request, MANAGE)
    values = _form_values(form)
    choices = await _choices(page)
    process_id, label_id, errors = _checked(values, choices)
    if process_id is not None and label_id is not None:
        try:
            async with page.runtime.db.transaction() as session:
                feature_set = await tree.create_feature_set(
                    session,
                    account_id=page.account_id,
                    process_id=process_id,
                    label_id=label_id,
                    name=values["name"] or None,  # empty: "New Feature Set-<n>"
                    description=values["description"],
                    call_reason=values["call_reason"] or None,
                    call_me_back=bool(values["call_me_back"]),
                    survey=bool(values["survey"]),
                    created_by_email=page.actor.email,
                    secure_branding=bool(values["secure_branding"]),
                )
                if values["status"] != DRAFT:
                    await tree.set_feature_set_status(
                        session, account_id=page.account_id, feature_set_id=feature_set.id, status=values["status"]
                    )
                if feature_set.call_me_back:
                    await cmb.ensure_cmb_config(session, account_id=page.account_id, feature_set_id=feature_set.id)
        except InvalidInput as exc:
            errors[web.field_of(str(exc), FIELD_OF_MESSAGE)] = str(exc)
    if errors:
        return _form_page(request, page, choices, values, errors)
    return web.redirect(f"/console/feature-sets/{feature_set.id}", flash=f"Feature set {feature_set.name} created")


@router.get("/console/feature-sets/{feature_set_id}")
async def feature_set_page(request: Request, feature_set_id: str) -> Response:
    page = await web.page_for(request, VIEW)
    loaded = await feature_set_for(page, feature_set_id, VIEW)
    fs = loaded.feature_set
    async with page.runtime.db.session() as session:
        counts = await queries.number_counts(session, fs.id)
        call_reason = await queries.call_reason_text(session, fs.call_reason_id)
        label = await label_queries.get_label(session, page.account_id, fs.label_id)
        config = await cmb.find_cmb_config(session, page.account_id, fs.id)
    effective = (
        cmb.DEFAULT_CMB_CONFIG
        if config is None
        else cmb.EffectiveCmbConfig(config.name, config.slot_picker, list(config.windows))
    )
    hours, slots = hours_summary(effective.windows)
    return web.render(
        request,
        "feature_sets/feature_set.html",
        {
            **TEMPLATE_GLOBALS,
            "loaded": loaded,
            "fs": fs,
            "view": loaded.view,
            "counts": counts,
            "call_reason": call_reason,
            "label": label,
            "cmb_config": effective,
            "cmb_saved": config is not None,
            "hours": hours,
            "slots": slots,
            "may_manage": allowed(page.actor, MANAGE, Target(loaded.node)),
        },
        page=page,
    )


@router.get("/console/feature-sets/{feature_set_id}/edit")
async def edit_feature_set(request: Request, feature_set_id: str) -> Response:
    page = await web.page_for(request, MANAGE)
    loaded = await feature_set_for(page, feature_set_id, MANAGE)
    async with page.runtime.db.session() as session:
        call_reason = await queries.call_reason_text(session, loaded.feature_set.call_reason_id)
    choices = await _choices(page, loaded.feature_set.process_id)
    return _form_page(request, page, choices, _values_of(loaded, call_reason), {}, loaded)


@router.post("/console/feature-sets/{feature_set_id}")
async def save_feature_set(request: Request, feature_set_id: str) -> Response:
    page, form = await web.form_for(request, MANAGE)
    loaded = await feature_set_for(page, feature_set_id, MANAGE)
    values = _form_values(form)
    choices = await _choices(page, loaded.feature_set.process_id)
    process_id, label_id, errors = _checked(values, choices)
    if process_id is not None and label_id is not None:
        try:
            async with page.runtime.db.transaction() as session:
                feature_set = await tree.update_feature_set(
                    session,
                    account_id=page.account_id,
                    feature_set_id=loaded.feature_set.id,
                    process_id=process_id,
                    label_id=label_id,
                    name=values["name"],
                    description=values["description"],
                    status=values["status"],
                    call_reason=values["call_reason"] or None,
                    call_me_back=bool(values["call_me_back"]),
                    survey=bool(values["survey"]),
                    secure_branding=bool(values["secure_branding"]),
                )
                if feature_set.call_me_back:
                    await cmb.ensure_cmb_config(session, account_id=page.account_id, feature_set_id=feature_set.id)
        except InvalidInput as exc:
            errors[web.field_of(str(exc), FIELD_OF_MESSAGE)] = str(exc)
    if errors:
        return _form_page(request, page, choices, values, errors, loaded)
    return web.redirect(f"/console/feature-sets/{feature_set.id}", flash=f"Feature set {feature_set.name} saved")
