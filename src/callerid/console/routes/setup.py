"""First-run setup (issue 11 point 7): an admin is led through calling operation -> process -> feature set ->
caller-ID label -> list numbers -> done, each step skippable, the progress kept on the server (``callerid.setup``)
so that another browser or another admin carries on at the first step neither done nor skipped.

Every step calls the service its own page calls (organisation, feature sets, labels, Manage listing) and shows the
errors next to the fields in the same words; the label form and the listing preview reuse those pages' parts.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from callerid.accounts.permissions import Permission
from callerid.console import web
from callerid.console.routes import labels as label_pages
from callerid.console.routes import listing
from callerid.failures import DomainError, InvalidInput
from callerid.labels import queries as label_queries
from callerid.labels import service as label_service
from callerid.labels.models import STATIC
from callerid.numbers import browse, calling_operations, preview, schemas
from callerid.numbers.models import FeatureSet
from callerid.numbers.nodes import OPERATION, PROCESS, TreeNode, account_tree
from callerid.setup import service as setup
from callerid.setup.service import STEP_TITLES, STEPS

router = APIRouter()
SET_UP = Permission.SET_UP_ACCOUNT
SLUGS = {
    setup.OPERATION_STEP: "operation",
    setup.PROCESS_STEP: "process",
    setup.FEATURE_SET_STEP: "feature-set",
    setup.LABEL_STEP: "label",
    setup.NUMBERS_STEP: "numbers",
}
HOME = "/console/setup"


# --- the frame every step shares -------------------------------------------------------------------------------


async def _progress(page: web.Page) -> setup.Progress:
    async with page.runtime.db.session() as session:
        return await setup.progress(session, page.account_id)


async def _active_nodes(page: web.Page, kind: str) -> list[TreeNode]:
    async with page.runtime.db.session() as session:
        nodes = await account_tree(session, page.account_id)
    return [node for node in nodes if node.ref.kind == kind and not node.archived]


def _render(
    page: web.Page, step: str | None, template: str, progress: setup.Progress, context: dict[str, Any], status: int
) -> Response:
    """A step's page: the ordered list of steps (the current one marked) around the step's own form."""
    steps = [
        {
            "step": name,
            "title": STEP_TITLES[name],
            "href": f"{HOME}/{SLUGS[name]}",
            "state": progress.states.get(name, ""),
            "current": name == step,
        }
        for name in STEPS
    ]
    number = STEPS.index(step) + 1 if step is not None else None
    values = {"steps": steps, "step": step, "number": number, "total": len(STEPS), "progress": progress, **context}
    values.setdefault("values", {})
    return web.render(page.request, template, values, page=page, status_code=status)


async def _show(
    page: web.Page,
    step: str | None,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    progress = await _progress(page)
    errors = errors or {}
    if step is None:
        return await _done_page(page, progress)
    context: dict[str, Any] = {"errors": errors, "values": values or {}}
    if step == setup.OPERATION_STEP:
        async with page.runtime.db.session() as session:
            entries = await calling_operations.calling_operations(session, include_retired=False)
        operations = await _active_nodes(page, OPERATION)
        context |= {
            "entry_options": [("", "Choose a calling operation")] + [(str(e.entry.id), e.entry.name) for e in entries],
            "operation_options": [("", "Choose an operation")] + [(str(n.ref.id), n.title) for n in operations],
        }
        context["values"] = {"department": "", "operation": "", "calling_operation": "", **context["values"]}
    elif step == setup.PROCESS_STEP:
        operations = await _active_nodes(page, OPERATION)
        processes = await _active_nodes(page, PROCESS)
        chosen = str(progress.operation.ref.id) if progress.operation else ""
        context |= {
            "operation_options": [("", "Choose an operation")] + [(str(n.ref.id), n.title) for n in operations],
            "process_options": [("", "Choose a process")] + [(str(n.ref.id), n.title) for n in processes],
        }
        context["values"] = {"operation": chosen, "name": "", **context["values"]}
    elif step == setup.FEATURE_SET_STEP:
        processes = await _active_nodes(page, PROCESS)
        draft = progress.draft
        chosen = draft.process if draft else progress.process
        context["process_options"] = [("", "Choose a process")] + [(str(n.ref.id), n.title) for n in processes]
        context["values"] = {
            "process": str(chosen.ref.id) if chosen else "",
            "name": draft.name if draft else "",
            "description": draft.description if draft else "",
            "call_reason": (draft.call_reason or "") if draft else "",
            **context["values"],
        }
    elif step == setup.LABEL_STEP:
        label_values = {"name": "", "label_type": STATIC, "category": "", "sub_category": "", **context["values"]}
        context |= await label_pages._form_context(page, label_values, errors)
        async with page.runtime.db.session() as session:
            found, _total = await label_queries.search_labels(
                session, page.account_id, label_queries.LabelFilter(), None
            )
        context["label_options"] = [("", "Choose a label")] + [
            (str(x.id), x.name) for x in sorted(found, key=lambda x: x.name.lower())
        ]
    elif step == setup.NUMBERS_STEP:
        context["values"] = {"numbers": "", **context["values"]}
        context["limit"] = page.settings.number_request_max
    return _render(page, step, f"setup/{SLUGS[step].replace('-', '_')}.html", progress, context, status)


@router.get("/console/setup")
async def resume(request: Request) -> Response:
    """Where the account's setup stands: the first step neither done nor skipped, or the summary."""
    page = await web.page_for(request, SET_UP)
    return await _show(page, (await _progress(page)).current)


