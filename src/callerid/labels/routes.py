"""HTTP for labels: L (SPEC §5.1) and the logo files that ``logo_url`` points at."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import FileResponse

from callerid.accounts.dependencies import require_access
from callerid.accounts.service import TokenPrincipal
from callerid.errors import not_found
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


@router.get(
    "/clients/{clientAccountId}/labels",
    summary="List dynamic labels",
    description="All dynamic labels of the account, newest first. `page` (default 1), `limit` (default and max 1000).",
    responses={
        200: {"description": "labels", "content": {"application/json": {"example": [_LABEL_EXAMPLE]}}},
        400: {"description": "invalid-input (page or limit)"},
        401: {"description": "authorization-error"},
        403: {"description": "forbidden-error"},
        429: {"description": "rate-limit-exceeded"},
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
    responses={200: {"content": {"image/png": {}}}, 404: {"description": "not-found"}},
)
async def get_logo(logo_key: str, request: Request) -> FileResponse:
    path = service.logo_store(runtime_of(request).settings).path_of(logo_key)
    if path is None:
        raise not_found()
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": LOGO_CACHE_CONTROL})
