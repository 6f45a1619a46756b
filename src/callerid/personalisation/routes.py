"""HTTP for call personalisation: R2, B2, S2 and the deprecated R1, B1, S1 (SPEC §5.2-§5.5)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request

from callerid import openapi
from callerid.accounts.dependencies import check_access, require_access
from callerid.accounts.service import TokenPrincipal
from callerid.failures import InvalidInput
from callerid.fastlane import FastRequest, FastResponse, FastRoute, documented, operation
from callerid.http import begin_idempotent, parse_json_object, parse_uuid
from callerid.idempotency import service as idempotency
from callerid.personalisation import schemas, service
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

TAGS = ["Call personalisation"]
router = APIRouter(tags=TAGS)

FEATURE = "call_personalisation"
# Deprecated endpoints say so (SPEC §1.4 [E]); reference clients ignore the header.
DEPRECATED = {"Deprecation": "true"}

# Examples that work as they are once `label_id` is one of your dynamic labels (GET /clients/{id}/labels): their
# window (2100-01-01, 00:00 to 04:00 UTC) never lies in the past; use your call's own window.
_EXAMPLE_STARTS_AT = 4_102_444_800_000
_EXAMPLE_ENDS_AT = _EXAMPLE_STARTS_AT + 4 * 3_600_000
_RECORD_V2_EXAMPLE = {
    "label_id": "c6d86658-008d-4c08-98fb-2bf2649d59a5",
    "dynamic_label_name": "Flower rasm",
    "dynamic_call_reason": "Flower Delivery",
    "caller_number": "911234567898",
    "receiver_number": "919234567898",
    "starts_at": _EXAMPLE_STARTS_AT,
    "ends_at": _EXAMPLE_ENDS_AT,
}
_RECORD_V1_EXAMPLE = {
    "call_reason": "Flower Delivery",
    "caller": "911234567890",
    "ends_at": _EXAMPLE_ENDS_AT,
    "label_id": "255297eb-7f13-44f9-967a-f287ff0f5025",
    "label_name": "Delivery",
    "receiver": "919876543210",
    "starts_at": _EXAMPLE_STARTS_AT,
}

# --- OpenAPI: the record rules of SPEC §7.1 as far as JSON Schema says them -----------------------------------
# Not expressible, so only in descriptions: the label must be a dynamic label of this account; ends_at not in the
# past, after starts_at and at most 24 h after it; label names and call reasons must be displayable text
# (callerid.display_text).

_EDGE = r"\s.,\-"
_UNSUPPORTED_CHARACTERS = r"!@#$%^&*()_+/"
# 10-100 characters, none of the unsupported ones, no space, '.', ',' or '-' first or last (rules 5-8).
CALL_REASON_PATTERN = (
    f"^[^{_EDGE}{_UNSUPPORTED_CHARACTERS}][^{_UNSUPPORTED_CHARACTERS}]{{8,98}}[^{_EDGE}{_UNSUPPORTED_CHARACTERS}]$"
)
_INT64 = {"type": "integer", "format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1}


def _record_schema(version: str) -> dict[str, Any]:
    """A call record's body in ``version``'s names (SPEC §7.1)."""
    names = {field: schemas.wire_name(field, version) for field in schemas.FIELDS}
    aliases = " (or its v1 name `{}` when it is absent)" if version == schemas.V2 else ""

    def described(field: str, text: str) -> str:
        return text + (aliases.format(field) if names[field] != field else "")

    return {
        "type": "object",
        "required": [names[field] for field in ("caller", "receiver", "label_id", "starts_at", "ends_at")],
        "properties": {
            names["caller"]: openapi.phone(described("caller", f"the business's number: {openapi.PHONE_DESCRIPTION}")),
            names["receiver"]: openapi.phone(described("receiver", "the called app user's number")),
            "label_id": {
                **openapi.UUID,
                "description": "a dynamic label of this account (GET /clients/{clientAccountId}/labels)",
            },
            names["label_name"]: {
                "type": ["string", "null"],
                "anyOf": [{"maxLength": 0}, {"minLength": 3, "maxLength": 40}],
                "description": described("label_name", "3-40 characters; absent, null or empty: the label's name"),
            },
            names["call_reason"]: {
                "type": ["string", "null"],
                "minLength": 10,
                "maxLength": 100,
                "pattern": CALL_REASON_PATTERN,
                "description": described(
                    "call_reason",
                    "10-100 characters, none of `! @ # $ % ^ & * ( ) _ + /`, not starting or ending with a space, "
                    "`.`, `,` or `-`",
                ),
            },
            "starts_at": {**_INT64, "minimum": 0, "description": "window start, epoch milliseconds"},
            "ends_at": {
                **_INT64,
                "description": "window end, epoch milliseconds: not in the past, after starts_at, at most 24 hours "
                "after it",
            },
        },
    }


_STORED_VALUE = "as stored: normalised, or as sent when the record is invalid"
_S2_STATUS_INFO = {
    "type": "object",
    "description": "`pending`; `success`; `error` with `reason` `invalid_input`, `field` and `message` (failed "
    "validation) or a delivery `reason` and `message` (SPEC §8)",
    "required": ["status"],
    "properties": {
        "status": {"enum": ["pending", "success", "error"]},
        "reason": {"type": "string"},
        "field": {"type": "string"},
        "message": {"type": ["string", "null"]},
    },
    "additionalProperties": False,
}
_CREATED_AT = {"type": "string", "format": "date-time"}
openapi_schemas: dict[str, Any] = {
    "CallRecordV2": _record_schema(schemas.V2),
    "CallRecordV1": _record_schema(schemas.V1),
    "R2Answer": {
        "type": "object",
        "description": "`success`, or `error` with the delivery `reason` (SPEC §8) when the record is valid but was "
        "not delivered",
        "required": ["status_info"],
        "properties": {
            "status_info": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {
                    "status": {"enum": ["success", "error"]},
                    "reason": {
                        "enum": ["not_app_user", "os_not_supported", "app_version_not_supported", "failed_to_push"]
                    },
                    "message": {"type": "string"},
                },
                "additionalProperties": False,
            }
        },
        "additionalProperties": False,
    },
    "BatchStatusV2": {
        "type": "object",
        "required": ["client_account_id", "batch_id", "data"],
        "properties": {
            "client_account_id": openapi.UUID,
            "batch_id": openapi.UUID,
            "data": {
                "type": "array",
                "description": "the batch's records in submission order; empty for an unknown batch",
                "items": {
                    "type": "object",
                    "required": [
                        "id",
                        "caller_number",
                        "receiver_number",
                        "label_id",
                        "dynamic_label_name",
                        "dynamic_call_reason",
                        "starts_at",
                        "ends_at",
                        "status_info",
                        "created_at",
                    ],
                    "properties": {
                        "id": openapi.UUID,
                        **{
                            name: {"description": _STORED_VALUE}
                            for name in (schemas.wire_name(field, schemas.V2) for field in schemas.FIELDS)
                        },
                        "status_info": _S2_STATUS_INFO,
                        "created_at": _CREATED_AT,
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    },
    "BatchRecordV1": {
        "type": "object",
        "required": [
            "id",
            "client_account_id",
            "batch_id",
            "caller",
            "receiver",
            "label_id",
            "label_name",
            "call_reason",
            "starts_at",
            "ends_at",
            "status",
            "created_at",
        ],
        "properties": {
            "id": openapi.UUID,
            "client_account_id": openapi.UUID,
            "batch_id": {"type": ["string", "null"], "format": "uuid"},
            **{field: {"description": _STORED_VALUE} for field in schemas.FIELDS},
            "status": {"enum": ["pending", "success", "failure"]},
            "failure_reason": {"type": ["string", "null"], "description": "why, when `status` is `failure`"},
            "created_at": _CREATED_AT,
        },
        "additionalProperties": False,
    },
}
_BATCH_ID_PARAMETER = openapi.query_parameter(
    "batchId", "the batch id from B2 (or the BatchID of R1/B1)", openapi.UUID, required=True,
    example="b72f7a40-ec3a-462f-b528-da0e8dc87e79",
)  # fmt: skip


def _batch_body(record: str, *, strict: bool) -> dict[str, Any]:
    items = openapi.ref(record) if strict else {"anyOf": [openapi.ref(record), {"type": "object"}]}
    return {
        "type": "object",
        "required": [service.BATCH_FIELD],
        "properties": {service.BATCH_FIELD: {"type": "array", "minItems": 1, "maxItems": 500, "items": items}},
    }


def _batch_id(request: Request) -> uuid.UUID:
    raw = request.query_params.get("batchId")
    if raw is None or raw == "":
        raise InvalidInput("batchId is required")
    batch_id = parse_uuid(raw)
    if batch_id is None:
        raise InvalidInput("batchId is invalid")
    return batch_id


# --- v2 ------------------------------------------------------------------------------------------------


def _r2_answer(result: service.RealtimeResult) -> tuple[int, Any]:
    record = result.record
    if not record.valid:
        return 400, schemas.v2_invalid(record.v2_field or "", record.message or "")
    if result.outcome is not None and result.outcome.reason is not None:
        return 200, schemas.r2_not_delivered(result.outcome.reason, result.outcome.message)
    return 200, schemas.R2_SUCCESS


async def _begin_keyed(
    request: FastRequest, account_id: uuid.UUID, raw: bytes
) -> idempotency.Claim | idempotency.Answer | FastResponse | None:
    """The request's idempotency claim or stored answer; a 400 in the v2 error shape for a malformed key (R2/B2
    clients read every 400 as a ``status_info`` error, as the v2 document says)."""
    runtime, key = request.runtime, request.header(b"idempotency-key")
    try:
        return await idempotency.begin_if_keyed(
            runtime.db, runtime.settings, account_id, key, "POST", request.path, raw
        )
    except InvalidInput as exc:
        return FastResponse(schemas.v2_error(exc.field or idempotency.HEADER, exc.message), 400)


def _replayed(answer: idempotency.Answer, headers: dict[str, str] | None = None) -> FastResponse:
    return FastResponse(answer.content, answer.status, {**(headers or {}), **idempotency.REPLAYED})


async def realtime_v2(request: FastRequest) -> FastResponse:
    runtime = request.runtime
    principal = await check_access(
        runtime, request.header(b"authorization"), request.path_params["clientAccountId"], FEATURE, "write"
    )
    raw = await request.body()
    body = parse_json_object(raw)
    if body is None:
        return FastResponse(schemas.V2_BODY_UNPARSABLE, 400)
    keyed = await _begin_keyed(request, principal.account_id, raw)
    if isinstance(keyed, FastResponse):
        return keyed
    if isinstance(keyed, idempotency.Answer):
        return _replayed(keyed)
    async with idempotency.holding(runtime.db, keyed):
        answer = idempotency.answering(keyed, _r2_answer)
        result = await service.submit_realtime_v2(runtime, principal.account_id, body, answer=answer)
    status, content = _r2_answer(result)
    return FastResponse(content, status)


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
    raw = await request.body()
    body = parse_json_object(raw)
    if body is None:
        return FastResponse(schemas.V2_BODY_UNPARSABLE, 400)
    try:
        records = service.batch_records_of(body, runtime.settings.batch_max_records)
    except service.BatchShapeError as exc:
        return FastResponse(schemas.v2_invalid(service.BATCH_FIELD, exc.message), 400)
    keyed = await _begin_keyed(request, principal.account_id, raw)
    if isinstance(keyed, FastResponse):
        return keyed
    if isinstance(keyed, idempotency.Answer):
        return _replayed(keyed)
    async with idempotency.holding(runtime.db, keyed):
        answer = idempotency.answering(keyed, _b2_answer)
        batch_id = await service.submit_v2_batch(runtime.db, principal.account_id, records, answer=answer)
    return FastResponse(_b2_answer(batch_id)[1])


def _b2_answer(batch_id: uuid.UUID) -> tuple[int, Any]:
    return 200, {"batch_id": str(batch_id)}


# The two v2 submission endpoints carry the load (records/s): fast routes (see callerid.fastlane). The answers
# every business endpoint shares (401, 403, 429, ...) are added by callerid.openapi.finish.
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
            request_body=openapi.json_body(openapi.ref("CallRecordV2"), _RECORD_V2_EXAMPLE),
            responses={
                200: documented(
                    "delivered, or valid but not delivered (`status_info.reason`)",
                    schemas.R2_SUCCESS,
                    openapi.ref("R2Answer"),
                ),
                400: documented(
                    "validation failure: the first rule broken (SPEC §7.2), or a body that is not a JSON object",
                    schemas.v2_invalid("ends_at", "ends_at cannot be older than current time"),
                    openapi.ref("StatusInfoError"),
                ),
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
            request_body=openapi.json_body(
                _batch_body("CallRecordV2", strict=False), {"call_records": [_RECORD_V2_EXAMPLE]}
            ),
            responses={
                200: documented(
                    "stored (records that break a rule too: the batch status reports them)",
                    {"batch_id": "b72f7a40-ec3a-462f-b528-da0e8dc87e79"},
                    {
                        "type": "object",
                        "required": ["batch_id"],
                        "properties": {"batch_id": openapi.UUID},
                        "additionalProperties": False,
                    },
                ),
                400: documented(
                    "`call_records` missing, not an array of objects or of a wrong size, or a body that is not a JSON "
                    "object",
                    schemas.v2_invalid("call_records", "call_records is required"),
                    openapi.ref("StatusInfoError"),
                ),
            },
        ),
        access=(FEATURE, "write"),
    ),
]


@router.get(
    "/v2/clients/{clientAccountId}/dynamic_call_records",
    summary="Batch status (v2)",
    description="Every record of a batch (v1 or v2) in submission order with its `status_info`.",
    openapi_extra={"parameters": [_BATCH_ID_PARAMETER]},
    responses={
        200: openapi.json_response(
            "the batch's records (`data` empty for an unknown batch)", openapi.ref("BatchStatusV2")
        ),
        400: {"description": "invalid-input: `batchId is required` / `batchId is invalid`"},
    },
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


def _v1_answer(result: service.V1Result) -> tuple[int, Any]:
    if result.error is not None:
        return 400, schemas.v1_failure(result.error, str(result.batch_id))
    return 200, schemas.v1_accepted(str(result.batch_id))


async def _submit_v1(request: Request, principal: TokenPrincipal, *, single: bool) -> JsonResponse:
    runtime = runtime_of(request)
    raw = await request.body()
    body = parse_json_object(raw)
    if body is None:
        return JsonResponse(schemas.v1_failure("Request body is invalid"), status_code=400, headers=DEPRECATED)
    if single:
        records = [body]
    else:
        try:
            records = service.batch_records_of(body, runtime.settings.batch_max_records)
        except service.BatchShapeError as exc:
            return JsonResponse(schemas.v1_failure(exc.message), status_code=400, headers=DEPRECATED)
    try:
        keyed = await begin_idempotent(request, principal.account_id, raw)
    except InvalidInput as exc:  # a malformed Idempotency-Key: v1 clients read every 400 as a v1 failure
        return JsonResponse(schemas.v1_failure(exc.message), status_code=400, headers=DEPRECATED)
    if isinstance(keyed, idempotency.Answer):
        return JsonResponse(keyed.content, status_code=keyed.status, headers={**DEPRECATED, **idempotency.REPLAYED})
    async with idempotency.holding(runtime.db, keyed):
        answer = idempotency.answering(keyed, _v1_answer)
        result = await service.submit_v1(runtime.db, principal.account_id, records, answer=answer)
    status, content = _v1_answer(result)
    return JsonResponse(content, status_code=status, headers=DEPRECATED)


_V1_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: openapi.json_response(
        "accepted: the records are delivered asynchronously",
        {**openapi.ref("V1Outcome"), "description": "`status` is `success`"},
        schemas.v1_accepted("6dabe53b-14a5-44bf-9bab-3dda8b0fee54"),
    ),
    400: openapi.json_response(
        "`failure`: the first error (nothing is delivered); the batch is stored with every record failed, and its "
        "BatchID given, once the body is a JSON object",
        openapi.ref("V1Outcome"),
        schemas.v1_failure("ends_at cannot be older than current time", "d30ca8f7-ae64-4c30-8700-d63f6b2f1dd6"),
    ),
}


@router.post(
    "/clients/{clientAccountId}/dynamic_call_record",
    summary="Real-time call personalisation (v1, deprecated)",
    description="Validate one record; it becomes a one-record batch delivered asynchronously.",
    deprecated=True,
    openapi_extra={"requestBody": openapi.json_body(openapi.ref("CallRecordV1"), _RECORD_V1_EXAMPLE)},
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
        "requestBody": openapi.json_body(
            _batch_body("CallRecordV1", strict=True), {"call_records": [_RECORD_V1_EXAMPLE]}
        )
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
    openapi_extra={"parameters": [_BATCH_ID_PARAMETER]},
    responses={
        200: openapi.json_response(
            "the batch's records in submission order (`[]` for an unknown batch)",
            {"type": "array", "items": openapi.ref("BatchRecordV1")},
        ),
        400: {"description": "invalid-input: `batchId is required` / `batchId is invalid`"},
    },
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
