"""Surveys (SPEC §10.5): the account's surveys (owners: those of feature sets in their part of the tree) and the
survey of one feature set: create it (Call Rating or Questions), edit its ordered questions (rating, choice, text),
make it live or pause it, and copy its id for the UF export. Every rule is ``engagement.service``; this module
parses, calls and renders.

The question editor works without JavaScript: Add question, Move up / Move down and Remove are submit buttons of
the survey form that render it again with the change (nothing is saved until "Save survey"); with htmx they swap
only the questions.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from callerid.accounts.permissions import Actor, Permission, Target, allowed
from callerid.console import web
from callerid.engagement import service as engagement
from callerid.engagement.models import Survey
from callerid.failures import NotFound
from callerid.numbers import service as numbers
from callerid.numbers.models import FeatureSet
from callerid.numbers.nodes import DEPARTMENT, OPERATION, PROCESS, NodeRef, TreeNode, account_tree, find_node
from callerid.paging import Page
from callerid.timefmt import iso_z

router = APIRouter()
VIEW = Permission.VIEW_FEATURE_SETS
MANAGE = Permission.MANAGE_FEATURE_SETS
PER_PAGE = 50
TYPE_TITLES = {engagement.CALL_RATING: "Call Rating", engagement.QUESTIONS: "Questions"}
STATUS_TITLES = {engagement.LIVE: "Live", engagement.PAUSED: "Paused"}
TRIGGER_TITLES = {
    "answered": "After an answered call",
    "missed": "After a missed or rejected call",
    "any": "After any call",
}
KIND_TITLES = {
    engagement.RATING: f"Rating from {engagement.RATING_MIN} to {engagement.RATING_MAX}",
    engagement.CHOICE: "One of several choices",
    engagement.TEXT: "Free text",
}
CSV_COLUMNS = (
    "survey_id",
    "name",
    "type",
    "status",
    "trigger",
    "questions",
    "feature_set_id",
    "feature_set",
    "created_at",
    "updated_at",
)
_QUESTION_FIELD = re.compile(r"^q-(\d{1,3})-text$")
_ERROR_FIELD = re.compile(r"^questions\[(\d+)\]\.(text|kind|choices)$")


# --- who sees what -------------------------------------------------------------------------------------------


def _within(actor: Actor) -> numbers.TreeFilters | None:
    """An owner's part of the tree as a listing filter (admins: everything). Each row is also checked with
    ``allowed`` below; this only keeps the database from returning rows that would be dropped."""
    if actor.is_admin:
        return None
    if actor.scope is None:
        return numbers.TreeFilters(feature_set_id=uuid.UUID(int=0))  # an owner bound to nothing sees nothing
    ref = actor.scope.ref
    if ref.kind == DEPARTMENT:
        return numbers.TreeFilters(department_id=ref.id)
    if ref.kind == OPERATION:
        return numbers.TreeFilters(operation_id=ref.id)
    return numbers.TreeFilters(process_id=ref.id)


@dataclass
class Found:
    feature_set: FeatureSet
    node: TreeNode
    survey: Survey | None


async def _found(page: web.Page, feature_set_id: str, permission: Permission) -> Found:
    """The feature set (and its survey) when the member may act on it; 404 otherwise, as for an unknown id."""
    parsed = web.path_uuid(feature_set_id)
    async with page.runtime.db.session() as session:
        try:
            feature_set = await numbers.feature_set_of(session, page.account_id, parsed)
        except NotFound:
            raise web.not_found() from None
        node = await find_node(session, page.account_id, NodeRef(PROCESS, feature_set.process_id))
        survey = await engagement.survey_of_feature_set(session, page.account_id, parsed)
    if node is None or not allowed(page.actor, permission, Target(node)):
        raise web.not_found()
    return Found(feature_set, node, survey)


# --- the list ------------------------------------------------------------------------------------------------


def _filters(request: Request) -> tuple[dict[str, str], engagement.SurveyFilter]:
    query = request.query_params
    shown = {
        "q": query.get("q", "").strip()[:100],
        "type": query.get("type", "") if query.get("type") in TYPE_TITLES else "",
        "status": query.get("status", "") if query.get("status") in STATUS_TITLES else "",
    }
    return shown, engagement.SurveyFilter(text=shown["q"], survey_type=shown["type"], status=shown["status"])


async def _visible_rows(page: web.Page, applied: engagement.SurveyFilter, paging: Page | None) -> tuple[list[Any], int]:
    async with page.runtime.db.session() as session:
        rows, total = await engagement.search_surveys(
            session,
            page.account_id,
            applied,
            within=_within(page.actor),
            offset=paging.offset if paging else 0,
            limit=paging.limit if paging else None,
        )
        if page.actor.is_admin:
            return rows, total
        nodes = {node.ref.id: node for node in await account_tree(session, page.account_id)}
    visible = [
        row
        for row in rows
        if (node := nodes.get(row.process_id)) is not None and allowed(page.actor, VIEW, Target(node))
    ]
    return visible, total


@router.get("/console/surveys")
async def list_surveys(request: Request) -> Response:
    page = await web.page_for(request, VIEW)
    shown, applied = _filters(request)
    number = web.page_number(request)
    rows, total = await _visible_rows(page, applied, Page(number, PER_PAGE))
    return web.render(
        request,
        "surveys/list.html",
        {
            "rows": rows,
            "total": total,
            "current": number,
            "total_pages": Page(number, PER_PAGE).total_pages(total),
            "filters": shown,
            "filtered": any(shown.values()),
            "type_titles": TYPE_TITLES,
            "status_titles": STATUS_TITLES,
            "trigger_titles": TRIGGER_TITLES,
        },
        page=page,
    )


@router.get("/console/surveys/export.csv")
async def export_surveys(request: Request) -> Response:
    page = await web.page_for(request, VIEW)
    _shown, applied = _filters(request)
    rows, _total = await _visible_rows(page, applied, None)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        survey = row.survey
        writer.writerow(
            [
                survey.id,
                survey.name,
                survey.survey_type,
                survey.status,
                survey.trigger,
                len(survey.questions),
                survey.feature_set_id,
                row.feature_set_name,
                iso_z(survey.created_at),
                iso_z(survey.updated_at),
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={**web.SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="surveys.csv"'},
    )


@router.get("/console/surveys/new")
async def new_survey(request: Request) -> Response:
    """Pick a feature set waiting for a survey and a type; then on to that feature set's survey page."""
    page = await web.page_for(request, MANAGE)
    async with page.runtime.db.session() as session:
        waiting = await engagement.feature_sets_awaiting_survey(session, page.account_id, within=_within(page.actor))
    chosen, survey_type = request.query_params.get("feature_set", ""), request.query_params.get("type", "")
    options = {str(fs_id): name for fs_id, name in waiting}
    errors: dict[str, str] = {}
    if "feature_set" in request.query_params or "type" in request.query_params:
        if chosen not in options:
            errors["feature_set"] = "feature set must be chosen from the list"
        if survey_type not in TYPE_TITLES:
            errors["type"] = "type must be Call Rating or Questions"
        if not errors:
            return web.redirect(f"/console/feature-sets/{chosen}/survey?type={survey_type}")
    return web.render(
        request,
        "surveys/new.html",
        {
            "options": [("", "Choose a feature set"), *options.items()],
            "values": {"feature_set": chosen, "type": survey_type or engagement.QUESTIONS},
            "errors": errors,
            "type_titles": TYPE_TITLES,
        },
        page=page,
        status_code=400 if errors else 200,
    )


