"""Wire shapes of FS, NL, ND and NN (SPEC §5.6-§5.9) and of the CLI's tree objects."""

from __future__ import annotations

import uuid
from typing import Any

from callerid.failures import InvalidInput
from callerid.numbers.models import CallingOperation, Department, Operation, Process
from callerid.numbers.service import Classification, FeatureSetView, NumberView, TreeFilters
from callerid.timefmt import iso_z
from callerid.uuids import parse_uuid


def _id(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def phone_numbers_from_body(body: dict[str, Any] | None, maximum: int) -> list[str]:
    """``phone_numbers``: an array of 1..maximum strings (SPEC §5.7); ``null`` counts as absent."""
    if body is None:
        raise InvalidInput("Request body is invalid")
    numbers = body.get("phone_numbers")
    if numbers is None:
        raise InvalidInput("phone_numbers is required")
    if (
        not isinstance(numbers, list)
        or not 1 <= len(numbers) <= maximum
        or not all(isinstance(item, str) for item in numbers)
    ):
        raise InvalidInput(f"phone_numbers must contain between 1 and {maximum} numbers")
    return numbers


def tree_filters(query: Any, *, with_feature_set: bool) -> TreeFilters:
    """Filter ids from the query string; a malformed one is ``<name> is invalid``, an empty one is absent."""
    names = ["department_id", "operation_id", "process_id"] + (["feature_set_id"] if with_feature_set else [])
    values: dict[str, uuid.UUID] = {}
    for name in names:
        raw = query.get(name)
        if raw is None or raw == "":
            continue
        parsed = parse_uuid(raw)
        if parsed is None:
            raise InvalidInput(f"{name} is invalid")
        values[name] = parsed
    return TreeFilters(**values)


def feature_set_json(view: FeatureSetView) -> dict[str, Any]:
    fs = view.feature_set
    return {
        "id": str(fs.id),
        "name": fs.name,
        "description": fs.description,
        "status": fs.status,
        "process_id": str(fs.process_id),
        "client_account_id": str(fs.account_id),
        "label_id": str(fs.label_id),
        "call_reason_id": _id(fs.call_reason_id),
        "video_caller_id": None,
        "business_profile_id": None,
        "call_me_back": fs.call_me_back,
        "survey": fs.survey,
        "department_id": str(fs.department_id),
        "department_name": view.department_name,
        "operation_id": str(fs.operation_id),
        "calling_operation_id": str(view.calling_operation_id),
        "calling_operation_name": view.calling_operation_name,
        "process_name": view.process_name,
        "sub_process_name": view.sub_process_name,
        "created_at": iso_z(fs.created_at),
        "updated_at": iso_z(fs.updated_at),
    }


def feature_sets_page(views: list[FeatureSetView], total_pages: int, page: int, limit: int) -> dict[str, Any]:
    return {
        "feature_sets": [feature_set_json(view) for view in views],
        "pagination_info": {"total_page_count": total_pages, "current_page": page, "page_limit": limit},
    }


def number_json(view: NumberView) -> dict[str, Any]:
    body: dict[str, Any] = {
        "phone_number": view.phone_number,
        "phone_type": view.phone_type,
        "status": view.status,
        "client_account_id": str(view.account_id),
        "created_by_email": view.created_by_email,
        "department": view.department,
        "operation": view.operation,
        "process": view.process,
        "subprocess": view.subprocess,
        "feature_set_name": view.feature_set_name,
        "call_me_back": "enabled" if view.call_me_back else "disabled",
        "created_at": iso_z(view.created_at),
        "updated_at": iso_z(view.updated_at),
        "label_name": view.label_name,
    }
    if view.failure_reason is not None:
        body["failure_reason"] = view.failure_reason  # [E] like S1's failure_reason: why a listing failed
    return body


def numbers_page(views: list[NumberView], total_pages: int) -> dict[str, Any]:
    return {
        "numbers": [number_json(view) for view in views],
        "pagination_information": {"total_page_count": total_pages},
    }


def list_response(account_id: uuid.UUID, created_by_email: str, outcome: Classification) -> dict[str, Any]:
    """NL 200 body: the reference's keys in its order, plus ``processing_numbers`` (SPEC §5.7)."""
    b = outcome.buckets
    return {
        "client_account_id": str(account_id),
        "created_by_email": created_by_email,
        "phone_type": "verified",
        "new_numbers": b["new_numbers"],
        "other_phonetype_numbers": b["other_phonetype_numbers"],
        "existing_numbers": b["existing_numbers"],
        "others_numbers": b["others_numbers"],
        "invalid_numbers": b["invalid_numbers"],
        "other_feature_set_numbers": b["other_feature_set_numbers"],
        "status": outcome.status,
        "migrated_numbers": b["migrated_numbers"],
        "delisted_numbers": b["delisted_numbers"],
        "updated_numbers": b["updated_numbers"],
        "processing_numbers": b["processing_numbers"],
    }


def delist_response(account_id: uuid.UUID, outcome: Classification) -> dict[str, Any]:
    """ND 200 body: exactly the reference's keys (SPEC §5.8)."""
    b = outcome.buckets
    return {
        "client_account_id": str(account_id),
        "phone_type": "",
        "processing_numbers": b["processing_numbers"],
        "new_numbers": b["new_numbers"],
        "other_phonetype_numbers": b["other_phonetype_numbers"],
        "existing_numbers": b["existing_numbers"],
        "others_numbers": b["others_numbers"],
        "invalid_numbers": b["invalid_numbers"],
        "other_feature_set_numbers": b["other_feature_set_numbers"],
        "status": outcome.status,
    }


def department_json(department: Department) -> dict[str, Any]:
    return {
        "id": str(department.id),
        "name": department.name,
        "client_account_id": str(department.account_id),
        "created_at": iso_z(department.created_at),
    }


def operation_json(operation: Operation, entry: CallingOperation) -> dict[str, Any]:
    return {
        "id": str(operation.id),
        "name": operation.name,
        "department_id": str(operation.department_id),
        "calling_operation_id": str(entry.id),
        "calling_operation_name": entry.name,
        "client_account_id": str(operation.account_id),
        "created_at": iso_z(operation.created_at),
    }


def process_json(process: Process) -> dict[str, Any]:
    return {
        "id": str(process.id),
        "name": process.name,
        "operation_id": str(process.operation_id),
        "parent_id": _id(process.parent_id),
        "client_account_id": str(process.account_id),
        "created_at": iso_z(process.created_at),
    }
