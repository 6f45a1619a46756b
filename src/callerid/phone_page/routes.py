"""HTTP for the demo phone page: ``GET /phone`` and its two static files.

The page is plain HTML + vanilla JS + CSS shipped inside the package (no build step, nothing fetched from
elsewhere), so ``pip install callerid`` serves it as is. It talks to the server only through the app API
(``/app/v1/devices``, ``/app/v1/stream``, ``/app/v1/caller-id``), exactly as a real app would.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, Response

from callerid.failures import NotFound

router = APIRouter(tags=["Phone demo"], include_in_schema=False)

STATIC_DIR = Path(__file__).parent / "static"
# The only files served, by name: a request can never reach anything else in the package.
ASSETS = {
    "phone.js": "text/javascript; charset=utf-8",
    "phone.css": "text/css; charset=utf-8",
}

# Scripts and styles only from this server; logos may live on another host (public_base_url, a CDN), so
# images may come from any http(s) origin. 'self' in connect-src covers the same-origin ws:/wss: stream.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' http: https: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time (ETag/Last-Modified make that cheap) so an upgraded server's page is never stale.
    "Cache-Control": "no-cache",
}


@router.get("/phone", response_class=FileResponse)
async def phone_page() -> Response:
    return FileResponse(STATIC_DIR / "phone.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/phone/assets/{name}", response_class=FileResponse)
async def phone_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound()
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)
