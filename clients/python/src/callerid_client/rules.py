"""The server's call-record rules (SPEC §7.1-§7.2), applied before a record is sent.

Same order and messages as ``callerid.personalisation.rules``: the first broken rule is reported, with the field in
the request's version (v2 names by default). One rule needs the server's data: whether ``label_id`` is a dynamic
label of the account; it is checked only when the caller passes the account's label ids (``labels``), which
:meth:`callerid_client.Client.personalise_many` fetches once.
"""

from __future__ import annotations

import functools
import re
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from callerid_client._display_text import cannot_display, is_displayable

LABEL_NAME_MIN, LABEL_NAME_MAX = 3, 40
CALL_REASON_MIN, CALL_REASON_MAX = 10, 100
MAX_WINDOW_MS = 86_400_000  # 24 hours
INT64_MAX = 2**63 - 1
BATCH_MAX_RECORDS = 500
V2_PREFIX = "Request body is invalid: "

_E164_DIGITS = re.compile(r"[1-9][0-9]{9,14}")
_UNSUPPORTED = re.compile(r"[!@#$%^&*()_+/]")
_EDGE_CHARACTERS = ".,-"

Version = Literal["v1", "v2"]

# internal (= v1) name -> v2 name; v2 requests may use the v1 name of an absent field (SPEC §12 #8).
V2_NAMES = {
    "caller": "caller_number",
    "receiver": "receiver_number",
    "label_id": "label_id",
    "label_name": "dynamic_label_name",
    "call_reason": "dynamic_call_reason",
    "starts_at": "starts_at",
    "ends_at": "ends_at",
}
_ALIASES = {"caller": "caller", "receiver": "receiver", "label_name": "label_name", "call_reason": "call_reason"}


