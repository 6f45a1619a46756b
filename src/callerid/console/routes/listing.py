"""Manage listing of a feature set (SPEC §5.7-§5.9, §7.3-§7.5): paste numbers or upload a CSV/TXT file, choose
Append, Rewrite or Delist, see how each number would be classified (``numbers.preview``: the NL/ND code, rolled
back), confirm, then watch the jobs' progress. The numbers travel from the preview to the confirmation in a hidden
field; the confirmation classifies them again, so nothing the browser sends is taken as a classification."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import Response

from callerid.accounts.permissions import Permission, Target, allowed
from callerid.console import web
from callerid.failures import Conflict, DomainError, InvalidInput
from callerid.numbers import browse, numberfile, preview, schemas
from callerid.numbers.listing import Classification, split_numbers
from callerid.numbers.models import ARCHIVED, FeatureSet
from callerid.numbers.nodes import PROCESS, NodeRef, find_node

router = APIRouter()
MODE_TITLES = {
    preview.APPEND: ("Append", "List these numbers. The set's other numbers stay as they are."),
    preview.REWRITE: ("Rewrite", "List these numbers and delist every other number of this set."),
    preview.DELIST: ("Delist", "Delist these numbers from this set."),
}
# The buckets of SPEC §7.4 as a person reads them: title, what happens, tone. In the order shown.
INVALID = "not phone numbers (10-15 digits, an optional leading +); skipped"
LIST_BUCKETS = (
    ("new_numbers", "New", "listed in this set", "success"),
    ("delisted_numbers", "Listed before", "delisted from this account earlier; listed again here", "success"),
    ("migrated_numbers", "Without a feature set", "listed outside any set; moved into this set", "success"),
    ("updated_numbers", "Failed before", "their listing in this set failed; it is tried again", "success"),
    ("existing_numbers", "Already listed", "already listed in this set; nothing to do", "neutral"),
    ("processing_numbers", "Busy", "a list or delist job for them is running; handled once it ends", "pending"),
    ("other_feature_set_numbers", "In another feature set", "delist them from that set first; not changed", "pending"),
    ("other_phonetype_numbers", "Other phone type", "in this account with another phone type; not changed", "pending"),
    ("others_numbers", "Held by another account", "listed by another business; not changed", "pending"),
    ("invalid_numbers", "Not phone numbers", INVALID, "danger"),
)
DELIST_BUCKETS = (
    ("existing_numbers", "Delisted", "listed in this set; delisted", "danger"),
    ("processing_numbers", "Busy", "a list or delist job for them is running; delisted once it ends", "pending"),
    ("new_numbers", "Nothing to delist", "not listed in this set, or delisted already; nothing to do", "neutral"),
    ("other_feature_set_numbers", "In another feature set", "listed in another set of yours; not changed", "pending"),
    ("other_phonetype_numbers", "Other phone type", "in this account with another phone type; not changed", "pending"),
    ("others_numbers", "Held by another account", "listed by another business; not changed", "pending"),
    ("invalid_numbers", "Not phone numbers", INVALID, "danger"),
)
SHOWN_PER_BUCKET = 100
SHOWN_PROBLEMS = 100


async def visible_feature_set(page: web.Page, feature_set_id: str | uuid.UUID, permission: Permission) -> FeatureSet:
    """The account's feature set when the member may act on it (``permission`` in its subtree); otherwise the same
    404 as an id that does not exist, so nothing leaks."""
    parsed = feature_set_id if isinstance(feature_set_id, uuid.UUID) else web.path_uuid(feature_set_id)
    async with page.runtime.db.session() as session:
        feature_set = await session.get(FeatureSet, parsed)
        if feature_set is None or feature_set.account_id != page.account_id:
            raise web.not_found()
        node = await find_node(session, page.account_id, NodeRef(PROCESS, feature_set.process_id))
    if node is None or not allowed(page.actor, permission, Target(node)):
        raise web.not_found()
    return feature_set


async def _form_context(page: web.Page, feature_set: FeatureSet, **extra: Any) -> dict[str, Any]:
    async with page.runtime.db.session() as session:
        counts = await preview.set_counts(session, feature_set.id)
        node = await find_node(session, page.account_id, NodeRef(PROCESS, feature_set.process_id))
    context: dict[str, Any] = {
        "fs": feature_set,
        "node_title": node.title if node is not None else "",
        "counts": counts,
        "archived": feature_set.status == ARCHIVED,
        "mode_titles": MODE_TITLES,
        "values": {"numbers": "", "mode": preview.APPEND},
        "errors": {},
        "limit": page.settings.number_request_max,
        "upload_limit": page.settings.console_upload_max_bytes,
        "notice": None,
    }
    context.update(extra)
    return context


@router.get("/console/feature-sets/{feature_set_id}/listing")
async def listing_page(request: Request, feature_set_id: str) -> Response:
    page = await web.page_for(request, Permission.MANAGE_NUMBERS)
    feature_set = await visible_feature_set(page, feature_set_id, Permission.MANAGE_NUMBERS)
    mode = request.query_params.get("mode", "")
    values = {"numbers": "", "mode": mode if mode in preview.MODES else preview.APPEND}
    context = await _form_context(page, feature_set, values=values)
    return web.render(request, "numbers/listing.html", context, page=page)


async def _read_input(form: FormData, maximum: int) -> numberfile.NumberRows:
    """The numbers pasted or uploaded; errors name the field (``numbers`` or ``file``)."""
    pasted = web.text(form, "numbers")
    upload = form.get("file")
    data = await upload.read() if isinstance(upload, UploadFile) and upload.filename else b""
    if pasted.strip() and data:
        raise InvalidInput("paste numbers or choose a file, not both", field="numbers")
    where = "file" if data else "numbers"
    try:
        rows = numberfile.read_numbers(numberfile.decode_upload(data) if data else pasted)
        if not rows.values:
            raise InvalidInput("phone_numbers is required: paste numbers or choose a file")
        # The API's own check and words (SPEC §5.7): 1 to number_request_max numbers, duplicates included.
        schemas.phone_numbers_from_body({"phone_numbers": rows.values}, maximum)
    except InvalidInput as exc:
        raise InvalidInput(str(exc), field=where) from None
    return rows


def bucket_rows(answer: Classification | None, spec: tuple[tuple[str, str, str, str], ...]) -> list[dict[str, Any]]:
    if answer is None:
        return []
    shown = []
    for key, title, effect, tone in spec:
        numbers = answer.buckets.get(key, [])
        if numbers:
            shown.append(
                {
                    "key": key,
                    "title": title,
                    "effect": effect,
                    "tone": tone,
                    "count": len(numbers),
                    "numbers": numbers[:SHOWN_PER_BUCKET],
                }
            )
    return shown


def _preview_context(plan: preview.ListingPlan, rows: numberfile.NumberRows, raw: list[str]) -> dict[str, Any]:
    valid, invalid = split_numbers(raw)
    return {
        "plan": plan,
        "list_buckets": bucket_rows(plan.listing, LIST_BUCKETS),
        "delist_buckets": bucket_rows(plan.delisting if plan.mode == preview.DELIST else None, DELIST_BUCKETS),
        "others": plan.others[:SHOWN_PER_BUCKET],
        "others_count": len(plan.others),
        "others_buckets": bucket_rows(plan.delisting if plan.mode == preview.REWRITE else None, DELIST_BUCKETS),
        "rows": rows,
        "problems": rows.problems[:SHOWN_PROBLEMS],
        "read": len(raw),
        "distinct": len(valid) + len(invalid),
        "duplicates": len(raw) - len(valid) - len(invalid),
        "carried": "\n".join(raw),
        "to_list": plan.listing.accepted if plan.listing else 0,
        "to_delist": plan.delisting.accepted if plan.delisting else 0,
        "held": sum(len(c.held) for c in (plan.listing, plan.delisting) if c is not None),
        # What ends delisted: Rewrite, the rest of the set (busy ones once their job ends); Delist, the listed and
        # the busy ones.
        "delist_total": len(plan.others)
        if plan.mode == preview.REWRITE
        else (plan.delisting.accepted + len(plan.delisting.held) if plan.delisting else 0),
    }


async def _preview(page: web.Page, feature_set: FeatureSet, mode: str, raw: list[str]) -> preview.ListingPlan:
    return await preview.preview_listing(
        page.runtime.db,
        page.settings,
        account_id=page.account_id,
        feature_set_id=feature_set.id,
        mode=mode,
        raw_numbers=raw,
        created_by_email=page.actor.email,
    )


@router.post("/console/feature-sets/{feature_set_id}/listing/preview")
async def preview_page(request: Request, feature_set_id: str) -> Response:
    page, form = await web.form_for(request, Permission.MANAGE_NUMBERS)
    feature_set = await visible_feature_set(page, feature_set_id, Permission.MANAGE_NUMBERS)
    mode = web.text(form, "mode")
    values = {"numbers": web.text(form, "numbers"), "mode": mode}
    errors: dict[str, str] = {}
    if mode not in preview.MODES:
        errors["mode"] = "choose what to do: Append, Rewrite or Delist"
    try:
        rows = await _read_input(form, page.settings.number_request_max)
    except InvalidInput as exc:
        errors[exc.field or "numbers"] = str(exc)
    if not errors:
        try:
            plan = await _preview(page, feature_set, mode, rows.values)
        except DomainError as exc:
            errors["form"] = str(exc)
    if errors:
        context = await _form_context(page, feature_set, values=values, errors=errors)
        return web.render(request, "numbers/listing.html", context, page=page, status_code=400)
    context = await _form_context(page, feature_set, **_preview_context(plan, rows, rows.values), mode=mode)
    return web.render(request, "numbers/listing_preview.html", context, page=page)


def _summary(plan: preview.ListingPlan) -> str:
    """The one-line flash after a confirmation."""
    parts = []
    if plan.listing is not None:
        left = sum(len(v) for v in plan.listing.buckets.values()) - plan.listing.accepted - len(plan.listing.held)
        parts.append(f"Listing {plan.listing.accepted:,} number{'s' if plan.listing.accepted != 1 else ''}")
        if left:
            parts.append(f"{left:,} left as they are")
    if plan.delisting is not None:
        parts.append(f"delisting {plan.delisting.accepted:,} number{'s' if plan.delisting.accepted != 1 else ''}")
    held = sum(len(c.held) for c in (plan.listing, plan.delisting) if c is not None)
    if held:
        parts.append(f"{held:,} wait{'s' if held == 1 else ''} for a running job")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:]


@router.post("/console/feature-sets/{feature_set_id}/listing")
async def confirm_listing(request: Request, feature_set_id: str) -> Response:
    page, form = await web.form_for(request, Permission.MANAGE_NUMBERS)
    feature_set = await visible_feature_set(page, feature_set_id, Permission.MANAGE_NUMBERS)
    mode = web.text(form, "mode")
    raw = [line.strip() for line in web.text(form, "numbers").splitlines() if line.strip()]
    base = f"/console/feature-sets/{feature_set.id}/listing"
    if mode not in preview.MODES or not raw:
        return web.redirect(base, flash="Nothing to confirm: paste numbers or choose a file first")
    try:
        schemas.phone_numbers_from_body({"phone_numbers": raw}, page.settings.number_request_max)
    except InvalidInput as exc:
        return web.redirect(base, flash=f"Nothing changed: {exc}")
    rows = numberfile.NumberRows(values=raw)
    try:
        async with page.runtime.db.transaction() as session:
            current = await session.get(FeatureSet, feature_set.id)
            if current is None:
                raise web.not_found()
            plan = await preview.apply_listing(
                session,
                page.settings,
                feature_set=current,
                mode=mode,
                raw_numbers=raw,
                created_by_email=page.actor.email,
                expected_others=web.text(form, "others_digest") if mode == preview.REWRITE else None,
            )
    except DomainError as exc:
        # Rewrite over a set that changed since the preview, or a cap reached meanwhile: show the preview anew.
        notice = str(exc)
        try:
            plan = await _preview(page, feature_set, mode, raw)
        except DomainError as again:
            context = await _form_context(page, feature_set, values={"numbers": "\n".join(raw), "mode": mode})
            context["errors"] = {"form": str(again)}
            return web.render(request, "numbers/listing.html", context, page=page, status_code=400)
        context = await _form_context(page, feature_set, **_preview_context(plan, rows, raw), mode=mode)
        context["notice"] = notice
        status = 409 if isinstance(exc, Conflict) else 400
        return web.render(request, "numbers/listing_preview.html", context, page=page, status_code=status)
    jobs = plan.job_ids
    if not jobs:
        # Only held numbers (handled when their running job ends), or nothing at all to do.
        held = any(c.held for c in (plan.listing, plan.delisting) if c is not None)
        return web.redirect(base, flash=_summary(plan) if held else f"Nothing changed. {_summary(plan)}")
    target = f"{base}/jobs/{jobs[0]}" + (f"?also={jobs[1]}" if len(jobs) > 1 else "")
    return web.redirect(target, flash=_summary(plan))


async def _progress(page: web.Page, feature_set: FeatureSet, job_id: str, also: str) -> list[browse.JobProgress]:
    ids = [web.path_uuid(job_id)]
    if also:
        ids.append(web.path_uuid(also))
    found = []
    async with page.runtime.db.session() as session:
        for one in ids:
            progress = await browse.job_progress(session, page.account_id, feature_set.id, one)
            if progress is None:
                raise web.not_found()
            found.append(progress)
    return found


def _progress_url(feature_set: FeatureSet, job_id: str, also: str) -> str:
    return f"/console/feature-sets/{feature_set.id}/listing/jobs/{job_id}/progress" + (f"?also={also}" if also else "")


@router.get("/console/feature-sets/{feature_set_id}/listing/jobs/{job_id}")
async def job_page(request: Request, feature_set_id: str, job_id: str) -> Response:
    page = await web.page_for(request, Permission.VIEW_NUMBERS)
    feature_set = await visible_feature_set(page, feature_set_id, Permission.VIEW_NUMBERS)
    also = request.query_params.get("also", "")
    jobs = await _progress(page, feature_set, job_id, also)
    context = {"fs": feature_set, "jobs": jobs, "progress_url": _progress_url(feature_set, job_id, also)}
    return web.render(request, "numbers/listing_job.html", context, page=page)


@router.get("/console/feature-sets/{feature_set_id}/listing/jobs/{job_id}/progress")
async def job_progress(request: Request, feature_set_id: str, job_id: str) -> Response:
    page = await web.page_for(request, Permission.VIEW_NUMBERS)
    feature_set = await visible_feature_set(page, feature_set_id, Permission.VIEW_NUMBERS)
    also = request.query_params.get("also", "")
    jobs = await _progress(page, feature_set, job_id, also)
    context = {"fs": feature_set, "jobs": jobs, "progress_url": _progress_url(feature_set, job_id, also)}
    return web.render_fragment(request, "numbers/_job_progress.html", context, timezone=page.current.account.timezone)