# --- one feature set's survey ---------------------------------------------------------------------------------


@dataclass
class Draft:
    """The survey form as typed (or as stored): what the page shows and what a save sends to the service."""

    name: str
    trigger: str
    survey_type: str
    # [{"text": ..., "kind": ..., "choices": "one\nper\nline"}]
    questions: list[dict[str, str]] = field(default_factory=list)

    def service_questions(self) -> list[engagement.Question]:
        result = []
        for q in self.questions:
            choices = [c for c in q["choices"].splitlines() if c.strip()] if q["kind"] == engagement.CHOICE else []
            result.append(engagement.Question(q["text"], q["kind"], tuple(choices)))
        return result


def _draft_of(survey: Survey) -> Draft:
    questions = [
        {"text": q.text, "kind": q.kind, "choices": "\n".join(q.choices)} for q in engagement.questions_of(survey)
    ]
    return Draft(survey.name, survey.trigger, survey.survey_type, questions)


def _new_draft(survey_type: str) -> Draft:
    if survey_type == engagement.CALL_RATING:
        question = {"text": engagement.DEFAULT_RATING_QUESTION, "kind": engagement.RATING, "choices": ""}
        return Draft("", "answered", survey_type, [question])
    return Draft("", "any", survey_type, [{"text": "", "kind": engagement.RATING, "choices": ""}])


