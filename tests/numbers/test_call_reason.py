"""The shared call-reason rules (SPEC §7.1 rules 5-8) used by feature sets and call records."""

from __future__ import annotations

import pytest

from callerid.call_reason import call_reason_problem

EDGES = "f cannot start or end with a space, '.', ',' or '-'"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("Flower Delivery", None),
        ("a" * 10, None),
        ("a" * 100, None),
        ("Order no. 5, out-for-delivery", None),
        ("é" * 10, None),  # code points, not bytes
        ("a" * 9, "f must be between 10 and 100 characters"),
        ("a" * 101, "f must be between 10 and 100 characters"),
        ("", "f must be between 10 and 100 characters"),
        *[(f"Delivery {c} today", "f contains unsupported special characters") for c in "!@#$%^&*()_+/"],
        (" Delivery today", EDGES),
        ("Delivery today ", EDGES),
        ("\tDelivery today", "f contains characters that cannot be displayed"),
        ("Delivery\u202etoday", "f contains characters that cannot be displayed"),
        ("Delivery\x00/today", "f contains characters that cannot be displayed"),  # after length, before rule 6
        ("\u00a0Delivery today", EDGES),
        ("डिलीवरी आज है 🌸", None),
        (".Delivery today", EDGES),
        ("Delivery today,", EDGES),
        ("-Delivery today", EDGES),
        ("Delivery today-", EDGES),
    ],
)
def test_rules(value: str, problem: str | None) -> None:
    assert call_reason_problem(value, "f") == problem
