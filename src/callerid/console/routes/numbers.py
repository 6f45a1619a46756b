"""Numbers (SPEC §5.9, §7.5): every business number of the account (an owner: of the feature sets in their subtree)
with its state, filters in the URL, pagination, a CSV of exactly the filtered view, and delisting chosen numbers
after a confirmation that shows what ND would do (``numbers.preview``). The query is NN's (``numbers.browse``)."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from callerid.accounts.permissions import Permission, Target, allowed
from callerid.console import web
from callerid.console.routes.listing import DELIST_BUCKETS, bucket_rows
from callerid.failures import DomainError
from callerid.http import Page
from callerid.numbers import browse, preview
from callerid.numbers.checks import VISIBLE_STATES
from callerid.numbers.listing import Classification
from callerid.numbers.models import FeatureSet
from callerid.numbers.nodes import PROCESS, NodeRef, TreeNode, account_tree, find_node
from callerid.numbers.tree import TreeFilters, list_feature_sets
from callerid.phone import normalise_phone
from callerid.timefmt import iso_z

router = APIRouter()
PER_PAGE = 50
CSV_PAGE = 1000
STATUS_TITLES = {"pending": "Pending", "listed": "Listed", "delisting": "Delisting", "failed": "Failed"}
STATUS_TONES = {"pending": "pending", "listed": "success", "delisting": "pending", "failed": "danger"}
MATCHES = {"contains": "contains", "equals": "is exactly"}
FILTER_NAMES = ("status", "feature_set", "node", "number", "match")


@dataclass
class Filters:
    """The Numbers page's filters: as typed (``shown``, for the form and links), as a search, and any errors."""

    shown: dict[str, str]
    search: browse.NumberSearch
    errors: dict[str, str] = field(default_factory=dict)


def _scope(page: web.Page) -> TreeFilters | None:
    return None if page.actor.scope is None else browse.subtree_filters(page.actor.scope)


async def _visible_nodes(page: web.Page) -> list[TreeNode]:
    async with page.runtime.db.session() as session:
        nodes = await account_tree(session, page.account_id)
    return [node for node in nodes if allowed(page.actor, Permission.VIEW_NUMBERS, Target(node))]


async def _visible_sets(page: web.Page) -> list[tuple[str, str]]:
    """(id, name) of the feature sets the member may see, newest first (the filter's options)."""
    async with page.runtime.db.session() as session:
        views, _total = await list_feature_sets(
            session, page.account_id, _scope(page) or TreeFilters(), offset=0, limit=1000
        )
    return [(str(view.feature_set.id), view.feature_set.name) for view in views]


def _filters(request: Request, page: web.Page, nodes: list[TreeNode], sets: list[tuple[str, str]]) -> Filters:
    query = request.query_params
    shown = {name: query.get(name, "").strip()[:80] for name in FILTER_NAMES}
    shown["match"] = shown["match"] if shown["match"] in MATCHES else "contains"
    errors: dict[str, str] = {}
    tree: dict[str, uuid.UUID] = {}
    status = None
    if shown["status"]:
        if shown["status"] in VISIBLE_STATES:
            status = shown["status"]
        else:
            errors["status"] = "choose a status from the list"
    if shown["feature_set"]:
        if shown["feature_set"] in {set_id for set_id, _name in sets}:
            tree["feature_set_id"] = uuid.UUID(shown["feature_set"])
        else:
            errors["feature_set"] = "choose a feature set from the list"
    if shown["node"]:
        chosen = next((n for n in nodes if _node_value(n) == shown["node"]), None)
        if chosen is None:
            errors["node"] = "choose a part of the organisation from the list"
        else:
            tree.update(_tree_values(chosen))
    number = shown["number"]
    if number:
        if shown["match"] == "equals" and normalise_phone(number) is None:
            errors["number"] = "number must be a phone number: 10-15 digits, an optional leading +"
        elif not any(ch.isdigit() for ch in number):
            errors["number"] = "number must contain digits"
    search = browse.NumberSearch(
        tree=TreeFilters(**tree),
        scope=_scope(page),
        status=status,
        number=number or None,
        exact=shown["match"] == "equals",
    )
    return Filters(shown, search, errors)


