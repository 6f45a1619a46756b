"""UUIDs as the API reads them: only the canonical written form."""

from __future__ import annotations

import re
import uuid

# The one written form of a UUID (8-4-4-4-12 hex digits, any case), as OpenAPI's `format: uuid` has it. uuid.UUID
# alone takes more: "{...}", "urn:uuid:", hyphens anywhere, and whatever int(..., 16) takes ("+", "_", spaces,
# non-ASCII digits), so "+2345678-1234-1234-1234-1234567890ab" named the same batch as "02345678-...".
_UUID_TEXT = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


def parse_uuid(value: str | None) -> uuid.UUID | None:
    """A UUID in any case, or None."""
    if not value or len(value) != 36 or _UUID_TEXT.fullmatch(value) is None:
        return None
    return uuid.UUID(value)
