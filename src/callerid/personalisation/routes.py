"""HTTP for call personalisation: R2, B2, S2 and the deprecated R1, B1, S1 (SPEC §5.2-§5.5)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request

from callerid.accounts.dependencies import check_access, require_access
from callerid.accounts.service import TokenPrincipal
from callerid.errors import authorization_error, forbidden, invalid_input, rate_limited
from callerid.fastlane import FastRequest, FastResponse, FastRoute, documented, operation
from callerid.http import parse_json_object, parse_uuid, read_json_object
from callerid.personalisation import schemas, service
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

TAGS = ["Call personalisation"]
router = APIRouter(tags=TAGS)

FEATURE = "call_personalisation"
# Deprecated endpoints say so (SPEC §1.4 [E]); reference clients ignore the header.
DEPRECATED = {"Deprecation": "true"}

_RECORD_V2_EXAMPLE = {
    "label_id": "c6d86658-008d-4c08-98fb-2bf2649d59a5",
    "dynamic_label_name": "Flower rasm",
    "dynamic_call_reason": "Flower Delivery",
    "caller_number": "911234567898",
    "receiver_number": "919234567898",
    "starts_at": 1753088751000,
    "ends_at": 1753103151000,
}
_RECORD_V1_EXAMPLE = {
    "call_reason": "Flower Delivery",
    "caller": "911234567890",
    "ends_at": 1751886000000,
    "label_id": "255297eb-7f13-44f9-967a-f287ff0f5025",
    "label_name": "Delivery",
    "receiver": "919876543210",
    "starts_at": 1751879424883,
}


def _json(example: object) -> dict[str, object]:
    return {"content": {"application/json": {"example": example}}}


def _batch_id(request: Request) -> uuid.UUID:
    raw = request.query_params.get("batchId")
    if raw is None or raw == "":
        raise invalid_input("batchId is required")
    batch_id = parse_uuid(raw)
    if batch_id is None:
        raise invalid_input("batchId is invalid")
    return batch_id


# --- v2 ------------------------------------------------------------------------------------------------


async def realtime_v2(request: FastRequest) -> FastResponse:
    runtime = request.runtime
    principal = await check_access(
        runtime, request.header(b"authorization"), request.path_params["clientAccountId"], FEATURE, "write"
    )
    body = parse_json_object(await request.body())
    if body is None:
        return FastResponse(schemas.V2_BODY_UNPARSABLE, 400)
    result = await service.submit_realtime_v2(
        runtime.services, runtime.db, runtime.settings, principal.account_id, body
    )
    record = result.record
    if not record.valid:
        return FastResponse(schemas.v2_invalid(record.v2_field or "", record.message or ""), 400)
    if result.outcome is not None and result.outcome.reason is not None:
        return FastResponse(schemas.r2_not_delivered(result.outcome.reason, result.outcome.message))
    return FastResponse(schemas.R2_SUCCESS)


async def batch_v2(request: FastRequest) -> FastResponse:
    runtime = request.runtime
    principal = await check_access(
        runtime,
        request.header(b"authorization"),
        request.path_params["clientAccountId"],
        FEATURE,
        "write",
        batch_v2=True,
    )
    body = parse_json_object(await request.body())
    if body is None:
        return FastResponse(schemas.V2_BODY_UNPARSABLE, 400)
    try:
        records = service.batch_records_of(body, runtime.settings.batch_max_records)
    except service.BatchShapeError as exc:
        return FastResponse(schemas.v2_invalid(service.BATCH_FIELD, exc.message), 400)
    batch_id = await service.submit_v2_batch(runtime.db, principal.account_id, records)
    return FastResponse({"batch_id": str(batch_id)})


# The two v2 submission endpoints carry the load (records/s): fast routes (see callerid.fastlane).
_AUTH_ERRORS = {
    401: documented("authorization-error", authorization_error("please login again").body()),
    403: documented("forbidden-error", forbidden().body()),
    429: documented("rate-limit-exceeded, with `Retry-After`", rate_limited(1).body()),
}
fast_routes = [
    FastRoute(
        ("POST",),
        "/v2/clients/{clientAccountId}/dynamic_call_record",
        realtime_v2,
        operation(
            "realtime_v2",
            summary="Real-time call personalisation (v2)",
            description=(
                "Validate one record and push it to the receiver synchronously. v1 field names are accepted when "
                "the v2 name is absent. The record is stored in every case."
            ),
            tags=TAGS,
            request_example=_RECORD_V2_EXAMPLE,
            responses={
                200: documented("delivered, or valid but not delivered (`status_info.reason`)", schemas.R2_SUCCESS),
                400: documented(
                    "validation failure", schemas.v2_invalid("ends_at", "ends_at cannot be older than current time")
                ),
                **_AUTH_ERRORS,
            },
        ),
        access=(FEATURE, "write"),
    ),
    FastRoute(
        ("POST",),
        "/v2/clients/{clientAccountId}/dynamic_call_records",
        batch_v2,
        operation(
            "batch_v2",
            summary="Batch call personalisation (v2)",
            description=(
                "Store 1-500 records durably and answer with the batch id; delivery is asynchronous. Each record is "
                "validated at receipt; invalid ones are reported by the batch status endpoint. 60 requests/min per "
                "token."
            ),
            tags=TAGS,
            request_example={"call_records": [_RECORD_V2_EXAMPLE]},
            responses={
                200: documented("stored", {"batch_id": "b72f7a40-ec3a-462f-b528-da0e8dc87e79"}),
                400: documented(
                    "`call_records` missing or of a wrong size",
                    schemas.v2_invalid("call_records", "call_records is required"),
                ),
                **_AUTH_ERRORS,
            },
        ),
        access=(FEATURE, "write"),
    ),
]


@router.get(
    "/v2/clients/{clientAccountId}/dynamic_call_records",
    summary="Batch status (v2)",
    description="Every record of a batch (v1 or v2) in submission order with its `status_info`.",
    responses={200: {"description": "the batch's records (`data` empty for an unknown batch)"}},
)
async def batch_status_v2(
    clientAccountId: str,
    request: Request,
    principal: TokenPrincipal = Depends(require_access(FEATURE, "read")),
) -> JsonResponse:
    batch_id = _batch_id(request)
    async with runtime_of(request).db.session() as session:
        records = await service.batch_records(session, principal.account_id, batch_id)
    return JsonResponse(schemas.s2_body(str(principal.account_id), str(batch_id), records))


# --- v1 (deprecated) -------------------------------------------------------------------------------------


async def _submit_v1(request: Request, principal: TokenPrincipal, *, single: bool) -> JsonResponse:
    runtime = runtime_of(request)
    body = await read_json_object(request)
    if body is None:
        return JsonResponse(schemas.v1_failure("Request body is invalid"), status_code=400, headers=DEPRECATED)
    if single:
        records = [body]
    else:
        try:
            records = service.batch_records_of(body, runtime.settings.batch_max_records)
        except service.BatchShapeError as exc:
            return JsonResponse(schemas.v1_failure(exc.message), status_code=400, headers=DEPRECATED)
    result = await service.submit_v1(runtime.db, principal.account_id, records)
    if result.error is not None:
        return JsonResponse(schemas.v1_failure(result.error, str(result.batch_id)), status_code=400, headers=DEPRECATED)
    return JsonResponse(schemas.v1_accepted(str(result.batch_id)), headers=DEPRECATED)


_V1_RESPONSES: dict[int | str, dict[str, object]] = {
    200: _json(schemas.v1_accepted("6dabe53b-14a5-44bf-9bab-3dda8b0fee54")),
    400: _json(schemas.v1_failure("ends_at cannot be older than current time", "d30ca8f7-ae64-4c30-8700-d63f6b2f1dd6")),
}


@router.post(
    "/clients/{clientAccountId}/dynamic_call_record",
    summary="Real-time call personalisation (v1, deprecated)",
    description="Validate one record; it becomes a one-record batch delivered asynchronously.",
    deprecated=True,
    openapi_extra={"requestBody": {"content": {"application/json": {"example": _RECORD_V1_EXAMPLE}}}},
    responses=_V1_RESPONSES,
)
async def realtime_v1(
    clientAccountId: str,
    request: Request,
    principal: TokenPrincipal = Depends(require_access(FEATURE, "write")),
) -> JsonResponse:
    return await _submit_v1(request, principal, single=True)


@router.post(
    "/clients/{clientAccountId}/dynamic_call_records",
    summary="Bulk call personalisation (v1, deprecated)",
    description="1-500 records, all-or-nothing: one invalid record rejects the batch (still stored and queryable).",
    deprecated=True,
    openapi_extra={
        "requestBody": {"content": {"application/json": {"example": {"call_records": [_RECORD_V1_EXAMPLE]}}}}
    },
    responses=_V1_RESPONSES,
)
async def bulk_v1(
    clientAccountId: str,
    request: Request,
    principal: TokenPrincipal = Depends(require_access(FEATURE, "write")),
) -> JsonResponse:
    return await _submit_v1(request, principal, single=False)


@router.get(
    "/clients/{clientAccountId}/dynamic_call_records",
    summary="Batch status (v1, deprecated)",
    description="A bare array of the batch's records with v1 names; `failure_reason` on failed ones.",
    deprecated=True,
)
async def batch_status_v1(
    clientAccountId: str,
    request: Request,
    principal: TokenPrincipal = Depends(require_access(FEATURE, "read")),
) -> JsonResponse:
    batch_id = _batch_id(request)
    async with runtime_of(request).db.session() as session:
        records = await service.batch_records(session, principal.account_id, batch_id)
    return JsonResponse([schemas.s1_record(record) for record in records], headers=DEPRECATED)