def _node_value(node: TreeNode) -> str:
    """A node in the URL: ``process:<id>``."""
    return f"{node.ref.kind}:{node.ref.id}"


def _tree_values(node: TreeNode) -> dict[str, uuid.UUID]:
    chosen = browse.subtree_filters(node)
    return {name: value for name, value in vars(chosen).items() if value is not None}


def _shown_filters(filters: Filters) -> dict[str, str]:
    """The filters worth keeping in links (``match`` only with a number)."""
    kept = {name: value for name, value in filters.shown.items() if value}
    if not filters.shown["number"]:
        kept.pop("match", None)
    return kept


@router.get("/console/numbers")
async def numbers_page(request: Request) -> Response:
    page = await web.page_for(request, Permission.VIEW_NUMBERS)
    nodes, sets = await _visible_nodes(page), await _visible_sets(page)
    filters = _filters(request, page, nodes, sets)
    number = web.page_number(request)
    views, total = [], 0
    if not filters.errors:
        async with page.runtime.db.session() as session:
            views, total = await browse.search_numbers(
                session, page.account_id, filters.search, offset=(number - 1) * PER_PAGE, limit=PER_PAGE
            )
    kept = _shown_filters(filters)
    return web.render(
        request,
        "numbers/list.html",
        {
            "numbers": views,
            "total": total,
            "current": number,
            "total_pages": Page(number, PER_PAGE).total_pages(total),
            "filters": filters.shown,
            "kept": kept,
            "errors": filters.errors,
            "status_options": [("", "Every status"), *STATUS_TITLES.items()],
            "set_options": [("", "Every feature set"), *sets],
            "node_options": [("", "The whole organisation" if page.actor.scope is None else "All of your part")]
            + [(_node_value(n), n.title) for n in nodes],
            "match_options": list(MATCHES.items()),
            "status_titles": STATUS_TITLES,
            "status_tones": STATUS_TONES,
            "has_sets": bool(sets),
        },
        page=page,
        status_code=400 if filters.errors else 200,
    )


@router.get("/console/numbers/export.csv")
async def export_numbers(request: Request) -> Response:
    page = await web.page_for(request, Permission.VIEW_NUMBERS)
    nodes, sets = await _visible_nodes(page), await _visible_sets(page)
    filters = _filters(request, page, nodes, sets)
    if filters.errors:
        raise web.PageError(400, "Filters not valid", "; ".join(filters.errors.values()))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "phone_number", "status", "failure_reason", "feature_set_id", "feature_set_name", "department",
            "operation", "process", "subprocess", "phone_type", "label_name", "call_me_back", "created_by_email",
            "created_at", "updated_at",
        ]
    )  # fmt: skip
    offset = 0
    async with page.runtime.db.session() as session:
        while True:  # in pages, so 100,000 numbers never sit in memory as objects at once
            views, _total = await browse.search_numbers(
                session, page.account_id, filters.search, offset=offset, limit=CSV_PAGE
            )
            for view in views:
                writer.writerow(
                    [
                        view.phone_number, view.status, view.failure_reason or "", view.feature_set_id or "",
                        view.feature_set_name, view.department, view.operation, view.process, view.subprocess,
                        view.phone_type, view.label_name, "enabled" if view.call_me_back else "disabled",
                        view.created_by_email, iso_z(view.created_at), iso_z(view.updated_at),
                    ]
                )  # fmt: skip
            if len(views) < CSV_PAGE:
                break
            offset += CSV_PAGE
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={**web.SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="numbers.csv"'},
    )


# --- delisting chosen numbers ----------------------------------------------------------------------------------


@dataclass
class Selection:
    """Chosen numbers grouped by the feature set they are in (only sets the member may manage)."""

    by_set: dict[uuid.UUID, list[str]] = field(default_factory=dict)
    set_names: dict[uuid.UUID, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)  # not the account's, not visible, or in no feature set

    @property
    def count(self) -> int:
        return sum(len(numbers) for numbers in self.by_set.values())


