"""Caller ID labels (SPEC §10.2): the list with logos and ids to copy, a label's page, and creating one with a logo
upload. The logo and category rules are ``labels.service`` / ``labels.catalogue``, the same as the API and CLI."""

from __future__ import annotations

import csv
import io

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from callerid.accounts.permissions import Permission
from callerid.console import web
from callerid.http import Page
from callerid.labels import catalogue, queries, service
from callerid.labels.models import DYNAMIC, STATIC
from callerid.timefmt import iso_z

router = APIRouter()
PER_PAGE = 50
TYPE_TITLES = {DYNAMIC: "Dynamic", STATIC: "Static"}
# Where each of the service's messages belongs on the form (its first words name the input).
FIELD_OF_MESSAGE = (
    ("name", "name"),
    ("logo", "logo"),
    ("label type", "label_type"),
    ("a sub-category", "sub_category"),
    ("sub-category", "sub_category"),
    ("category", "category"),
)


def _filters(request: Request) -> tuple[queries.LabelFilter, int]:
    query = request.query_params
    label_type = query.get("type", "")
    number = web.page_number(request)
    return queries.LabelFilter(
        name=query.get("q", "").strip()[:40], label_type=label_type if label_type in TYPE_TITLES else ""
    ), number


async def _catalogue_names(page: web.Page) -> tuple[catalogue.Catalogue, dict[int, str], dict[int, str]]:
    async with page.runtime.db.session() as session:
        loaded = await catalogue.load_catalogue(session)
    categories = {c.id: c.name for c in loaded.categories}
    subs = {s.id: s.name for c in loaded.categories for s in c.sub_categories}
    return loaded, categories, subs


@router.get("/console/caller-id")
async def list_labels(request: Request) -> Response:
    page = await web.page_for(request, Permission.VIEW_LABELS)
    filters, number = _filters(request)
    async with page.runtime.db.session() as session:
        labels, total = await queries.search_labels(session, page.account_id, filters, Page(number, PER_PAGE))
    _, categories, subs = await _catalogue_names(page)
    return web.render(
        request,
        "labels/list.html",
        {
            "labels": labels,
            "total": total,
            "current": number,
            "total_pages": Page(number, PER_PAGE).total_pages(total),
            "filters": {"q": filters.name, "type": filters.label_type},
            "type_titles": TYPE_TITLES,
            "categories": categories,
            "subs": subs,
        },
        page=page,
    )


@router.get("/console/caller-id/export.csv")
async def export_labels(request: Request) -> Response:
    page = await web.page_for(request, Permission.VIEW_LABELS)
    filters, _ = _filters(request)
    async with page.runtime.db.session() as session:
        labels, _total = await queries.search_labels(session, page.account_id, filters, None)
    _, categories, subs = await _catalogue_names(page)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["id", "name", "label_type", "category", "sub_category", "logo_url", "created_by_email", "created_at"]
    )
    for label in labels:
        writer.writerow(
            [
                label.id,
                label.name,
                label.label_type,
                categories.get(label.category, label.category or ""),
                subs.get(label.sub_category, label.sub_category or ""),
                service.logo_url(page.settings, label.logo_key),
                label.created_by_email,
                iso_z(label.created_at),
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={**web.SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="caller-id-labels.csv"'},
    )


async def _form_context(page: web.Page, values: dict[str, str], errors: dict[str, str]) -> dict[str, object]:
    loaded, _, _ = await _catalogue_names(page)
    return {
        "values": values,
        "errors": errors,
        "catalogue": loaded,
        "category_options": [("", "Choose a category")] + [(str(c.id), c.name) for c in loaded.categories],
        "sub_category_options": [("", "Choose a sub-category")]
        + [(c.name, [(str(s.id), s.name) for s in c.sub_categories]) for c in loaded.categories if c.sub_categories],
        "type_options": [
            (DYNAMIC, "Dynamic: used by call records (the API)"),
            (STATIC, "Static: used by feature sets"),
        ],
    }


@router.get("/console/caller-id/new/sub-categories")
async def sub_category_field(request: Request) -> Response:
    """The sub-category field narrowed to one category (htmx swaps it in when the category changes)."""
    page = await web.page_for(request, Permission.MANAGE_LABELS)
    chosen = request.query_params.get("category", "")
    values = {"sub_category": "", "category": chosen}
    context = await _form_context(page, values, {})
    loaded: catalogue.Catalogue = context["catalogue"]  # type: ignore[assignment]
    category = loaded.category(int(chosen)) if chosen.isdigit() and len(chosen) <= 9 else None
    if category is not None:
        context["sub_category_options"] = [("", "Choose a sub-category")] + [
            (str(s.id), s.name) for s in category.sub_categories
        ]
    return web.render_fragment(request, "labels/_sub_category.html", context)


@router.get("/console/caller-id/new")
async def new_label(request: Request) -> Response:
    page = await web.page_for(request, Permission.MANAGE_LABELS)
    values = {"name": "", "label_type": DYNAMIC, "category": "", "sub_category": ""}
    return web.render(request, "labels/new.html", await _form_context(page, values, {}), page=page)


def _int_or_none(value: str) -> int | str | None:
    value = value.strip()
    if value == "":
        return None
    return int(value) if value.isdigit() and len(value) <= 9 else value


@router.post("/console/caller-id")
async def create_label(request: Request) -> Response:
    page, form = await web.form_for(request, Permission.MANAGE_LABELS)
    values = {name: web.text(form, name) for name in ("name", "label_type", "category", "sub_category")}
    errors: dict[str, str] = {}
    upload = form.get("logo")
    logo = b""
    if isinstance(upload, UploadFile) and upload.filename:
        logo = await upload.read()
    if not logo:
        errors["logo"] = "logo is required: a PNG of exactly 200x200 pixels, under 2 MB"
    category, sub_category = _int_or_none(values["category"]), _int_or_none(values["sub_category"])
    for field, value in (("category", category), ("sub_category", sub_category)):
        if isinstance(value, str):
            errors[field] = f"{field.replace('_', '-')} must be chosen from the list"
    if not errors:
        try:
            async with page.runtime.db.transaction() as session:
                label = await service.create_label(
                    session,
                    page.settings,
                    account_id=page.account_id,
                    name=values["name"],
                    logo=logo,
                    label_type=values["label_type"],
                    category=category if isinstance(category, int) else None,
                    sub_category=sub_category if isinstance(sub_category, int) else None,
                    created_by_email=page.actor.email,
                    require_category=True,
                )
        except service.LabelError as exc:
            errors[web.field_of(str(exc), FIELD_OF_MESSAGE)] = str(exc)
    if errors:
        context = await _form_context(page, values, errors)
        return web.render(request, "labels/new.html", context, page=page, status_code=400)
    return web.redirect(f"/console/caller-id/{label.id}", flash=f"Label {label.name} created")


@router.get("/console/caller-id/{label_id}")
async def label_page(request: Request, label_id: str) -> Response:
    page = await web.page_for(request, Permission.VIEW_LABELS)
    async with page.runtime.db.session() as session:
        label = await queries.get_label(session, page.account_id, web.path_uuid(label_id))
    if label is None:
        raise web.not_found()
    _, categories, subs = await _catalogue_names(page)
    return web.render(
        request,
        "labels/label.html",
        {
            "label": label,
            "type_titles": TYPE_TITLES,
            "category": categories.get(label.category) if label.category is not None else None,
            "sub_category": subs.get(label.sub_category) if label.sub_category is not None else None,
            "logo_url": service.logo_url(page.settings, label.logo_key),
        },
        page=page,
    )
