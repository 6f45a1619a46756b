"""FS, NL, ND and NN (SPEC §5.6-§5.9): parse, call the service, render."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from starlette.requests import Request

from callerid import openapi
from callerid.accounts.dependencies import require_access
from callerid.accounts.service import TokenPrincipal
from callerid.failures import InvalidInput
from callerid.http import JsonResponse, begin_idempotent, parse_json_object, parse_page, parse_uuid
from callerid.idempotency import service as idempotency
from callerid.numbers import schemas, service
from callerid.runtime import runtime_of

router = APIRouter(tags=["number management"])

DEFAULT_PAGE_LIMIT = 50
BASE = "/clients/{clientAccountId}/number_management"


def _query(name: str, description: str) -> dict[str, Any]:
    """A filter: a UUID; an empty value is no filter (``schemas.tree_filters``)."""
    return openapi.query_parameter(name, description, openapi.UUID, empty_is_absent=True)


_TREE_PARAMS = [
    _query("department_id", "only feature sets under this department"),
    _query("operation_id", "only feature sets under this operation"),
    _query("process_id", "a process matches its own and its sub-processes' feature sets; a sub-process its own"),
]
_PAGE_PARAMS = openapi.page_parameters(DEFAULT_PAGE_LIMIT)
_NUMBERS_BODY = {
    "requestBody": openapi.json_body(
        {
            "type": "object",
            "required": ["phone_numbers"],
            "properties": {
                "phone_numbers": {
                    "type": "array",
                    "description": "numbers in any form: each one that is not a valid number (SPEC §2.5) is reported "
                    "in `invalid_numbers`, as sent",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "maxItems": 10000,
                }
            },
        },
        {"phone_numbers": ["911234567891"]},
    )
}
_FEATURE_SET_ID = Path(
    description="the feature set's id (console: feature-set configuration page)", json_schema_extra={"format": "uuid"}
)
_NUMBER_LIST = {"type": "array", "items": {"type": "string"}}
_BUCKETS = (
    "new_numbers", "other_phonetype_numbers", "existing_numbers", "others_numbers", "invalid_numbers",
    "other_feature_set_numbers", "processing_numbers",
)  # fmt: skip
_LIST_BUCKETS = (*_BUCKETS, "migrated_numbers", "delisted_numbers", "updated_numbers")
_STATUS = {"enum": ["pending", "failed"], "description": "`pending` if any number was accepted, else `failed`"}


def _classification(buckets: tuple[str, ...], extra: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    properties = {"client_account_id": openapi.UUID, **extra, **dict.fromkeys(buckets, _NUMBER_LIST), "status": _STATUS}
    schema = {"type": "object", "required": list(properties), "properties": properties, "additionalProperties": False}
    return openapi.json_response("each distinct number in one bucket (SPEC §7.4)", schema, example)


_EXAMPLE_ACCOUNT = "91c173bb-28d8-4030-9722-8663ff9589f3"
_PUBLISH_ANSWERS = {
    200: _classification(
        _LIST_BUCKETS,
        {"created_by_email": {"type": "string"}, "phone_type": {"const": "verified"}},
        {
            "client_account_id": _EXAMPLE_ACCOUNT,
            "created_by_email": "admin@example.com",
            "phone_type": "verified",
            **{key: [] for key in _LIST_BUCKETS},
            "new_numbers": ["911234567891"],
            "status": "pending",
        },
    ),
    400: {
        "description": "invalid-input: `featureSetId is invalid`, `phone_numbers is required`, `phone_numbers must "
        "contain between 1 and 10000 numbers`, `feature set number limit exceeded`, `client account number limit "
        "exceeded`"
    },
    404: {"description": "not-found: `feature set not found` (unknown, or of another account)"},
}
_DELIST_ANSWERS = {
    200: _classification(
        _BUCKETS,
        {"phone_type": {"const": ""}},
        {
            "client_account_id": _EXAMPLE_ACCOUNT,
            "phone_type": "",
            **{key: [] for key in _BUCKETS},
            "existing_numbers": ["911234567891"],
            "status": "pending",
        },
    ),
    400: {
        "description": "invalid-input: `featureSetId is invalid`, `phone_numbers is required`, `phone_numbers must "
        "contain between 1 and 10000 numbers`"
    },
    404: {"description": "not-found: `feature set not found` (unknown, or of another account)"},
}
_NULLABLE_UUID = {"type": ["string", "null"], "format": "uuid"}
_FEATURE_SET = {
    "type": "object",
    "properties": {
        "id": openapi.UUID,
        "name": {"type": "string"},
        "description": {"type": "string"},
        "status": {"enum": ["draft", "published", "archived"]},
        "process_id": {**openapi.UUID, "description": "the process or sub-process the set is attached to"},
        "client_account_id": openapi.UUID,
        "label_id": openapi.UUID,
        "call_reason_id": _NULLABLE_UUID,
        "video_caller_id": {"type": "null"},
        "business_profile_id": {"type": "null"},
        "call_me_back": {"type": "boolean"},
        "survey": {"type": "boolean"},
        "department_id": openapi.UUID,
        "department_name": {"type": "string"},
        "operation_id": openapi.UUID,
        "calling_operation_id": openapi.UUID,
        "calling_operation_name": {"type": "string"},
        "process_name": {"type": "string"},
        "sub_process_name": {"type": "string", "description": '`""` when the set is attached to a process'},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": False,
}
_FEATURE_SET["required"] = list(_FEATURE_SET["properties"])
_PAGE_COUNT = {"type": "integer", "minimum": 0}
_FEATURE_SETS_PAGE = {
    "type": "object",
    "required": ["feature_sets", "pagination_info"],
    "properties": {
        "feature_sets": {"type": "array", "items": _FEATURE_SET},
        "pagination_info": {
            "type": "object",
            "required": ["total_page_count", "current_page", "page_limit"],
            "properties": {
                "total_page_count": _PAGE_COUNT,
                "current_page": {"type": "integer", "minimum": 1},
                "page_limit": {"type": "integer", "minimum": 1},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
_NUMBER_PROPERTIES: dict[str, Any] = {
    "phone_number": {"type": "string"},
    "phone_type": {"type": "string"},
    "status": {"enum": ["pending", "listed", "delisting", "failed"]},
    "client_account_id": openapi.UUID,
    "created_by_email": {"type": "string"},
    "department": {"type": "string"},
    "operation": {"type": "string", "description": "the calling operation's name"},
    "process": {"type": "string"},
    "subprocess": {"type": "string"},
    "feature_set_name": {"type": "string"},
    "call_me_back": {"enum": ["enabled", "disabled"]},
    "created_at": {"type": "string", "format": "date-time"},
    "updated_at": {"type": "string", "format": "date-time"},
    "label_name": {"type": "string"},
}
_NUMBERS_PAGE = {
    "type": "object",
    "required": ["numbers", "pagination_information"],
    "properties": {
        "numbers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": list(_NUMBER_PROPERTIES),
                "properties": {
                    **_NUMBER_PROPERTIES,
                    "failure_reason": {"type": "string", "description": "why a listing failed (`failed` only)"},
                },
                "additionalProperties": False,
            },
        },
        "pagination_information": {
            "type": "object",
            "required": ["total_page_count"],
            "properties": {"total_page_count": _PAGE_COUNT},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
_FILTER_ERRORS = {400: {"description": "invalid-input: a filter id, `page` or `limit` is invalid"}}


@router.get(
    f"{BASE}/feature_sets",
    summary="FS - feature sets of the account",
    openapi_extra={"parameters": _TREE_PARAMS + _PAGE_PARAMS},
    responses={
        200: openapi.json_response("a page of feature sets, newest first", _FEATURE_SETS_PAGE),
        **_FILTER_ERRORS,
    },
)
async def feature_sets(
    request: Request, principal: TokenPrincipal = Depends(require_access("number_management", "read"))
) -> JsonResponse:
    filters = schemas.tree_filters(request.query_params, with_feature_set=False)
    page = parse_page(request, DEFAULT_PAGE_LIMIT)
    async with runtime_of(request).db.session() as session:
        views, total = await service.list_feature_sets(
            session, principal.account_id, filters, offset=page.offset, limit=page.limit
        )
    return JsonResponse(schemas.feature_sets_page(views, page.total_pages(total), page.number, page.limit))


@router.get(
    f"{BASE}/numbers",
    summary="NN - business numbers of the account",
    description="Numbers pending, listed, delisting or failed (with `failure_reason`), newest first.",
    openapi_extra={
        "parameters": [*_TREE_PARAMS, _query("feature_set_id", "only numbers of this feature set"), *_PAGE_PARAMS]
    },
    responses={200: openapi.json_response("a page of numbers, newest first", _NUMBERS_PAGE), **_FILTER_ERRORS},
)
async def numbers(
    request: Request, principal: TokenPrincipal = Depends(require_access("number_management", "read"))
) -> JsonResponse:
    filters = schemas.tree_filters(request.query_params, with_feature_set=True)
    page = parse_page(request, DEFAULT_PAGE_LIMIT)
    async with runtime_of(request).db.session() as session:
        views, total = await service.list_numbers(
            session, principal.account_id, filters, offset=page.offset, limit=page.limit
        )
    return JsonResponse(schemas.numbers_page(views, page.total_pages(total)))


def _feature_set_id(raw: str) -> uuid.UUID:
    parsed = parse_uuid(raw)
    if parsed is None:
        raise InvalidInput("featureSetId is invalid")
    return parsed


@router.post(
    f"{BASE}/feature_sets/{{featureSetId}}/numbers/publish",
    summary="NL - list numbers in a feature set",
    description=(
        "Classifies each distinct number into one bucket at once and lists the accepted ones in the background. "
        "A number whose list/delist is still processing is reported in `processing_numbers` and handled once "
        "that finishes."
    ),
    openapi_extra=_NUMBERS_BODY,
    responses=_PUBLISH_ANSWERS,
)
async def publish(
    request: Request,
    featureSetId: Annotated[str, _FEATURE_SET_ID],  # the spec's path parameter name
    principal: TokenPrincipal = Depends(require_access("number_management", "write")),
) -> JsonResponse:
    feature_set_id = _feature_set_id(featureSetId)
    runtime = runtime_of(request)
    raw = await request.body()
    raw_numbers = schemas.phone_numbers_from_body(parse_json_object(raw), runtime.settings.number_request_max)
    keyed = await begin_idempotent(request, principal.account_id, raw)
    if isinstance(keyed, idempotency.Answer):
        return JsonResponse(keyed.content, status_code=keyed.status, headers=idempotency.REPLAYED)
    async with idempotency.holding(runtime.db, keyed), runtime.db.transaction() as session:
        feature_set = await service.feature_set_of(session, principal.account_id, feature_set_id)
        outcome = await service.list_numbers_into(
            session,
            runtime.settings,
            feature_set=feature_set,
            raw_numbers=raw_numbers,
            created_by_email=principal.created_by_email,
        )
        content = schemas.list_response(principal.account_id, principal.created_by_email, outcome)
        if isinstance(keyed, idempotency.Claim):
            await keyed.answer_in(session, 200, content)
    return JsonResponse(content)


@router.post(
    f"{BASE}/feature_sets/{{featureSetId}}/numbers/delist",
    summary="ND - delist numbers from a feature set",
    description="Numbers listed in the set (`existing_numbers`) are delisted in the background.",
    openapi_extra=_NUMBERS_BODY,
    responses=_DELIST_ANSWERS,
)
async def delist(
    request: Request,
    featureSetId: Annotated[str, _FEATURE_SET_ID],  # the spec's path parameter name
    principal: TokenPrincipal = Depends(require_access("number_management", "write")),
) -> JsonResponse:
    feature_set_id = _feature_set_id(featureSetId)
    runtime = runtime_of(request)
    raw = await request.body()
    raw_numbers = schemas.phone_numbers_from_body(parse_json_object(raw), runtime.settings.number_request_max)
    keyed = await begin_idempotent(request, principal.account_id, raw)
    if isinstance(keyed, idempotency.Answer):
        return JsonResponse(keyed.content, status_code=keyed.status, headers=idempotency.REPLAYED)
    async with idempotency.holding(runtime.db, keyed), runtime.db.transaction() as session:
        feature_set = await service.feature_set_of(session, principal.account_id, feature_set_id)
        outcome = await service.delist_numbers_from(
            session,
            runtime.settings,
            feature_set=feature_set,
            raw_numbers=raw_numbers,
            created_by_email=principal.created_by_email,
        )
        content = schemas.delist_response(principal.account_id, outcome)
        if isinstance(keyed, idempotency.Claim):
            await keyed.answer_in(session, 200, content)
    return JsonResponse(content)