@router.get("/console/setup/operation")
async def operation_step(request: Request) -> Response:
    return await _show(await web.page_for(request, SET_UP), setup.OPERATION_STEP)


@router.get("/console/setup/process")
async def process_step(request: Request) -> Response:
    return await _show(await web.page_for(request, SET_UP), setup.PROCESS_STEP)


@router.get("/console/setup/feature-set")
async def feature_set_step(request: Request) -> Response:
    return await _show(await web.page_for(request, SET_UP), setup.FEATURE_SET_STEP)


@router.get("/console/setup/label")
async def label_step(request: Request) -> Response:
    return await _show(await web.page_for(request, SET_UP), setup.LABEL_STEP)


@router.get("/console/setup/numbers")
async def numbers_step(request: Request) -> Response:
    return await _show(await web.page_for(request, SET_UP), setup.NUMBERS_STEP)


@router.get("/console/setup/done")
async def done_step(request: Request) -> Response:
    page = await web.page_for(request, SET_UP)
    return await _done_page(page, await _progress(page))


# --- posting a step ----------------------------------------------------------------------------------------------


def _next(flash: str) -> Response:
    return web.redirect(HOME, flash=flash)


@router.post("/console/setup/operation")
async def save_operation(request: Request) -> Response:
    page, form = await web.form_for(request, SET_UP)
    values = {name: web.text(form, name) for name in ("department", "operation", "calling_operation")}
    existing = web.text(form, "existing_operation")
    try:
        async with page.runtime.db.transaction() as session:
            if web.text(form, "action") == "pick":
                operation = await setup.pick_operation(session, page.actor, existing)
            else:
                entry = setup._uuid(values["calling_operation"].strip())
                operation = await setup.create_operation(
                    session,
                    page.actor,
                    department_name=values["department"],
                    operation_name=values["operation"],
                    calling_operation_id=entry,
                )
    except InvalidInput as exc:
        values["existing_operation"] = existing
        return await _show(page, setup.OPERATION_STEP, values=values, errors=_errors(exc), status=400)
    return _next(f"Step 1 done: operation {operation.title}")


@router.post("/console/setup/process")
async def save_process(request: Request) -> Response:
    page, form = await web.form_for(request, SET_UP)
    values = {name: web.text(form, name) for name in ("operation", "name", "existing_process")}
    try:
        async with page.runtime.db.transaction() as session:
            if web.text(form, "action") == "pick":
                process = await setup.pick_process(session, page.actor, values["existing_process"])
            else:
                process = await setup.create_process(
                    session, page.actor, operation_id=values["operation"], name=values["name"]
                )
    except InvalidInput as exc:
        return await _show(page, setup.PROCESS_STEP, values=values, errors=_errors(exc), status=400)
    return _next(f"Step 2 done: process {process.title}")


