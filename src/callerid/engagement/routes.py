"""HTTP for engagement: the app's Call Me Back and survey endpoints, the deprecated CMB/UF log APIs
(SPEC §5.10, §5.11) and the download links they hand out.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.responses import StreamingResponse

from callerid.accounts.dependencies import require_access
from callerid.accounts.service import TokenPrincipal
from callerid.delivery.auth import require_device
from callerid.delivery.service import DeviceInfo
from callerid.engagement import schemas, service
from callerid.errors import invalid_input
from callerid.http import parse_uuid, read_json_object
from callerid.jobs.service import wake_local_runners
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

router = APIRouter()

# Deprecated endpoints say so (SPEC §1.4 [E]); reference clients ignore the header.
DEPRECATED = {"Deprecation": "true"}

_SLUG_ERROR = {
    "content": {"application/json": {"example": {"slug": "invalid-input", "message": "business_number is invalid"}}}
}


def _inline_definitions(schema: Any, definitions: dict[str, Any]) -> Any:
    """``schema`` with every ``{"$ref": "#/$defs/X"}`` replaced by X itself. pydantic puts nested models under the
    schema's own ``$defs``; inside an OpenAPI document such a ref points at the document root, where there is nothing
    (ReDoc refused the whole page). The bodies here are small and not recursive, so inlining is the simple fix."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_definitions(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inline_definitions(value, definitions) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inline_definitions(item, definitions) for item in schema]
    return schema