def normalise_phone(value: object) -> str | None:
    """The server's one phone normaliser (SPEC §2.5): a string, one optional leading ``+``, 10-15 digits, no leading
    0; None when invalid (JSON numbers are invalid)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("+"):
        text = text[1:]
    return text if _E164_DIGITS.fullmatch(text) else None


def call_reason_problem(value: str, field: str) -> str | None:
    """The message for the first call-reason rule ``value`` breaks (rules 5-8 and display text), or None."""
    if not CALL_REASON_MIN <= len(value) <= CALL_REASON_MAX:
        return f"{field} must be between {CALL_REASON_MIN} and {CALL_REASON_MAX} characters"
    if not is_displayable(value):
        return cannot_display(field)
    if _UNSUPPORTED.search(value):
        return f"{field} contains unsupported special characters"
    for edge in (value[0], value[-1]):
        if edge in _EDGE_CHARACTERS or edge.isspace():
            return f"{field} cannot start or end with a space, '.', ',' or '-'"
    return None


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """The first rule a record breaks: the field (in the record's version) and the server's message (no prefix)."""

    field: str
    message: str

    def v2_message(self) -> str:
        """The message as R2 and S2 show it (``Request body is invalid: ...``)."""
        return V2_PREFIX + self.message


class _Invalid(Exception):
    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message


def _is_int64(value: object) -> bool:
    return type(value) is int and -INT64_MAX - 1 <= value <= INT64_MAX


@functools.lru_cache(maxsize=4096)  # a campaign repeats a few label ids many times
def _uuid(value: str) -> str | None:
    """The canonical (lowercase) text of a UUID, or None."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def check_record(
    record: Mapping[str, Any],
    *,
    version: Version = "v2",
    labels: Collection[str] | None = None,
    now_ms: int | None = None,
) -> RecordProblem | None:
    """The first rule ``record`` breaks, or None when it passes every rule the client can check.

    ``labels``: the account's dynamic label ids (lowercase text); None skips that part of rule 3.
    ``now_ms``: "now" for rule 11 (default: this machine's clock).
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if version == "v2" and _plainly_valid(record, labels, now):
        return None
    try:
        _apply_rules(record, version, labels, now)
    except _Invalid as problem:
        return RecordProblem(problem.field, problem.message)
    return None


@functools.lru_cache(maxsize=4096)  # a campaign repeats a few names and reasons many times
def _text_ok(value: str, minimum: int, maximum: int, reason: bool) -> bool:
    if reason:
        return call_reason_problem(value, "") is None
    return minimum <= len(value) <= maximum and is_displayable(value)


def _plainly_valid(record: Mapping[str, Any], labels: Collection[str] | None, now_ms: int) -> bool:
    """True when a v2 record passes every rule by the quickest checks (the usual case of a large campaign, ~1 µs);
    False means "run the rules in order" to find the first one broken, with its message."""
    caller, receiver = record.get("caller_number"), record.get("receiver_number")
    if type(caller) is not str or type(receiver) is not str:
        return False
    if _E164_DIGITS.fullmatch(caller) is None or _E164_DIGITS.fullmatch(receiver) is None:
        return False
    label_id = record.get("label_id")
    if type(label_id) is not str or (label_id not in labels if labels is not None else _uuid(label_id) is None):
        return False
    name = record.get("dynamic_label_name")
    if name is not None and name != "" and (type(name) is not str or not _text_ok(name, 3, 40, False)):
        return False
    reason = record.get("dynamic_call_reason")
    if reason is not None and (type(reason) is not str or not _text_ok(reason, 10, 100, True)):
        return False
    starts_at, ends_at = record.get("starts_at"), record.get("ends_at")
    return (
        type(starts_at) is int
        and type(ends_at) is int
        and 0 <= starts_at < ends_at <= INT64_MAX
        and ends_at >= now_ms
        and ends_at - starts_at <= MAX_WINDOW_MS
    )


def _name(field: str, version: Version) -> str:
    return V2_NAMES[field] if version == "v2" else field


def _raw(record: Mapping[str, Any], field: str, version: Version) -> Any:
    if version == "v1":
        return record.get(field)
    value = record.get(V2_NAMES[field])
    if value is None and field in _ALIASES:
        value = record.get(_ALIASES[field])
    return value


def _apply_rules(record: Mapping[str, Any], version: Version, labels: Collection[str] | None, now_ms: int) -> None:
    for field in ("caller", "receiver"):  # rules 1, 2
        value = record.get(V2_NAMES[field]) if version == "v2" else None
        if type(value) is str and _E164_DIGITS.fullmatch(value) is not None:
            continue  # the usual case: a v2 record, already normalised
        value = _raw(record, field, version)
        if value is None or value == "":
            raise _Invalid(_name(field, version), f"{_name(field, version)} is required")
        if normalise_phone(value) is None:
            raise _Invalid(_name(field, version), f"{_name(field, version)} is invalid")

    value = record.get("label_id")  # rule 3
    if value is None or value == "":
        raise _Invalid("label_id", "label_id is required")
    label_id = _uuid(value) if isinstance(value, str) else None
    if label_id is None:
        raise _Invalid("label_id", "label_id is invalid")
    if labels is not None and label_id not in labels:
        raise _Invalid("label_id", "label_id is not a dynamic label of this client")

    name = _name("label_name", version)  # rule 4
    value = _raw(record, "label_name", version)
    if value is not None and value != "":
        if not isinstance(value, str):
            raise _Invalid(name, f"{name} is invalid")
        if not LABEL_NAME_MIN <= len(value) <= LABEL_NAME_MAX:
            raise _Invalid(name, f"{name} must be between {LABEL_NAME_MIN} and {LABEL_NAME_MAX} characters")
        if not is_displayable(value):
            raise _Invalid(name, cannot_display(name))

    name = _name("call_reason", version)  # rules 5-8
    value = _raw(record, "call_reason", version)
    if value is not None:
        if not isinstance(value, str):
            raise _Invalid(name, f"{name} is invalid")
        problem = call_reason_problem(value, name)
        if problem is not None:
            raise _Invalid(name, problem)

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
