"""Call records: the validation rules (SPEC §7.1-§7.2), plain Python with no database round trip except one query
for all label ids of a request.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from callerid import clock
from callerid.call_reason import call_reason_problem
from callerid.db import Database
from callerid.display_text import cannot_display, is_displayable
from callerid.labels.service import DynamicLabel, find_dynamic_labels
from callerid.personalisation.schemas import FIELDS, V1, V2, wire_name
from callerid.phone import normalise_phone
from callerid.uuids import parse_uuid

LABEL_NAME_MIN, LABEL_NAME_MAX = 3, 40  # SPEC §7.1 rule 4
MAX_WINDOW_MS = 86_400_000  # SPEC §7.1 rule 13: 24 hours
INT64_MAX = 2**63 - 1  # starts_at / ends_at are int64 (and stored as BIGINT)
BATCH_FIELD = "call_records"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


# v2 requests may use the v1 name of a field that is absent (SPEC §12 #8).
_V2_ALIASES = {
    "caller_number": "caller",
    "receiver_number": "receiver",
    "dynamic_label_name": "label_name",
    "dynamic_call_reason": "call_reason",
}


def new_record_id(at_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562) for time ``at_ms`` (default now), for batch ids and R2 push messages: ids made close in
    time sort together, so new batches append to the index of batch ids instead of landing on random pages.
    Written here because Python 3.11's ``uuid`` has no ``uuid7``."""
    millis = epoch_ms(clock.now()) if at_ms is None else at_ms
    value = (millis & 0xFFFF_FFFF_FFFF) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


def epoch_ms(value: datetime) -> int:
    """Exact epoch milliseconds (integer arithmetic, unlike ``timestamp() * 1000``)."""
    return (value - _EPOCH) // _ONE_MS


class BatchShapeError(Exception):
    """The request's ``call_records`` is missing, not a list of objects, or of a wrong size."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def batch_records_of(body: dict[str, Any] | None, max_records: int) -> list[dict[str, Any]]:
    """The request's ``call_records`` (SPEC §5.3): a list of 1..max objects, else ``BatchShapeError``."""
    records = None if body is None else body.get(BATCH_FIELD)
    if not isinstance(records, list) or not all(isinstance(item, dict) for item in records):
        raise BatchShapeError(f"{BATCH_FIELD} is required")
    if not 1 <= len(records) <= max_records:
        raise BatchShapeError(f"{BATCH_FIELD} must contain between 1 and {max_records} records")
    return records


# --- validation ------------------------------------------------------------------------------------


@dataclass(slots=True)
class CheckedRecord:
    """One record after the rules: normalised values when valid, else the first failing rule."""

    position: int
    caller: str | None = None
    receiver: str | None = None
    label: DynamicLabel | None = None
    label_name: str | None = None
    call_reason: str | None = None
    starts_at: int | None = None
    ends_at: int | None = None
    field: str | None = None  # internal (v1) name of the failing field
    message: str | None = None  # §7.2 message in the request's version, without prefix
    sent: dict[str, Any] | None = None  # for invalid records: what was sent, valid parts normalised

    @property
    def valid(self) -> bool:
        return self.field is None

    @property
    def v2_field(self) -> str | None:
        return None if self.field is None else wire_name(self.field, V2)


class _Invalid(Exception):
    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message


# (name in the request, fallback name when absent) per internal field name and version.
_NAMES = {
    V1: {field: (field, None) for field in FIELDS},
    V2: {field: (wire_name(field, V2), _V2_ALIASES.get(wire_name(field, V2))) for field in FIELDS},
}


def _raw(record: dict[str, Any], field: str, version: str) -> Any:
    """The value sent for ``field`` (internal name); on v2 the v1 name stands in when the v2 one is absent."""
    name, alias = _NAMES[version][field]
    value = record.get(name)
    if value is None and alias is not None:
        value = record.get(alias)
    return value


# A batch repeats the same label id hundreds of times: parse each distinct text once.
_label_uuid = functools.lru_cache(maxsize=4096)(parse_uuid)


def _is_int64(value: Any) -> bool:
    # bool is an int in Python but not a JSON integer.
    return type(value) is int and -INT64_MAX - 1 <= value <= INT64_MAX


