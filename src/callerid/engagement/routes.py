"""HTTP for engagement: the app's Call Me Back and survey endpoints, the deprecated CMB/UF log APIs
(SPEC §5.10, §5.11) and the download links they hand out.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel
from starlette.responses import StreamingResponse

from callerid import openapi
from callerid.accounts.dependencies import require_access
from callerid.accounts.service import TokenPrincipal
from callerid.delivery.auth import require_device
from callerid.delivery.service import DeviceInfo
from callerid.engagement import schemas, service
from callerid.failures import InvalidInput
from callerid.http import parse_uuid, read_json_object
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
    example = schema.pop("example")
    return {"requestBody": openapi.json_body(schema, example)}


_EPOCH_MS = "^[0-9]{1,15}$"
# UF's dates: epoch milliseconds, or a day (engagement.exports._date_param).
_EPOCH_MS_OR_DAY = "^([0-9]{1,15}|[0-9]{4}-[0-9]{2}-[0-9]{2})$"
_SURVEY_ID = Path(description="the survey's id (`id` of GET /app/v1/surveys)", json_schema_extra={"format": "uuid"})
# "Nothing found" of CMB and UF, or (no such path) the common not-found.
_NOTHING_FOUND = {"anyOf": [openapi.ref("Message"), openapi.error_schema("not-found")]}
_APP_400 = {"description": "invalid-input naming the field", **_SLUG_ERROR}
# CMB's and UF's "nothing found" is a bare message, not the common error shape (SPEC §5.10, §5.11).
NO_CMB = {"message": service.NO_CMB}
NO_FEEDBACK = {"message": service.NO_FEEDBACK}


async def _body(request: Request) -> dict[str, object]:
    body = await read_json_object(request)
    if body is None:
        raise InvalidInput("Request body is invalid")
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
        400: _APP_400,
        404: {"description": "not-found: business_number is not a listed number"},
        409: {"description": "conflict: call me back is not enabled for business_number"},
    },
)
async def call_me_back(request: Request, device: DeviceInfo = Depends(require_device)) -> JsonResponse:
    submission = schemas.parse_call_me_back(await _body(request))
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        cmb_request, _ = await service.submit_call_me_back(
            session, runtime.settings, device=device, submission=submission
        )
    return JsonResponse({"id": str(cmb_request.id)}, status_code=201)


@router.get(
    "/app/v1/surveys",
    tags=["App: engagement"],
    summary="The survey to show after a call",
    description=(
        "The live survey of the feature set of `business_number`: questions in order, with their kind in "
        "`question_details` (rating 1-5, choice, text). A paused survey is not shown (404, as when there is none)."
    ),
    response_model=schemas.SurveyOut,
    openapi_extra={
        "parameters": [
            openapi.query_parameter(
                "business_number",
                f"the business number that called: {openapi.PHONE_DESCRIPTION}",
                {"type": "string", "pattern": openapi.PHONE_PATTERN},
                required=True,
                example="910987654321",
            )
        ]
    },
    responses={
        400: {"description": "invalid-input: business_number missing or invalid"},
        404: {"description": "not-found: not a listed number, or no live survey"},
        409: {"description": "conflict: surveys are not enabled for business_number"},
    },
)
async def get_survey(request: Request, device: DeviceInfo = Depends(require_device)) -> JsonResponse:
    business_number = request.query_params.get("business_number")
    if not business_number:
        raise InvalidInput("business_number is required")
    async with runtime_of(request).db.session() as session:
        survey = await service.survey_for_number(session, business_number)
    return JsonResponse(schemas.survey_json(survey))


@router.post(
    "/app/v1/surveys/{survey_id}/responses",
    tags=["App: engagement"],
    status_code=201,
    summary="Answer a survey",
    description=(
        "Store the answers (questions exactly as in the survey, each at most once; responses are strings: a rating "
        "`1`-`5`, a choice exactly as listed, or free text) and send a `user_feedback` webhook event to every "
        "subscribed webhook. A paused survey takes no answers (409)."
    ),
    openapi_extra=_body_schema(schemas.SurveyAnswersBody),
    response_model=schemas.Created,
    responses={
        400: _APP_400,
        404: {"description": "not-found: survey not found / business_number is not a listed number"},
        409: {"description": "conflict: survey paused, surveys off, or not the survey of business_number"},
    },
)
async def answer_survey(
    survey_id: Annotated[str, _SURVEY_ID], request: Request, device: DeviceInfo = Depends(require_device)
) -> JsonResponse:
    parsed_id = parse_uuid(survey_id)
    if parsed_id is None:
        raise InvalidInput("survey_id is invalid")
    submission = schemas.parse_survey_answers(await _body(request))
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        response, _ = await service.submit_survey_answers(
            session, device=device, survey_id=parsed_id, submission=submission
        )
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
            openapi.query_parameter(
                "from",
                "epoch milliseconds",
                {"type": "string", "pattern": _EPOCH_MS},
                required=True,
                example="1735689600000",
            ),
            openapi.query_parameter(
                "to",
                "epoch milliseconds, >= from",
                {"type": "string", "pattern": _EPOCH_MS},
                required=True,
                example="4102444800000",
            ),
        ]
    },
    responses={
        400: openapi.json_response(
            "invalid-input: `from`/`to` missing or invalid, or `to` before `from`",
            example={"slug": "invalid-input", "message": "from is required"},
        ),
        404: openapi.json_response("no Call Me Back request in the range", _NOTHING_FOUND, NO_CMB),
    },
)
async def cmb_logs(
    request: Request, principal: TokenPrincipal = Depends(require_access("call_me_back", "read"))
) -> JsonResponse:
    query = request.query_params
    start, end = service.cmb_range(query.get("from"), query.get("to"))
    runtime = runtime_of(request)
    try:
        async with runtime.db.transaction() as session:
            token = await service.issue_cmb_export(
                session, runtime.settings, account_id=principal.account_id, start=start, end=end
            )
    except service.NothingInRange:
        return JsonResponse(NO_CMB, status_code=404)
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
            openapi.query_parameter(
                "from_date",
                "epoch milliseconds or YYYY-MM-DD (start of that day, account timezone)",
                {"type": "string", "pattern": _EPOCH_MS_OR_DAY},
                required=True,
                example="2025-01-01",
            ),
            openapi.query_parameter(
                "to_date",
                "epoch milliseconds or YYYY-MM-DD (end of that day); default now",
                {"type": "string", "pattern": _EPOCH_MS_OR_DAY},
                empty_is_absent=True,
                example="2099-12-31",
            ),
        ]
    },
    responses={
        400: openapi.json_response(
            "invalid-input: `surveyId`, `from_date` or `to_date` missing or invalid, or `to_date` before `from_date`",
            example={"slug": "invalid-input", "message": "from_date is required"},
        ),
        404: {
            "description": "`survey not found` (unknown, or of another account), or no answers in the range",
            "content": {
                openapi.JSON: {
                    "schema": _NOTHING_FOUND,
                    "examples": {
                        "no answers": {"value": NO_FEEDBACK},
                        "unknown survey": {"value": {"slug": "not-found", "message": "survey not found"}},
                    },
                }
            },
        },
    },
)
async def feedback_logs(
    surveyId: Annotated[str, Path(description="the survey's id", json_schema_extra={"format": "uuid"})],
    request: Request,
    principal: TokenPrincipal = Depends(require_access("user_feedback", "read")),
) -> JsonResponse:
    survey_id: uuid.UUID | None = parse_uuid(surveyId)
    if survey_id is None:
        raise InvalidInput("surveyId is invalid")
    query = request.query_params
    runtime = runtime_of(request)
    try:
        async with runtime.db.transaction() as session:
            start, end = await service.feedback_range(
                session, principal.account_id, query.get("from_date"), query.get("to_date")
            )
            token = await service.issue_feedback_export(
                session, runtime.settings, account_id=principal.account_id, survey_id=survey_id, start=start, end=end
            )
    except service.NothingInRange:
        return JsonResponse(NO_FEEDBACK, status_code=404)
    return JsonResponse({"url": _download_url(request, token)}, headers=DEPRECATED)


@router.get(
    "/downloads/{token}",
    tags=["Downloads"],
    summary="A CMB / UF export file",
    description="The CSV behind a link from CMB or UF. No token needed; 404 once the link has expired.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, 404: {"description": "not-found (unknown or expired link)"}},
)
async def download(
    token: Annotated[str, Path(description="the end of the `url` CMB or UF answered with")], request: Request
) -> StreamingResponse:
    db = runtime_of(request).db
    async with db.session() as session:
        found = await service.find_download(session, token)
    return StreamingResponse(
        service.csv_lines(db, found),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{found.filename}"', "Cache-Control": "no-store"},
    )
