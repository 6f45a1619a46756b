# ruff: noqa: E402 - the imports must follow the sys.path fix below
"""Micro-benchmark: the display-text rule (``callerid.display_text``) on the real-time record path.

Prints, best of ``--repeat`` runs:

1. ``is_displayable`` on typical 15-40 character label names and call reasons (ASCII, Hindi, Arabic, emoji with
   ZWJ), in ns per call;
2. R2's whole rule check (``check_record`` on a v2 record, label known, no I/O) with the display rule and with it
   stubbed out (``is_displayable`` always True), interleaved so that machine load hits both alike, in µs per
   record. The difference is what the rule costs a real-time request (two fields).

Run: ``.venv/bin/python bench/display_text.py``.
"""

from __future__ import annotations

import os.path
import sys

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _BENCH_DIR] + [_BENCH_DIR]

import argparse
import timeit
import uuid
from collections.abc import Callable
from unittest import mock

from callerid import call_reason, display_text
from callerid.labels.service import DynamicLabel
from callerid.personalisation import service
from callerid.personalisation.schemas import V2

NOW = 1_780_000_000_000
LABEL = DynamicLabel(uuid.UUID("c6d86658-008d-4c08-98fb-2bf2649d59a5"), "FlowerEra", "k.png")
TEXTS = {
    "ASCII, 15": "Flower Delivery",
    "ASCII, 39": "Calling you for KYC Verification today",
    "Hindi, 27": "आपका फूल ऑर्डर रास्ते में है",
    "Arabic, 20": "طلب الزهور في الطريق",
    "emoji ZWJ, 22": "Family 👨‍👩‍👧 pack 🌸 ok",
}
RECORDS = {
    "ASCII": ("Centro Bank KYC Dept", "Calling you for KYC Verification"),
    "Hindi": ("नमस्ते फूल", "आपका फूल ऑर्डर रास्ते में है"),
}


def best(work: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(work, number=number, repeat=repeat)) / number


def record(name: str, reason: str) -> dict[str, object]:
    return {
        "caller_number": "911234567890",
        "receiver_number": "919876543210",
        "label_id": str(LABEL.id),
        "dynamic_label_name": name,
        "dynamic_call_reason": reason,
        "starts_at": NOW - 1000,
        "ends_at": NOW + 3_600_000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=100_000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=9, help="runs; the best is shown")
    args = parser.parse_args()

    print("is_displayable (ns per call)")
    for case, text in TEXTS.items():
        assert display_text.is_displayable(text), case
        print(
            f"  {case:14s} {best(lambda t=text: display_text.is_displayable(t), args.number, args.repeat) * 1e9:8.1f}"
        )

    print("R2 check_record (µs per record): with the rule / without / difference")
    labels = {LABEL.id: LABEL}
    number = max(1, args.number // 10)
    for case, (name, reason) in RECORDS.items():
        body = record(name, reason)
        assert service.check_record(body, V2, labels, NOW).valid

        def check(body: dict[str, object] = body) -> object:
            return service.check_record(body, V2, labels, NOW)

        with_rule, without = [], []
        for _ in range(args.repeat):
            with_rule.append(best(check, number, 1))
            with (
                mock.patch.object(service, "is_displayable", lambda _: True),
                mock.patch.object(call_reason, "is_displayable", lambda _: True),
            ):
                without.append(best(check, number, 1))
        a, b = min(with_rule) * 1e6, min(without) * 1e6
        print(f"  {case:14s} {a:8.2f} / {b:8.2f} / {a - b:+.2f}")


if __name__ == "__main__":
    main()