def _draft_from_form(form: FormData, survey: Survey | None) -> Draft:
    survey_type = survey.survey_type if survey is not None else web.text(form, "type")
    indexes = sorted(int(m.group(1)) for key in form if (m := _QUESTION_FIELD.match(key)))
    questions = [
        {
            "text": web.text(form, f"q-{i}-text"),
            "kind": web.text(form, f"q-{i}-kind") or engagement.TEXT,
            "choices": web.text(form, f"q-{i}-choices"),
        }
        for i in indexes[: engagement.MAX_QUESTIONS + 1]  # one more than allowed, so that the service says so
    ]
    return Draft(web.text(form, "name"), web.text(form, "trigger"), survey_type, questions)


def _apply(draft: Draft, action: str) -> tuple[str, int | None]:
    """An editor button's change to the draft: what to announce, and which question to focus afterwards."""
    verb, _, raw = action.partition("-")
    questions = draft.questions
    if verb == "add" and len(questions) < engagement.MAX_QUESTIONS:
        questions.append({"text": "", "kind": engagement.TEXT, "choices": ""})
        return f"Question {len(questions)} added. Nothing is saved until you save the survey.", len(questions) - 1
    index = int(raw) if raw.isdigit() and len(raw) <= 3 else -1
    if not 0 <= index < len(questions):
        return "", None
    if verb == "up" and index > 0:
        questions[index - 1], questions[index] = questions[index], questions[index - 1]
        return f"Question {index + 1} moved up to {index}. Nothing is saved until you save the survey.", index - 1
    if verb == "down" and index < len(questions) - 1:
        questions[index + 1], questions[index] = questions[index], questions[index + 1]
        return f"Question {index + 1} moved down to {index + 2}. Nothing is saved until you save the survey.", index + 1
    if verb == "remove" and len(questions) > 1:
        questions.pop(index)
        return f"Question {index + 1} removed. Nothing is saved until you save the survey.", None
    return "", None


def _form_field(error_field: str | None) -> str:
    """Where a service error belongs on the form (``questions[2].choices`` -> ``q-2-choices``)."""
    if error_field in ("name", "trigger", "questions", "status"):
        return error_field
    matched = _ERROR_FIELD.match(error_field or "")
    return f"q-{matched.group(1)}-{matched.group(2)}" if matched else "form"


def _render_survey(
    request: Request,
    page: web.Page,
    found: Found,
    draft: Draft | None,
    *,
    errors: dict[str, str] | None = None,
    notice: str = "",
    focus: int | None = None,
    status_code: int = 200,
) -> Response:
    feature_set_id = found.feature_set.id
    return web.render(
        request,
        "surveys/survey.html",
        {
            "feature_set": found.feature_set,
            "node": found.node,
            "survey": found.survey,
            "draft": draft,
            "errors": errors or {},
            "notice": notice,
            "focus": focus,
            "can_manage": allowed(page.actor, MANAGE, Target(found.node)),
            "action_url": f"/console/feature-sets/{feature_set_id}/survey",
            "type_titles": TYPE_TITLES,
            "status_titles": STATUS_TITLES,
            "trigger_options": list(TRIGGER_TITLES.items()),
            "trigger_titles": TRIGGER_TITLES,
            "kind_options": list(KIND_TITLES.items()),
            "kind_titles": KIND_TITLES,
            "max_questions": engagement.MAX_QUESTIONS,
            "max_choices": engagement.MAX_CHOICES,
            "questions": engagement.questions_of(found.survey) if found.survey else [],
        },
        page=page,
        status_code=status_code,
    )


