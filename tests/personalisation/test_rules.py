"""SPEC §7.1-§7.2 rule by rule, with boundary values, on both wire versions (pure: no database)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from callerid.labels.service import DynamicLabel
from callerid.personalisation.schemas import V1, V2, wire_name
from callerid.personalisation.service import CheckedRecord, check_record, label_ids_of

NOW = 1_780_000_000_000  # epoch ms
HOUR = 3_600_000
DAY = 86_400_000
LABEL = DynamicLabel(uuid.UUID("c6d86658-008d-4c08-98fb-2bf2649d59a5"), "FlowerEra", "k.png")
LABELS = {LABEL.id: LABEL}
UNKNOWN_LABEL = "255297eb-7f13-44f9-967a-f287ff0f5025"  # foreign, static or absent: not in LABELS
MISSING = object()


def base() -> dict[str, Any]:
    """A valid record by internal (v1) field names."""
    return {
        "caller": "911234567890",
        "receiver": "919876543210",
        "label_id": str(LABEL.id),
        "label_name": "Flower rasm",
        "call_reason": "Flower Delivery",
        "starts_at": NOW - 1000,
        "ends_at": NOW + HOUR,
    }


def wire(record: dict[str, Any], version: str) -> dict[str, Any]:
    return {wire_name(k, version): v for k, v in record.items() if v is not MISSING}


def check(version: str, **changes: Any) -> CheckedRecord:
    record = {**base(), **changes}
    return check_record(wire(record, version), version, LABELS, NOW)


def expected(template: str, version: str) -> str:
    return template.format(**{f: wire_name(f, version) for f in base()})


FORBIDDEN = list("!@#$%^&*()_+/")
CANNOT_DISPLAY = "contains characters that cannot be displayed"
EDGE_BAD = [".", ",", "-", " ", "\u00a0"]
# One of each class the display-text rule refuses (callerid.display_text); it runs right after the length rule.
UNDISPLAYABLE = {
    "NUL": "\x00",
    "tab": "\t",
    "newline": "\n",
    "RLO": "\u202e",
    "LRI": "\u2066",
    "ZWSP": "\u200b",
    "BOM": "\ufeff",
    "private use": "\ue000",
}

INVALID_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, changes, failing field, message template)
    ("caller missing", {"caller": MISSING}, "caller", "{caller} is required"),
    ("caller null", {"caller": None}, "caller", "{caller} is required"),
    ("caller empty", {"caller": ""}, "caller", "{caller} is required"),
    ("caller JSON number", {"caller": 911234567890}, "caller", "{caller} is invalid"),
    ("caller 9 digits", {"caller": "912345678"}, "caller", "{caller} is invalid"),
    ("caller 16 digits", {"caller": "9123456789012345"}, "caller", "{caller} is invalid"),
    ("caller leading 0", {"caller": "0912345678"}, "caller", "{caller} is invalid"),
    ("caller two plus", {"caller": "++911234567890"}, "caller", "{caller} is invalid"),
    ("caller dash", {"caller": "91-1234567890"}, "caller", "{caller} is invalid"),
    ("caller inner space", {"caller": "91 1234567890"}, "caller", "{caller} is invalid"),
    ("caller list", {"caller": ["911234567890"]}, "caller", "{caller} is invalid"),
    ("receiver missing", {"receiver": MISSING}, "receiver", "{receiver} is required"),
    ("receiver letters", {"receiver": "91abc4567890"}, "receiver", "{receiver} is invalid"),
    ("receiver JSON number", {"receiver": 919876543210}, "receiver", "{receiver} is invalid"),
    ("receiver leading 0", {"receiver": "0919876543210"}, "receiver", "{receiver} is invalid"),
    ("label missing", {"label_id": MISSING}, "label_id", "label_id is required"),
    ("label empty", {"label_id": ""}, "label_id", "label_id is required"),
    ("label not uuid", {"label_id": "not-a-uuid"}, "label_id", "label_id is invalid"),
    ("label number", {"label_id": 12}, "label_id", "label_id is invalid"),
    ("label uuid without dashes", {"label_id": LABEL.id.hex}, "label_id", "label_id is invalid"),
    ("label unknown", {"label_id": UNKNOWN_LABEL}, "label_id", "label_id is not a dynamic label of this client"),
    ("name 2 chars", {"label_name": "ab"}, "label_name", "{label_name} must be between 3 and 40 characters"),
    ("name 41 chars", {"label_name": "x" * 41}, "label_name", "{label_name} must be between 3 and 40 characters"),
    ("name 2 code points", {"label_name": "😀😀"}, "label_name", "{label_name} must be between 3 and 40 characters"),
    ("name 41 code points", {"label_name": "é" * 41}, "label_name", "{label_name} must be between 3 and 40 characters"),
    ("name number", {"label_name": 12345}, "label_name", "{label_name} is invalid"),
    ("reason 9", {"call_reason": "x" * 9}, "call_reason", "{call_reason} must be between 10 and 100 characters"),
    ("reason 101", {"call_reason": "x" * 101}, "call_reason", "{call_reason} must be between 10 and 100 characters"),
    ("reason empty", {"call_reason": ""}, "call_reason", "{call_reason} must be between 10 and 100 characters"),
    ("reason number", {"call_reason": 1234567890}, "call_reason", "{call_reason} is invalid"),
    *[
        (
            f"reason has {char!r}",
            {"call_reason": f"Flower{char}Delivery"},
            "call_reason",
            "{call_reason} contains unsupported special characters",
        )
        for char in FORBIDDEN
    ],
    *[
        (
            f"reason starts with {char!r}",
            {"call_reason": f"{char}Flower Delivery"},
            "call_reason",
            "{call_reason} cannot start or end with a space, '.', ',' or '-'",
        )
        for char in EDGE_BAD
    ],
    *[
        (
            f"reason ends with {char!r}",
            {"call_reason": f"Flower Delivery{char}"},
            "call_reason",
            "{call_reason} cannot start or end with a space, '.', ',' or '-'",
        )
        for char in EDGE_BAD
    ],
    *[
        (f"name has {case}", {"label_name": f"Flo{char}wer"}, "label_name", "{label_name} " + CANNOT_DISPLAY)
        for case, char in UNDISPLAYABLE.items()
    ],
    *[
        (
            f"reason has {case}",
            {"call_reason": f"Flower{char}Delivery"},
            "call_reason",
            "{call_reason} " + CANNOT_DISPLAY,
        )
        for case, char in UNDISPLAYABLE.items()
    ],
    *[
        (
            f"reason starts with {case}",
            {"call_reason": f"{char}Flower Delivery"},
            "call_reason",
            "{call_reason} " + CANNOT_DISPLAY,
        )
        for case, char in UNDISPLAYABLE.items()
    ],
    (
        "name 2 chars with a tab: length first",
        {"label_name": "a\t"},
        "label_name",
        "{label_name} must be between 3 and 40 characters",
    ),
    (
        "reason with a tab and a bad character: display first",
        {"call_reason": "Flower\t/Delivery"},
        "call_reason",
        "{call_reason} " + CANNOT_DISPLAY,
    ),
    (
        "name and reason undisplayable: name first",
        {"label_name": "Flo\u202ewer", "call_reason": "Flower\x00Delivery"},
        "label_name",
        "{label_name} " + CANNOT_DISPLAY,
    ),
    (
        "reason 9 chars with bad edge: length first",
        {"call_reason": ".abcdefgh"},
        "call_reason",
        "{call_reason} must be between 10 and 100 characters",
    ),
    (
        "reason bad char and bad edge: characters first",
        {"call_reason": ".Flower/Delivery"},
        "call_reason",
        "{call_reason} contains unsupported special characters",
    ),
    ("starts missing", {"starts_at": MISSING}, "starts_at", "starts_at is required"),
    ("starts null", {"starts_at": None}, "starts_at", "starts_at is required"),
    ("starts string", {"starts_at": str(NOW)}, "starts_at", "starts_at is invalid"),
    ("starts float", {"starts_at": float(NOW)}, "starts_at", "starts_at is invalid"),
    ("starts bool", {"starts_at": True}, "starts_at", "starts_at is invalid"),
    ("starts negative", {"starts_at": -1}, "starts_at", "starts_at is invalid"),
    ("starts beyond int64", {"starts_at": 2**63}, "starts_at", "starts_at is invalid"),
    ("ends missing", {"ends_at": MISSING}, "ends_at", "ends_at is required"),
    ("ends string", {"ends_at": str(NOW + HOUR)}, "ends_at", "ends_at is invalid"),
    ("ends bool", {"ends_at": False}, "ends_at", "ends_at is invalid"),
    ("ends float", {"ends_at": NOW + HOUR + 0.5}, "ends_at", "ends_at is invalid"),
    ("ends beyond int64", {"ends_at": 2**63}, "ends_at", "ends_at is invalid"),
    (
        "ends 1 ms in the past",
        {"starts_at": NOW - HOUR, "ends_at": NOW - 1},
        "ends_at",
        "ends_at cannot be older than current time",
    ),
    ("ends negative", {"starts_at": 0, "ends_at": -5}, "ends_at", "ends_at cannot be older than current time"),
    (
        "ends equals starts",
        {"starts_at": NOW + 5000, "ends_at": NOW + 5000},
        "ends_at",
        "ends_at cannot be before starts_at",
    ),
    (
        "ends before starts",
        {"starts_at": NOW + 5000, "ends_at": NOW + 4999},
        "ends_at",
        "ends_at cannot be before starts_at",
    ),
    (
        "window 24 h + 1 ms",
        {"starts_at": NOW - 1000, "ends_at": NOW - 1000 + DAY + 1},
        "ends_at",
        "ends_at cannot be more than 24 hours after starts_at",
    ),
    (
        "window from epoch",
        {"starts_at": 0, "ends_at": NOW},
        "ends_at",
        "ends_at cannot be more than 24 hours after starts_at",
    ),
    # several broken rules: the first in §7.1 order answers
    ("caller and ends", {"caller": "1", "ends_at": NOW - 1}, "caller", "{caller} is invalid"),
    ("receiver and label", {"receiver": "x", "label_id": "x"}, "receiver", "{receiver} is invalid"),
    (
        "label and name",
        {"label_id": UNKNOWN_LABEL, "label_name": "a"},
        "label_id",
        "label_id is not a dynamic label of this client",
    ),
    (
        "name and reason",
        {"label_name": "a", "call_reason": "a"},
        "label_name",
        "{label_name} must be between 3 and 40 characters",
    ),
    (
        "reason and starts",
        {"call_reason": "a", "starts_at": MISSING},
        "call_reason",
        "{call_reason} must be between 10 and 100 characters",
    ),
    ("starts and ends missing", {"starts_at": MISSING, "ends_at": MISSING}, "starts_at", "starts_at is required"),
    (
        "past and before starts",
        {"starts_at": NOW, "ends_at": NOW - 10},
        "ends_at",
        "ends_at cannot be older than current time",
    ),
]


@pytest.mark.parametrize("version", [V1, V2])
@pytest.mark.parametrize(("case", "changes", "field", "template"), INVALID_CASES, ids=[c[0] for c in INVALID_CASES])
def test_invalid_record_reports_first_rule(
    version: str, case: str, changes: dict[str, Any], field: str, template: str
) -> None:
    checked = check(version, **changes)
    assert not checked.valid
    assert checked.field == field
    assert checked.v2_field == wire_name(field, V2)
    assert checked.message == expected(template, version)


VALID_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    # (case, changes, expected normalised values)
    (
        "plus stripped",
        {"caller": "+911234567890", "receiver": "+919876543210"},
        {"caller": "911234567890", "receiver": "919876543210"},
    ),
    ("surrounding whitespace trimmed", {"caller": " 911234567890 "}, {"caller": "911234567890"}),
    ("10 digits", {"caller": "9112345678"}, {"caller": "9112345678"}),
    ("15 digits", {"receiver": "911234567890123"}, {"receiver": "911234567890123"}),
    ("label id upper case", {"label_id": str(LABEL.id).upper()}, {"label_id": LABEL.id}),
    ("name absent -> label name", {"label_name": MISSING}, {"label_name": "FlowerEra"}),
    ("name null -> label name", {"label_name": None}, {"label_name": "FlowerEra"}),
    ("name empty -> label name", {"label_name": ""}, {"label_name": "FlowerEra"}),
    ("name 3", {"label_name": "abc"}, {"label_name": "abc"}),
    ("name 40", {"label_name": "x" * 40}, {"label_name": "x" * 40}),
    ("name 3 code points", {"label_name": "😀é😀"}, {"label_name": "😀é😀"}),
    ("name not trimmed", {"label_name": " ab "}, {"label_name": " ab "}),
    ("reason absent", {"call_reason": MISSING}, {"call_reason": None}),
    ("reason null", {"call_reason": None}, {"call_reason": None}),
    ("reason 10", {"call_reason": "x" * 10}, {"call_reason": "x" * 10}),
    ("reason 100", {"call_reason": "x" * 100}, {"call_reason": "x" * 100}),
    (
        "reason inner . , - and space",
        {"call_reason": "Hi. Flower, pick-up now"},
        {"call_reason": "Hi. Flower, pick-up now"},
    ),
    (
        "reason other punctuation",
        {"call_reason": "KYC: 'ok' [1] ~; ?"},
        {"call_reason": "KYC: 'ok' [1] ~; ?"},
    ),
    *[
        (f"{field} in {script}", {field: text}, {field: text})
        for field, (script, text) in [
            ("label_name", ("Hindi", "नमस्ते फूल")),
            ("label_name", ("Arabic", "مرحبا")),
            ("label_name", ("Chinese", "鲜花速递")),
            ("label_name", ("emoji", "🌸 Flowers")),
            ("label_name", ("ZWJ emoji", "👨‍👩‍👧 Family")),
            ("label_name", ("VS16 emoji", "❤️ Flowers")),
            ("call_reason", ("Hindi", "आपका फूल ऑर्डर रास्ते में है")),
            ("call_reason", ("Arabic", "طلب الزهور في الطريق")),
            ("call_reason", ("Chinese", "您的鲜花订单正在配送中")),
            ("call_reason", ("emoji", "Your 🌸 are on the way")),
            ("call_reason", ("ZWJ emoji", "Family pack 👨‍👩‍👧 is on the way")),
            ("call_reason", ("VS16 emoji", "Thanks ❤️ for ordering")),
        ]
    ],
    ("ends now", {"starts_at": NOW - 1000, "ends_at": NOW}, {"ends_at": NOW}),
    ("window exactly 24 h", {"starts_at": NOW - 1000, "ends_at": NOW - 1000 + DAY}, {"ends_at": NOW - 1000 + DAY}),
    ("starts in the future", {"starts_at": NOW + HOUR, "ends_at": NOW + 2 * HOUR}, {"starts_at": NOW + HOUR}),
    ("window 1 ms", {"starts_at": NOW, "ends_at": NOW + 1}, {"starts_at": NOW}),
]


@pytest.mark.parametrize("version", [V1, V2])
@pytest.mark.parametrize(("case", "changes", "values"), VALID_CASES, ids=[c[0] for c in VALID_CASES])
def test_valid_record_is_normalised(version: str, case: str, changes: dict[str, Any], values: dict[str, Any]) -> None:
    checked = check(version, **changes)
    assert checked.valid, checked.message
    assert checked.message is None and checked.sent is None
    got = {
        "caller": checked.caller,
        "receiver": checked.receiver,
        "label_id": checked.label.id if checked.label else None,
        "label_name": checked.label_name,
        "call_reason": checked.call_reason,
        "starts_at": checked.starts_at,
        "ends_at": checked.ends_at,
    }
    sent = {k: v for k, v in changes.items() if v is not MISSING}
    want = {**base(), **sent, "label_id": LABEL.id, **values}
    assert got == want


def test_v2_accepts_v1_names_when_v2_names_are_absent() -> None:
    record = base()  # v1 names only
    checked = check_record(record, V2, LABELS, NOW)
    assert checked.valid
    assert (checked.caller, checked.label_name, checked.call_reason) == (
        "911234567890",
        "Flower rasm",
        "Flower Delivery",
    )
    # the v2 name wins when both are present; a bad alias is reported under the v2 name
    both = {**record, "caller_number": "919999999999", "caller": "bad"}
    assert check_record(both, V2, LABELS, NOW).caller == "919999999999"
    bad_alias = {**record, "caller": "bad"}
    checked = check_record(bad_alias, V2, LABELS, NOW)
    assert (checked.v2_field, checked.message) == ("caller_number", "caller_number is invalid")
    null_v2 = {**record, "dynamic_call_reason": None, "call_reason": "x"}
    assert check_record(null_v2, V2, LABELS, NOW).message == "dynamic_call_reason must be between 10 and 100 characters"


def test_v1_does_not_accept_v2_names() -> None:
    checked = check_record(wire(base(), V2), V1, LABELS, NOW)
    assert checked.message == "caller is required"


def test_invalid_record_echo_keeps_what_was_sent_and_normalises_valid_parts() -> None:
    checked = check(V2, caller="+911234567890", label_name=MISSING, label_id=str(LABEL.id).upper(), ends_at="soon")
    assert checked.sent == {
        "caller": "911234567890",
        "receiver": "919876543210",
        "label_id": str(LABEL.id),
        "label_name": "FlowerEra",
        "call_reason": "Flower Delivery",
        "starts_at": NOW - 1000,
        "ends_at": "soon",
    }
    checked = check(V1, caller=911234567890, label_id="nope", label_name="", call_reason=MISSING)
    assert checked.sent is not None
    assert (
        checked.sent["caller"],
        checked.sent["label_id"],
        checked.sent["label_name"],
        checked.sent["call_reason"],
    ) == (
        911234567890,
        "nope",
        "",
        None,
    )


def test_label_ids_of_collects_only_well_formed_ids() -> None:
    records = [{"label_id": str(LABEL.id).upper()}, {"label_id": "x"}, {"label_id": 5}, {}, {"label_id": UNKNOWN_LABEL}]
    assert label_ids_of(records) == {LABEL.id, uuid.UUID(UNKNOWN_LABEL)}
