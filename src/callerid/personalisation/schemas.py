"""Wire shapes of call personalisation: field names per version and every response body (SPEC §5.2-§5.5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callerid.personalisation.models import ERROR, INVALID_INPUT, PENDING, SUCCESS
from callerid.timefmt import iso_z

V1 = "v1"
V2 = "v2"
V2_PREFIX = "Request body is invalid: "

# The seven record fields by their internal (= v1) name.
FIELDS = ("caller", "receiver", "label_id", "label_name", "call_reason", "starts_at", "ends_at")
V2_NAMES = {
    "caller": "caller_number",
    "receiver": "receiver_number",
    "label_id": "label_id",
    "label_name": "dynamic_label_name",
    "call_reason": "dynamic_call_reason",
    "starts_at": "starts_at",
    "ends_at": "ends_at",
}


def wire_name(field: str, version: str) -> str:
    """``field`` (internal name) as the request's version spells it."""
    return V2_NAMES.get(field, field) if version == V2 else field


@dataclass(frozen=True)
class StoredRecord:
    """A call record as the status endpoints show it (values already resolved for display)."""

    id: str
    account_id: str
    batch_id: str | None
    values: dict[str, Any]  # by internal name
    status: str
    reason: str | None
    field: str | None
    message: str | None
    created_at: Any


# --- R2 / B2 -----------------------------------------------------------------------------------------

R2_SUCCESS = {"status_info": {"status": "success", "message": "Record processed successfully"}}
V2_BODY_UNPARSABLE = {"status_info": {"status": "error", "message": "Request body is invalid"}}


def v2_invalid(field: str, message: str) -> dict[str, Any]:
    return v2_error(field, V2_PREFIX + message)


def v2_error(field: str, message: str) -> dict[str, Any]:
    """A v2 400 about ``field`` that is not in the body (a header): the message as it is."""
    return {"status_info": {"status": "error", "field": field, "message": message}}


def r2_not_delivered(reason: str, message: str | None) -> dict[str, Any]:
    return {"status_info": {"status": "error", "reason": reason, "message": message}}


def status_info(record: StoredRecord) -> dict[str, Any]:
    """S2's per-record ``status_info`` (SPEC §5.4)."""
    if record.status == PENDING:
        return {"status": "pending"}
    if record.status == SUCCESS:
        return {"status": "success"}
    if record.reason == INVALID_INPUT:
        return {
            "status": "error",
            "reason": INVALID_INPUT,
            "field": record.field,
            "message": V2_PREFIX + (record.message or ""),
        }
    return {"status": "error", "reason": record.reason, "message": record.message}


def s2_record(record: StoredRecord) -> dict[str, Any]:
    values = record.values
    return {
        "id": record.id,
        "caller_number": values.get("caller"),
        "receiver_number": values.get("receiver"),
        "label_id": values.get("label_id"),
        "dynamic_label_name": values.get("label_name"),
        "dynamic_call_reason": values.get("call_reason"),
        "starts_at": values.get("starts_at"),
        "ends_at": values.get("ends_at"),
        "status_info": status_info(record),
        "created_at": iso_z(record.created_at),
    }


def s2_body(account_id: str, batch_id: str, records: list[StoredRecord]) -> dict[str, Any]:
    return {"client_account_id": account_id, "batch_id": batch_id, "data": [s2_record(r) for r in records]}


# --- R1 / B1 / S1 ------------------------------------------------------------------------------------


def v1_accepted(batch_id: str) -> dict[str, str]:
    return {"status": "success", "message": f"Records Uploaded Successfully. BatchID: {batch_id}"}


def v1_failure(message: str, batch_id: str | None = None) -> dict[str, str]:
    return {"status": "failure", "message": message if batch_id is None else f"{message}. BatchID: {batch_id}"}


def s1_record(record: StoredRecord) -> dict[str, Any]:
    values = record.values
    body: dict[str, Any] = {
        "id": record.id,
        "client_account_id": record.account_id,
        "batch_id": record.batch_id,
        "caller": values.get("caller"),
        "receiver": values.get("receiver"),
        "label_id": values.get("label_id"),
        "label_name": values.get("label_name"),
        "call_reason": values.get("call_reason"),
        "starts_at": values.get("starts_at"),
        "ends_at": values.get("ends_at"),
        "status": "failure" if record.status == ERROR else record.status,
    }
    if record.status == ERROR:
        body["failure_reason"] = record.message
    body["created_at"] = iso_z(record.created_at)
    return body