def label_ids_of(records: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Every well-formed ``label_id`` of a request, to look them all up in one query."""
    ids = set()
    for record in records:
        value = record.get("label_id")
        if isinstance(value, str):
            parsed = _label_uuid(value)
            if parsed is not None:
                ids.add(parsed)
    return ids


def check_record(
    record: dict[str, Any], version: str, labels: dict[uuid.UUID, DynamicLabel], now_ms: int, position: int = 0
) -> CheckedRecord:
    """Apply SPEC §7.1 rules 1-13 in order; the first failure is kept (messages per §7.2)."""
    checked = CheckedRecord(position=position)
    try:
        _apply_rules(checked, record, version, labels, now_ms)
    except _Invalid as problem:
        checked.field = problem.field
        checked.message = problem.message
        checked.sent = _sent_values(record, version, labels)
    return checked


def _apply_rules(
    checked: CheckedRecord, record: dict[str, Any], version: str, labels: dict[uuid.UUID, DynamicLabel], now_ms: int
) -> None:
    # Written out field by field: a batch runs this for every record, so no loops, lookups or messages that the
    # valid path does not need (the names a message quotes are looked up only on failure).
    names = _NAMES[version]
    caller = _raw(record, "caller", version)  # rules 1, 2
    if caller is None or caller == "":
        raise _Invalid("caller", f"{names['caller'][0]} is required")
    checked.caller = normalise_phone(caller)
    if checked.caller is None:
        raise _Invalid("caller", f"{names['caller'][0]} is invalid")
    receiver = _raw(record, "receiver", version)
    if receiver is None or receiver == "":
        raise _Invalid("receiver", f"{names['receiver'][0]} is required")
    checked.receiver = normalise_phone(receiver)
    if checked.receiver is None:
        raise _Invalid("receiver", f"{names['receiver'][0]} is invalid")

    value = record.get("label_id")  # rule 3
    if value is None or value == "":
        raise _Invalid("label_id", "label_id is required")
    label_id = _label_uuid(value) if isinstance(value, str) else None
    if label_id is None:
        raise _Invalid("label_id", "label_id is invalid")
    label = labels.get(label_id)
    if label is None:
        raise _Invalid("label_id", "label_id is not a dynamic label of this client")
    checked.label = label

    value = _raw(record, "label_name", version)  # rule 4; absent or empty -> the label's name
    if value is None or value == "":
        checked.label_name = label.name
    elif not isinstance(value, str):
        raise _Invalid("label_name", f"{names['label_name'][0]} is invalid")
    elif not LABEL_NAME_MIN <= len(value) <= LABEL_NAME_MAX:
        raise _Invalid(
            "label_name", f"{names['label_name'][0]} must be between {LABEL_NAME_MIN} and {LABEL_NAME_MAX} characters"
        )
    elif not is_displayable(value):  # right after the length rule (callerid.display_text)
        raise _Invalid("label_name", cannot_display(names["label_name"][0]))
    else:
        checked.label_name = value

    value = _raw(record, "call_reason", version)  # rules 5-8
    if value is not None:
        if not isinstance(value, str):
            raise _Invalid("call_reason", f"{names['call_reason'][0]} is invalid")
        problem = call_reason_problem(value, names["call_reason"][0])
        if problem is not None:
            raise _Invalid("call_reason", problem)
        checked.call_reason = value

    starts_at = record.get("starts_at")  # rules 9, 10
    if starts_at is None:
        raise _Invalid("starts_at", "starts_at is required")
    if not _is_int64(starts_at) or starts_at < 0:
        raise _Invalid("starts_at", "starts_at is invalid")
    ends_at = record.get("ends_at")
    if ends_at is None:
        raise _Invalid("ends_at", "ends_at is required")
    if not _is_int64(ends_at):
        raise _Invalid("ends_at", "ends_at is invalid")
    if ends_at < now_ms:  # rule 11
        raise _Invalid("ends_at", "ends_at cannot be older than current time")
    if ends_at <= starts_at:  # rule 12
        raise _Invalid("ends_at", "ends_at cannot be before starts_at")
    if ends_at - starts_at > MAX_WINDOW_MS:  # rule 13
        raise _Invalid("ends_at", "ends_at cannot be more than 24 hours after starts_at")
    checked.starts_at = starts_at
    checked.ends_at = ends_at


def _sent_values(record: dict[str, Any], version: str, labels: dict[uuid.UUID, DynamicLabel]) -> dict[str, Any]:
    """What S1/S2 echo for an invalid record: each field as sent, or normalised where it is valid."""
    values = {field: _raw(record, field, version) for field in FIELDS}
    for field in ("caller", "receiver"):
        values[field] = normalise_phone(values[field]) or values[field]
    label_id = parse_uuid(values["label_id"]) if isinstance(values["label_id"], str) else None
    if label_id is not None:
        values["label_id"] = str(label_id)
        if values["label_name"] in (None, "") and label_id in labels:
            values["label_name"] = labels[label_id].name
    return values


async def labels_for(
    db: Database, account_id: uuid.UUID, records: Sequence[dict[str, Any]]
) -> dict[uuid.UUID, DynamicLabel]:
    return await find_dynamic_labels(db, account_id, label_ids_of(records))
