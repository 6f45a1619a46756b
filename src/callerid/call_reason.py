"""The call-reason rules shared by call records and feature sets (SPEC §7.1 rules 5-8, messages §7.2), with the
display-text rule (``callerid.display_text``) right after the length rule."""

from __future__ import annotations

import re

from callerid.display_text import cannot_display, is_displayable

UNSUPPORTED_CHARACTERS = frozenset("!@#$%^&*()_+/")
EDGE_CHARACTERS = ".,-"
_UNSUPPORTED = re.compile("[" + re.escape("".join(sorted(UNSUPPORTED_CHARACTERS))) + "]")


def call_reason_problem(value: str, field: str) -> str | None:
    """The §7.2 message for the first rule ``value`` breaks, or None when it is a valid call reason.

    Lengths count code points and the value is not trimmed first (SPEC §7.1).
    """
    if not 10 <= len(value) <= 100:
        return f"{field} must be between 10 and 100 characters"
    if not is_displayable(value):
        return cannot_display(field)
    if _UNSUPPORTED.search(value):
        return f"{field} contains unsupported special characters"
    for edge in (value[0], value[-1]):
        if edge in EDGE_CHARACTERS or edge.isspace():
            return f"{field} cannot start or end with a space, '.', ',' or '-'"
    return None
