"""The one phone-number normaliser (SPEC §2.5)."""

from __future__ import annotations

import re

_E164_DIGITS = re.compile(r"[1-9][0-9]{9,14}")


def normalise_phone(value: object) -> str | None:
    """``"+91 98..."``-style input to stored form (digits only, 10-15, no leading 0), or None if invalid.

    Only strings are phone numbers: JSON numbers are invalid (SPEC §2.5).
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("+"):
        text = text[1:]
    return text if _E164_DIGITS.fullmatch(text) else None
