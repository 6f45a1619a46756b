"""HTTP for labels: L (SPEC §5.1) and the logo files that ``logo_url`` points at."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from callerid import openapi
from callerid.accounts.dependencies import require_access
from callerid.accounts.service import TokenPrincipal
from callerid.failures import NotFound
from callerid.http import parse_page
from callerid.labels import logos, service
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

router = APIRouter(tags=["Labels"])

LABELS_DEFAULT_LIMIT = 1000  # SPEC §2.7
# A logo's URL holds the SHA-256 of its bytes (a changed logo gets a new URL), so a logo may be cached for good.
LOGO_CACHE_CONTROL = "public, max-age=31536000, immutable"
# The redirect from a pre-0015 logo URL: as stable, but a day is plenty for a path only old links use.
LEGACY_CACHE_CONTROL = "public, max-age=86400"

_LABEL_EXAMPLE = {
    "id": "255297eb-7f13-44f9-967a-f287ff0f5025",
    "name": "FlowerEra",
    "logo_url": "https://media.example.com/logos/2f1fd1a1a8e0f8fa2d6d9b0c2c7d2b6f6d3c9e4e0a1b2c3d4e5f60718293a4b5.png",
    "category": 10,
    "sub_category": 142,
    "created_by_email": "admin@example.com",
    "created_at": "2025-07-07T06:53:55.402122Z",
    "label_type": "dynamic",
}

_NULLABLE_INT = {"type": ["integer", "null"]}
_LABEL_SCHEMA = {
    "type": "object",
    "required": list(_LABEL_EXAMPLE),
    "properties": {
        "id": openapi.UUID,
        "name": {"type": "string"},
        "logo_url": {
            "type": "string",
            "description": "the logo (PNG, 200x200); public, no token needed; empty for a label whose logo was lost",
        },
        "category": {**_NULLABLE_INT, "description": "category id of the operator's catalogue"},
        "sub_category": {**_NULLABLE_INT, "description": "sub-category id of the operator's catalogue"},
        "created_by_email": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "label_type": {"const": "dynamic"},
    },
    "additionalProperties": False,
}


@router.get(
    "/clients/{clientAccountId}/labels",
    summary="List dynamic labels",
    description="All dynamic labels of the account, newest first. `page` (default 1), `limit` (default and max 1000).",
    openapi_extra={"parameters": openapi.page_parameters(LABELS_DEFAULT_LIMIT)},
    responses={
        200: openapi.json_response(
            "the labels (`[]` if none)", {"type": "array", "items": _LABEL_SCHEMA}, [_LABEL_EXAMPLE]
        ),
        400: {"description": "invalid-input: `page is invalid` / `limit is invalid`"},
    },
)
async def list_labels(
    clientAccountId: str,
    request: Request,
    principal: TokenPrincipal = Depends(require_access("call_personalisation", "read")),
) -> JsonResponse:
    page = parse_page(request, LABELS_DEFAULT_LIMIT)
    runtime = runtime_of(request)
    async with runtime.db.session() as session:
        labels = await service.list_dynamic_labels(session, principal.account_id, page)
    return JsonResponse([service.label_json(runtime.settings, label) for label in labels])


def _etag(key: str) -> str:
    return f'"{key}"'


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 §13.1.2: ``*`` or a list of entity tags, compared weakly (``W/"x"`` matches ``"x"``)."""
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


@router.get(
    "/logos/{logo_file}",
    summary="A label's logo",
    description="The PNG a label's `logo_url` points at. Public: phones fetch it without a token. The file name is "
    "the SHA-256 of the image (a changed logo gets a new URL), so the answer may be cached for good; it is also "
    "the strong `ETag`, and `If-None-Match` with it is answered 304. Logo URLs of older versions "
    "(`<uuid>-<digits>.png`) are redirected (308) to the logo's URL.",
    response_class=Response,
    responses={
        200: {
            "description": "the logo",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "headers": {
                "ETag": {"description": '`"<sha256>"`', "schema": {"type": "string"}},
                "Cache-Control": {"schema": {"type": "string", "example": LOGO_CACHE_CONTROL}},
            },
        },
        304: {"description": "not modified: `If-None-Match` names this logo"},
        308: {
            "description": "an older logo URL: `Location` is the logo's URL",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        404: {"description": "not-found: no such logo"},
    },
)
async def get_logo(
    logo_file: Annotated[
        str, Path(description="the file name at the end of a label's `logo_url`: `<sha256 of the PNG>.png`")
    ],
    request: Request,
) -> Response:
    runtime = runtime_of(request)
    key = service.logo_key_of_file(logo_file)
    if key is None:
        target = await service.logo_key_for_legacy(runtime.db, logo_file)
        if target is None:
            raise NotFound()
        # The old file name stands for the same image for good (a label's logo never changes).
        return Response(
            status_code=308,
            headers={"Location": service.logo_url(runtime.settings, target), "Cache-Control": LEGACY_CACHE_CONTROL},
        )
    store = logos.logo_store(runtime.settings)
    headers = {"ETag": _etag(key), "Cache-Control": LOGO_CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and _matches(if_none_match, headers["ETag"]):
        if not await store.exists(runtime.db, key):
            raise NotFound()
        return Response(status_code=304, headers=headers)
    logo = await store.get(runtime.db, key)
    if logo is None:
        raise NotFound()
    return Response(logo.data, media_type=logo.media_type, headers=headers)