@router.get("/console/feature-sets/{feature_set_id}/survey")
async def survey_page(request: Request, feature_set_id: str) -> Response:
    """The feature set's survey to edit; without one, the choice of type, then the form to create it."""
    page = await web.page_for(request, VIEW)
    found = await _found(page, feature_set_id, VIEW)
    if found.survey is not None:
        draft: Draft | None = _draft_of(found.survey)
    else:
        chosen = request.query_params.get("type", "")
        draft = _new_draft(chosen) if chosen in TYPE_TITLES else None
    return _render_survey(request, page, found, draft)


@router.post("/console/feature-sets/{feature_set_id}/survey")
async def save_survey(request: Request, feature_set_id: str) -> Response:
    page, form = await web.form_for(request, MANAGE)
    found = await _found(page, feature_set_id, MANAGE)
    draft = _draft_from_form(form, found.survey)
    if draft.survey_type not in TYPE_TITLES:
        errors = {"form": "type must be Call Rating or Questions"}
        return _render_survey(request, page, found, None, errors=errors, status_code=400)
    if not draft.questions:
        draft.questions = _new_draft(draft.survey_type).questions
    action = web.text(form, "action") or "save"
    if action != "save":
        notice, focus = _apply(draft, action)
        return _render_survey(request, page, found, draft, notice=notice, focus=focus)
    try:
        async with page.runtime.db.transaction() as session:
            if found.survey is None:
                survey = await engagement.create_survey(
                    session,
                    account_id=page.account_id,
                    feature_set_id=found.feature_set.id,
                    name=draft.name,
                    questions=draft.service_questions(),
                    trigger=draft.trigger,
                    survey_type=draft.survey_type,
                    status=engagement.PAUSED,  # made live when it is ready
                )
                flash = f"Survey {survey.name} created. It is paused: make it live when it is ready."
            else:
                survey = await engagement.update_survey(
                    session,
                    account_id=page.account_id,
                    survey_id=found.survey.id,
                    name=draft.name,
                    trigger=draft.trigger,
                    questions=draft.service_questions(),
                )
                flash = f"Survey {survey.name} saved"
    except engagement.EngagementError as exc:
        return _render_survey(
            request, page, found, draft, errors={_form_field(exc.field): exc.message}, status_code=400
        )
    except NotFound:
        raise web.not_found() from None
    return web.redirect(f"/console/feature-sets/{found.feature_set.id}/survey", flash=flash)


@router.post("/console/feature-sets/{feature_set_id}/survey/status")
async def change_status(request: Request, feature_set_id: str) -> Response:
    page, form = await web.form_for(request, MANAGE)
    found = await _found(page, feature_set_id, MANAGE)
    if found.survey is None:
        raise web.not_found()
    try:
        async with page.runtime.db.transaction() as session:
            survey = await engagement.set_survey_status(
                session, account_id=page.account_id, survey_id=found.survey.id, status=web.text(form, "status")
            )
    except engagement.EngagementError as exc:
        draft = _draft_of(found.survey)
        return _render_survey(request, page, found, draft, errors={"status": exc.message}, status_code=400)
    except NotFound:
        raise web.not_found() from None
    if survey.status == engagement.LIVE:
        flash = f"Survey {survey.name} is live: phones show it after calls from this feature set's numbers"
    else:
        flash = f"Survey {survey.name} is paused: phones no longer show it, and answers to it are refused"
    return web.redirect(f"/console/feature-sets/{found.feature_set.id}/survey", flash=flash)