@router.post("/console/setup/feature-set")
async def save_feature_set(request: Request) -> Response:
    page, form = await web.form_for(request, SET_UP)
    values = {name: web.text(form, name) for name in ("process", "name", "description", "call_reason")}
    try:
        async with page.runtime.db.transaction() as session:
            await setup.save_draft(session, page.actor, process_id=values["process"], **_without(values, "process"))
    except InvalidInput as exc:
        return await _show(page, setup.FEATURE_SET_STEP, values=values, errors=_errors(exc), status=400)
    return _next("Step 3 done: the feature set is created with its label in the next step")


def _without(values: dict[str, str], *names: str) -> dict[str, str]:
    return {key: value for key, value in values.items() if key not in names}


def _errors(exc: InvalidInput) -> dict[str, str]:
    return {exc.field or "form": exc.message}


@router.post("/console/setup/label")
async def save_label(request: Request) -> Response:
    page, form = await web.form_for(request, SET_UP)
    values = {name: web.text(form, name) for name in ("name", "label_type", "category", "sub_category")}
    values["existing_label"] = web.text(form, "existing_label")
    errors: dict[str, str] = {}
    picking = web.text(form, "action") == "pick"
    logo = b""
    category, sub_category = (
        label_pages._int_or_none(values["category"]),
        label_pages._int_or_none(values["sub_category"]),
    )
    if not picking:
        # The Caller ID page's checks of what the form sends, before the service's rules.
        upload = form.get("logo")
        if isinstance(upload, UploadFile) and upload.filename:
            logo = await upload.read()
        if not logo:
            errors["logo"] = "logo is required: a PNG of exactly 200x200 pixels, under 2 MB"
        for name, value in (("category", category), ("sub_category", sub_category)):
            if isinstance(value, str):
                errors[name] = f"{name.replace('_', '-')} must be chosen from the list"
    created: FeatureSet | None = None
    if not errors:
        try:
            async with page.runtime.db.transaction() as session:
                if picking:
                    label, created = await setup.pick_label(session, page.actor, values["existing_label"])
                else:
                    label, created = await setup.create_label(
                        session,
                        page.settings,
                        page.actor,
                        name=values["name"],
                        logo=logo,
                        label_type=values["label_type"],
                        category=category if isinstance(category, int) else None,
                        sub_category=sub_category if isinstance(sub_category, int) else None,
                    )
        except setup.SetupError as exc:
            errors = _errors(exc)
        except label_service.LabelError as exc:
            errors[web.field_of(str(exc), label_pages.FIELD_OF_MESSAGE)] = str(exc)
    if errors:
        return await _show(page, setup.LABEL_STEP, values=values, errors=errors, status=400)
    made = f"; feature set {created.name} created" if created is not None else ""
    return _next(f"Step 4 done: label {label.name}{made}")


# --- step 5: Manage listing's Append, its preview and confirmation ------------------------------------------------


async def _feature_set_for_numbers(page: web.Page) -> FeatureSet:
    progress = await _progress(page)
    if progress.feature_set is None:
        raise web.PageError(400, "No feature set", "Numbers are listed on a feature set: create one first (step 3).")
    return progress.feature_set


@router.post("/console/setup/numbers/preview")
async def preview_numbers(request: Request) -> Response:
    page, form = await web.form_for(request, SET_UP)
    feature_set = await _feature_set_for_numbers(page)
    values = {"numbers": web.text(form, "numbers")}
    try:
        rows = await listing._read_input(form, page.settings.number_request_max)
        plan = await listing._preview(page, feature_set, preview.APPEND, rows.values)
    except InvalidInput as exc:
        return await _show(page, setup.NUMBERS_STEP, values=values, errors=_errors(exc), status=400)
    except DomainError as exc:
        return await _show(page, setup.NUMBERS_STEP, values=values, errors={"form": str(exc)}, status=400)
    context = {"fs": feature_set, "errors": {}, **listing._preview_context(plan, rows, rows.values)}
    return _render(page, setup.NUMBERS_STEP, "setup/numbers_preview.html", await _progress(page), context, 200)


