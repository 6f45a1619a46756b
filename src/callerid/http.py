"""Small HTTP helpers shared by every router: the JSON response class, body parsing, pagination."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from callerid.errors import invalid_input
from callerid.responses import JsonResponse

__all__ = ["JsonResponse", "Page", "parse_json_object", "parse_page", "parse_uuid", "read_json_object"]


async def read_json_object(request: Request) -> dict[str, Any] | None:
    """The request body as a JSON object, or None when it is not one (SPEC §2.3).

    The content type is not checked on purpose: the spec says not to reject a body that parses.
    """
    return parse_json_object(await request.body())


def parse_json_object(raw: bytes) -> dict[str, Any] | None:
    """``raw`` as a JSON object, or None when it is not one."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def parse_uuid(value: str | None) -> uuid.UUID | None:
    """A UUID in any case, or None."""
    if not value or len(value) != 36:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Page:
    number: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.limit

    def total_pages(self, total_items: int) -> int:
        return math.ceil(total_items / self.limit) if total_items else 0


def _positive_int(name: str, raw: str | None, default: int, maximum: int | None) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1 or (maximum is not None and int(raw) > maximum):
        raise invalid_input(f"{name} is invalid")
    return int(raw)


def parse_page(request: Request, default_limit: int, max_limit: int = 1000) -> Page:
    """``page`` and ``limit`` query parameters per SPEC §2.7: integers >= 1, limit <= max, else 400."""
    query = request.query_params
    return Page(
        number=_positive_int("page", query.get("page"), 1, None),
        limit=_positive_int("limit", query.get("limit"), default_limit, max_limit),
    )