def _body_schema(model: type[BaseModel]) -> dict[str, object]:
    full = model.model_json_schema()
    schema = _inline_definitions(full, full.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _query(name: str, description: str, *, required: bool) -> dict[str, object]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": {"type": "string"}}


async def _body(request: Request) -> dict[str, object]:
    body = await read_json_object(request)
    if body is None:
        raise invalid_input("Request body is invalid")
    return body


# --- app (phones) ---------------------------------------------------------------------------------------------


@router.post(
    "/app/v1/call-me-back",
    tags=["App: engagement"],
    status_code=201,
    summary="Ask for a call back",
    description=(
        "After a missed/rejected call from a listed business number whose feature set has Call Me Back: store the "
        "request and send a `cmb` webhook event to every subscribed webhook. `client_number` is this device's "
        "number, or `Phone number not available` with `client_number_available: false` (then `alternate_number` "
        "is required when interested). With the slot picker on, an interested user sends the slot "
        "(`preferred_from_time` < `preferred_to_time`, epoch seconds, at most a day long, not over); with it off, "
        "the slot sent is ignored and the next callback window of the configuration is used."
    ),
    openapi_extra=_body_schema(schemas.CallMeBackBody),
    response_model=schemas.Created,
    responses={
        400: {"description": "invalid-input naming the field", **_SLUG_ERROR},
        401: {"description": "authorization-error (device token)"},
        404: {"description": "not-found: business_number is not a listed number"},
        409: {"description": "conflict: call me back is not enabled for business_number"},
    },
)
async def call_me_back(request: Request, device: DeviceInfo = Depends(require_device)) -> JsonResponse:
    submission = schemas.parse_call_me_back(await _body(request))
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        cmb_request, event_ids = await service.submit_call_me_back(
            session, runtime.settings, device=device, submission=submission
        )
    if event_ids:
        wake_local_runners()
    return JsonResponse({"id": str(cmb_request.id)}, status_code=201)


@router.get(
    "/app/v1/surveys",
    tags=["App: engagement"],
    summary="The survey to show after a call",
    description="The survey of the feature set of `business_number` (questions in order).",
    response_model=schemas.SurveyOut,
    responses={
        400: {"description": "invalid-input: business_number"},
        401: {"description": "authorization-error (device token)"},
        404: {"description": "not-found: not a listed number, or no survey configured"},
        409: {"description": "conflict: surveys are not enabled for business_number"},
    },
)
async def get_survey(
    request: Request, business_number: str | None = None, device: DeviceInfo = Depends(require_device)
) -> JsonResponse:
    if not business_number:
        raise invalid_input("business_number is required")
    async with runtime_of(request).db.session() as session:
        survey = await service.survey_for_number(session, business_number)
    return JsonResponse(schemas.survey_json(survey))


@router.post(
    "/app/v1/surveys/{survey_id}/responses",
    tags=["App: engagement"],
    status_code=201,
    summary="Answer a survey",
    description=(
        "Store the answers (questions exactly as in the survey, each at most once; responses are strings) and "
        "send a `user_feedback` webhook event to every subscribed webhook."
    ),
    openapi_extra=_body_schema(schemas.SurveyAnswersBody),
    response_model=schemas.Created,
    responses={
        400: {"description": "invalid-input naming the field"},
        401: {"description": "authorization-error (device token)"},
        404: {"description": "not-found: survey not found / business_number is not a listed number"},
        409: {"description": "conflict: surveys off, or not the survey of business_number"},
    },
)
async def answer_survey(survey_id: str, request: Request, device: DeviceInfo = Depends(require_device)) -> JsonResponse:
    parsed_id = parse_uuid(survey_id)
    if parsed_id is None:
        raise invalid_input("survey_id is invalid")
    submission = schemas.parse_survey_answers(await _body(request))
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        response, event_ids = await service.submit_survey_answers(
            session, device=device, survey_id=parsed_id, submission=submission
        )
    if event_ids:
        wake_local_runners()
    return JsonResponse({"id": str(response.id)}, status_code=201)


# --- deprecated log APIs (business) ---------------------------------------------------------------------------


def _download_url(request: Request, token: str) -> str:
    base = runtime_of(request).settings.public_base_url or str(request.base_url)
    return f"{base.rstrip('/')}/downloads/{token}"


@router.get(
    "/clients/{clientAccountId}/openapi/callback-logs/summary",
    tags=["Call Me Back (deprecated)"],
    summary="CMB - download link for Call Me Back requests",
    description=(
        "Deprecated. `from`, `to`: epoch milliseconds (inclusive). Answers with a link to a CSV of the requests in "
        "range; the link needs no token and expires 10 minutes after issue."
    ),
    response_model=schemas.DownloadLink,
    openapi_extra={
        "parameters": [
            _query("from", "epoch milliseconds, e.g. 1753246858000", required=True),
            _query("to", "epoch milliseconds, >= from", required=True),
        ]
    },
    responses={
        400: {"content": {"application/json": {"example": {"slug": "invalid-input", "message": "from is required"}}}},
        404: {"content": {"application/json": {"example": service.NO_CMB}}},
    },
)
async def cmb_logs(
    request: Request, principal: TokenPrincipal = Depends(require_access("call_me_back", "read"))
) -> JsonResponse:
    query = request.query_params
    start, end = service.cmb_range(query.get("from"), query.get("to"))
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        token = await service.issue_cmb_export(
            session, runtime.settings, account_id=principal.account_id, start=start, end=end
        )
    return JsonResponse({"url": _download_url(request, token)}, headers=DEPRECATED)


@router.get(
    "/clients/{clientAccountId}/openapi/feedback_stack/{surveyId}/export_report",
    tags=["User Feedback (deprecated)"],
    summary="UF - download link for a survey's answers",
    description=(
        "Deprecated. `from_date` (required) and `to_date` (default now): epoch milliseconds, or `YYYY-MM-DD` (start "
        "/ end of that day in the account timezone). Answers with a 10-minute CSV link, one row per answer."
    ),
    response_model=schemas.DownloadLink,
    openapi_extra={
        "parameters": [
            _query(
                "from_date", "epoch milliseconds or YYYY-MM-DD (start of that day, account timezone)", required=True
            ),
            _query("to_date", "epoch milliseconds or YYYY-MM-DD (end of that day); default now", required=False),
        ]
    },
    responses={
        400: {
            "content": {"application/json": {"example": {"slug": "invalid-input", "message": "from_date is required"}}}
        },
        404: {
            "content": {
                "application/json": {
                    "examples": {
                        "no answers": {"value": service.NO_FEEDBACK},
                        "unknown survey": {"value": {"slug": "not-found", "message": "survey not found"}},
                    }
                }
            }
        },
    },
)
async def feedback_logs(
    surveyId: str,  # the spec's path parameter name
    request: Request,
    principal: TokenPrincipal = Depends(require_access("user_feedback", "read")),
) -> JsonResponse:
    survey_id: uuid.UUID | None = parse_uuid(surveyId)
    if survey_id is None:
        raise invalid_input("surveyId is invalid")
    query = request.query_params
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        start, end = await service.feedback_range(
            session, principal.account_id, query.get("from_date"), query.get("to_date")
        )
        token = await service.issue_feedback_export(
            session, runtime.settings, account_id=principal.account_id, survey_id=survey_id, start=start, end=end
        )
    return JsonResponse({"url": _download_url(request, token)}, headers=DEPRECATED)


@router.get(
    "/downloads/{token}",
    tags=["Downloads"],
    summary="A CMB / UF export file",
    description="The CSV behind a link from CMB or UF. No token needed; 404 once the link has expired.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, 404: {"description": "not-found (unknown or expired link)"}},
)
async def download(token: str, request: Request) -> StreamingResponse:
    db = runtime_of(request).db
    async with db.session() as session:
        found = await service.find_download(session, token)
    return StreamingResponse(
        service.csv_lines(db, found),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{found.filename}"', "Cache-Control": "no-store"},
    )