@router.post("/console/setup/numbers")
async def confirm_numbers(request: Request) -> Response:
    page, form = await web.form_for(request, SET_UP)
    feature_set = await _feature_set_for_numbers(page)
    raw = [line.strip() for line in web.text(form, "numbers").splitlines() if line.strip()]
    try:
        schemas.phone_numbers_from_body({"phone_numbers": raw}, page.settings.number_request_max)
        async with page.runtime.db.transaction() as session:
            current = await session.get(FeatureSet, feature_set.id)
            assert current is not None  # it was live a moment ago; archiving it needs the same lock
            plan = await preview.apply_listing(
                session,
                page.settings,
                feature_set=current,
                mode=preview.APPEND,
                raw_numbers=raw,
                created_by_email=page.actor.email,
            )
            await setup.record_listing(session, page.actor, plan.job_ids)
    except DomainError as exc:
        values = {"numbers": "\n".join(raw)}
        return await _show(page, setup.NUMBERS_STEP, values=values, errors={"form": str(exc)}, status=400)
    return web.redirect(f"{HOME}/done", flash=f"Step 5 done: {listing._summary(plan)}")


# --- skipping, starting again, dismissing, the summary -------------------------------------------------------------


@router.post("/console/setup/skip")
async def skip_step(request: Request) -> Response:
    page, form = await web.form_for(request, SET_UP)
    step = web.text(form, "step")
    if step not in STEPS:
        raise web.PageError(400, "No such step", "Choose a step of the setup to skip.")
    async with page.runtime.db.transaction() as session:
        await setup.skip(session, page.actor, step)
    return _next(f"Step {STEPS.index(step) + 1} skipped: {STEP_TITLES[step]}")


@router.post("/console/setup/start-again")
async def start_again(request: Request) -> Response:
    page, _ = await web.form_for(request, SET_UP)
    async with page.runtime.db.transaction() as session:
        await setup.start_again(session, page.actor)
    return _next("Setup started again; what it created is still there")


@router.post("/console/setup/dismiss")
async def dismiss(request: Request) -> Response:
    page, _ = await web.form_for(request, SET_UP)
    async with page.runtime.db.transaction() as session:
        await setup.dismiss(session, page.actor)
    return web.redirect("/console", flash="Setup dismissed; it stays open to you at /console/setup")


async def _done_page(page: web.Page, progress: setup.Progress) -> Response:
    jobs: list[browse.JobProgress] = []
    fs = progress.feature_set
    if fs is not None and progress.jobs:
        async with page.runtime.db.session() as session:
            for job_id in progress.jobs[:2]:
                found = await browse.job_progress(session, page.account_id, fs.id, job_id)
                if found is not None:
                    jobs.append(found)
    progress_url = ""
    if fs is not None and jobs:
        progress_url = f"/console/feature-sets/{fs.id}/listing/jobs/{jobs[0].job.id}/progress" + (
            f"?also={jobs[1].job.id}" if len(jobs) > 1 else ""
        )
    context = {"fs": fs, "jobs": jobs, "progress_url": progress_url, "errors": {}, "slugs": SLUGS}
    return _render(page, None, "setup/done.html", progress, context, 200)


@router.post("/console/setup/finish")
async def finish(request: Request) -> Response:
    """The end: the feature set's page when the setup made one, else Home with what is left to do."""
    page, _ = await web.form_for(request, SET_UP)
    async with page.runtime.db.transaction() as session:
        await setup.finish(session, page.actor)
        progress = await setup.progress(session, page.account_id)
    if progress.feature_set is not None:
        return web.redirect(f"/console/feature-sets/{progress.feature_set.id}", flash="Setup complete")
    return web.redirect("/console", flash="Setup finished; Home lists what is left to do")
