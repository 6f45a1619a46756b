"""FS, NL, ND and NN (SPEC §5.6-§5.9): parse, call the service, render."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends
from starlette.requests import Request

from callerid.accounts.dependencies import require_access
from callerid.accounts.service import TokenPrincipal
from callerid.errors import invalid_input
from callerid.http import JsonResponse, parse_page, parse_uuid, read_json_object
from callerid.jobs.service import wake_local_runners
from callerid.numbers import schemas, service
from callerid.runtime import runtime_of

router = APIRouter(tags=["number management"])

DEFAULT_PAGE_LIMIT = 50
BASE = "/clients/{clientAccountId}/number_management"


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": {"type": "string"}}


_TREE_PARAMS = [
    _query("department_id", "only feature sets under this department"),
    _query("operation_id", "only feature sets under this operation"),
    _query("process_id", "a process matches its own and its sub-processes' feature sets; a sub-process its own"),
]
_PAGE_PARAMS = [_query("page", "page number, from 1 (default 1)"), _query("limit", "1-1000 (default 50)")]
_NUMBERS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["phone_numbers"],
                    "properties": {
                        "phone_numbers": {
                            "type": "array",
                            "items": {"type": "string"},
                            "minItems": 1,
                            "maxItems": 10000,
                        }
                    },
                },
                "example": {"phone_numbers": ["911234567891"]},
            }
        },
    }
}


@router.get(
    f"{BASE}/feature_sets",
    summary="FS - feature sets of the account",
    openapi_extra={"parameters": _TREE_PARAMS + _PAGE_PARAMS},
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
        raise invalid_input("featureSetId is invalid")
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
)
async def publish(
    request: Request,
    featureSetId: str,  # the spec's path parameter name
    principal: TokenPrincipal = Depends(require_access("number_management", "write")),
) -> JsonResponse:
    feature_set_id = _feature_set_id(featureSetId)
    runtime = runtime_of(request)
    raw_numbers = schemas.phone_numbers_from_body(await read_json_object(request), runtime.settings.number_request_max)
    async with runtime.db.transaction() as session:
        feature_set = await service.feature_set_of(session, principal.account_id, feature_set_id)
        outcome = await service.list_numbers_into(
            session,
            runtime.settings,
            feature_set=feature_set,
            raw_numbers=raw_numbers,
            created_by_email=principal.created_by_email,
        )
    if outcome.job_id is not None:
        wake_local_runners()
    return JsonResponse(schemas.list_response(principal.account_id, principal.created_by_email, outcome))


@router.post(
    f"{BASE}/feature_sets/{{featureSetId}}/numbers/delist",
    summary="ND - delist numbers from a feature set",
    description="Numbers listed in the set (`existing_numbers`) are delisted in the background.",
    openapi_extra=_NUMBERS_BODY,
)
async def delist(
    request: Request,
    featureSetId: str,  # the spec's path parameter name
    principal: TokenPrincipal = Depends(require_access("number_management", "write")),
) -> JsonResponse:
    feature_set_id = _feature_set_id(featureSetId)
    runtime = runtime_of(request)
    raw_numbers = schemas.phone_numbers_from_body(await read_json_object(request), runtime.settings.number_request_max)
    async with runtime.db.transaction() as session:
        feature_set = await service.feature_set_of(session, principal.account_id, feature_set_id)
        outcome = await service.delist_numbers_from(
            session,
            runtime.settings,
            feature_set=feature_set,
            raw_numbers=raw_numbers,
            created_by_email=principal.created_by_email,
        )
    if outcome.job_id is not None:
        wake_local_runners()
    return JsonResponse(schemas.delist_response(principal.account_id, outcome))