async def _selection(page: web.Page, chosen: list[str]) -> Selection:
    """The chosen numbers by feature set; anything the member may not delist is "unknown", like a wrong number."""
    wanted: list[str] = []
    selection = Selection()
    for raw in chosen:
        number = normalise_phone(raw)
        if number is None:
            selection.unknown.append(raw)
        elif number not in wanted:
            wanted.append(number)
    async with page.runtime.db.session() as session:
        found = await preview.feature_sets_of_numbers(session, page.account_id, wanted, states=VISIBLE_STATES)
        allowed_sets: dict[uuid.UUID, bool] = {}
        for number in wanted:
            set_id = found.get(number)
            if set_id is not None and set_id not in allowed_sets:
                feature_set = await session.get(FeatureSet, set_id)
                node = (
                    await find_node(session, page.account_id, NodeRef(PROCESS, feature_set.process_id))
                    if feature_set is not None
                    else None
                )
                allowed_sets[set_id] = node is not None and allowed(page.actor, Permission.MANAGE_NUMBERS, Target(node))
                if feature_set is not None:
                    selection.set_names[set_id] = feature_set.name
            if set_id is None or not allowed_sets[set_id]:
                selection.unknown.append(number)
            else:
                selection.by_set.setdefault(set_id, []).append(number)
    return selection


def _chosen(values: list[str], maximum: int) -> list[str]:
    return [value.strip()[:40] for value in values if value.strip()][:maximum]


def _back(values: dict[str, str]) -> str:
    """The Numbers page with the filters it was on."""
    kept = {name: values.get(name, "")[:80] for name in FILTER_NAMES if values.get(name)}
    return "/console/numbers" + ("?" + urlencode(kept) if kept else "")


@router.get("/console/numbers/delist")
async def confirm_delist(request: Request) -> Response:
    page = await web.page_for(request, Permission.MANAGE_NUMBERS)
    chosen = _chosen(request.query_params.getlist("selected"), page.settings.number_request_max)
    back = _back({name: request.query_params.get(name, "") for name in FILTER_NAMES})
    selection = await _selection(page, chosen)
    answers: dict[uuid.UUID, Classification] = {}
    error = None
    if selection.by_set:
        try:
            answers = await preview.preview_delisting(
                page.runtime.db,
                page.settings,
                account_id=page.account_id,
                numbers_by_set=selection.by_set,
                created_by_email=page.actor.email,
            )
        except DomainError as exc:
            error = str(exc)
    groups = [
        {"id": set_id, "name": selection.set_names.get(set_id, ""), "buckets": bucket_rows(answer, DELIST_BUCKETS)}
        for set_id, answer in answers.items()
    ]
    delisted = sum(answer.accepted + len(answer.held) for answer in answers.values())
    return web.render(
        request,
        "numbers/delist.html",
        {
            "selection": selection,
            "groups": groups,
            "delisted": delisted,
            "back": back,
            "error": error,
            "filters": {name: request.query_params.get(name, "")[:80] for name in FILTER_NAMES},
        },
        page=page,
    )


@router.post("/console/numbers/delist")
async def delist_chosen(request: Request) -> Response:
    page, form = await web.form_for(request, Permission.MANAGE_NUMBERS)
    chosen = _chosen([v for v in form.getlist("selected") if isinstance(v, str)], page.settings.number_request_max)
    back = _back({name: web.text(form, name) for name in FILTER_NAMES})
    selection = await _selection(page, chosen)
    if not selection.by_set:
        return web.redirect(back, flash="Nothing delisted: choose numbers of your feature sets first")
    try:
        async with page.runtime.db.transaction() as session:
            answers = await preview.delist_by_set(
                session,
                page.settings,
                account_id=page.account_id,
                numbers_by_set=selection.by_set,
                created_by_email=page.actor.email,
            )
    except DomainError as exc:
        return web.redirect(back, flash=f"Nothing delisted: {exc}")
    accepted = sum(answer.accepted for answer in answers.values())
    held = sum(len(answer.held) for answer in answers.values())
    message = f"Delisting {accepted:,} number{'s' if accepted != 1 else ''}"
    if held:
        message += f"; {held:,} once the job running for them ends"
    jobs = [(set_id, answer.job_id) for set_id, answer in answers.items() if answer.job_id is not None]
    if len(jobs) == 1:
        set_id, job_id = jobs[0]
        return web.redirect(f"/console/feature-sets/{set_id}/listing/jobs/{job_id}", flash=message)
    return web.redirect(back, flash=message)
