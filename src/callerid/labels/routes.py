"""HTTP for labels: L (SPEC §5.1) and the logo files that ``logo_url`` points at."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import FileResponse

from callerid import openapi
from callerid.accounts.dependencies import require_access
from callerid.accounts.service import TokenPrincipal
from callerid.failures import NotFound
from callerid.http import parse_page
from callerid.labels import service
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

router = APIRouter(tags=["Labels"])

LABELS_DEFAULT_LIMIT = 1000  # SPEC §2.7
# Logo keys are never reused (a new upload gets a new key), so a logo may be cached for good.
LOGO_CACHE_CONTROL = "public, max-age=31536000, immutable"

_LABEL_EXAMPLE = {
    "id": "255297eb-7f13-44f9-967a-f287ff0f5025",
    "name": "FlowerEra",
    "logo_url": "https://media.example.com/logos/06930f35-4b9c-4144-b748-9ace309c70d2-1751871235271177747.png",
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
        "logo_url": {"type": "string", "description": "the logo (PNG, 200x200); public, no token needed"},
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


@router.get(
    "/logos/{logo_key}",
    summary="A label's logo",
    description="The PNG a label's `logo_url` points at. Public: phones fetch it without a token.",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, 404: {"description": "not-found: no such logo"}},
)
async def get_logo(
    logo_key: Annotated[str, Path(description="the file name at the end of a label's `logo_url`")],
    request: Request,
) -> FileResponse:
    path = service.logo_store(runtime_of(request).settings).path_of(logo_key)
    if path is None:
        raise NotFound()
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": LOGO_CACHE_CONTROL})
