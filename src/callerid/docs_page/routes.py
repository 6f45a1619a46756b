"""HTTP for the API reference: ``GET /docs`` (Swagger UI), ``GET /redoc`` (ReDoc) and their files.

FastAPI's own docs pages load Swagger UI, ReDoc, fonts and a favicon from public CDNs: offline or behind a proxy
they are blank, and every visitor is announced to third parties. These pages use pinned copies vendored in the
package (``static/vendor/<name>-<version>/``, each with its licence, byte for byte as published on npm) and are
started by small scripts of ours, never inline ones. Nothing is fetched from another host: the CSP allows only
this server. Neither page is in the OpenAPI document.
"""

from __future__ import annotations

import gzip
import secrets
from pathlib import Path
from string import Template

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from callerid.failures import NotFound
from callerid.static_files import IMMUTABLE_CACHE, fingerprint

router = APIRouter(tags=["API reference"], include_in_schema=False)

# npm: swagger-ui-dist@5.35.0 (Apache-2.0, LICENSE + NOTICE) and redoc@2.5.4 (MIT), unchanged.
SWAGGER_UI_VERSION = "5.35.0"
REDOC_VERSION = "2.5.4"

STATIC_DIR = Path(__file__).parent / "static"
SWAGGER_UI_DIR = STATIC_DIR / "vendor" / f"swagger-ui-{SWAGGER_UI_VERSION}"
REDOC_DIR = STATIC_DIR / "vendor" / f"redoc-{REDOC_VERSION}"
ASSETS_PATH = "/docs/assets"
JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"

# The only files served, by name: a request can never reach anything else in the package.
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui-bundle.js": (SWAGGER_UI_DIR / "swagger-ui-bundle.js", JS),
    "swagger-ui.css": (SWAGGER_UI_DIR / "swagger-ui.css", CSS),
    "redoc.standalone.js": (REDOC_DIR / "redoc.standalone.js", JS),
    "swagger-init.js": (STATIC_DIR / "swagger-init.js", JS),
    "redoc-init.js": (STATIC_DIR / "redoc-init.js", JS),
    "docs.css": (STATIC_DIR / "docs.css", CSS),
    "favicon.svg": (STATIC_DIR / "favicon.svg", "image/svg+xml"),
}
# Content hashes in the URLs (as the console's files), so the files can be cached for good.
ASSET_VERSIONS = {name: fingerprint(path) for name, (path, _) in ASSETS.items()}


def asset_url(name: str) -> str:
    return f"{ASSETS_PATH}/{name}?v={ASSET_VERSIONS[name]}"


# Both pages: everything from this server only, nothing inline except what is named below.
#   script-src 'self'   the vendored bundle and our init script; no inline script, no eval.
#   style-src 'self'    the vendored and our stylesheets. Style *attributes* that the UIs set from script go through
#                       the CSSOM (element.style), which the CSP does not govern, so no 'unsafe-inline' is needed.
#   img-src 'self' data:  our favicon; data: for the images inlined in swagger-ui.css (and the empty image that
#                       stands in for Redocly's logo, see redoc-init.js).
#   connect-src 'self'  /openapi.json, and Swagger UI's "Try it out" requests to this API.
#   no font-src         neither UI brings a font file (both are set in system fonts), so default-src 'none' applies.
# base-uri/form-action/frame-ancestors 'none': no <base>, no form posts, never framed (X-Frame-Options too).
_COMMON_CSP = (
    "default-src 'none'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SWAGGER_CSP = f"{_COMMON_CSP}; style-src 'self'"
# ReDoc writes its styles into <style> elements at run time; they are let in one by one rather than by
# 'unsafe-inline' (which would let in any injected style too):
#   'nonce-...'         a nonce fresh for each response, which ReDoc's ``nonce`` option puts on the <style> elements
#                       of styled-components (all of ReDoc's own styles).
#   'sha256-QMIg...'    the one stylesheet the bundle inserts as it loads, before any option can reach it:
#                       perfect-scrollbar's (the sidebar's scrollbar), with its source-map comment, byte for byte.
#   'sha256-47DE...'    the same <style> element while still empty (the hash of ""): it is checked on insertion too.
#                       Both hashes are of redoc 2.5.4; after an upgrade the browser test fails with Chrome's
#                       message naming the hash it wants.
# worker-src blob:      ReDoc's search index runs in a Web Worker that the bundle starts from a blob: URL it makes
#                       itself (only a script this CSP already allowed can make one); nothing else may run as a worker.
REDOC_STYLE_HASHES = (
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc=' 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
)
REDOC_CSP = _COMMON_CSP + f"; style-src 'self' 'nonce-{{nonce}}' {REDOC_STYLE_HASHES}; worker-src blob:"
# The files themselves are never documents that load anything (an SVG opened on its own runs nothing).
ASSET_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Revalidate every time, so an upgraded server's page (and so its new asset URLs) is never stale.
PAGE_HEADERS = {**_HEADERS, "Cache-Control": "no-cache"}
ASSET_HEADERS = {**_HEADERS, "Content-Security-Policy": ASSET_CSP, "Cache-Control": IMMUTABLE_CACHE}


def _page(file_name: str) -> Template:
    # Asset URLs filled in once; only the ReDoc page's $nonce is left for each response.
    text = Template((STATIC_DIR / file_name).read_text()).safe_substitute(
        favicon=asset_url("favicon.svg"),
        docs_css=asset_url("docs.css"),
        swagger_css=asset_url("swagger-ui.css"),
        swagger_js=asset_url("swagger-ui-bundle.js"),
        swagger_init=asset_url("swagger-init.js"),
        redoc_js=asset_url("redoc.standalone.js"),
        redoc_init=asset_url("redoc-init.js"),
    )
    return Template(text)


SWAGGER_PAGE = _page("swagger.html").substitute()
REDOC_PAGE = _page("redoc.html")

# Bodies (as they are and gzipped) read on first use, then kept: ~3 MB, ~0.9 MB gzipped.
_BODIES: dict[tuple[str, bool], bytes] = {}


def _load(name: str, gzipped: bool) -> bytes:
    body = ASSETS[name][0].read_bytes()
    return gzip.compress(body, compresslevel=9) if gzipped else body


async def _body(name: str, gzipped: bool) -> bytes:
    key = (name, gzipped)
    if key not in _BODIES:
        # Compressing the bundles takes a moment, once: off the event loop.
        _BODIES[key] = await run_in_threadpool(_load, name, gzipped)
    return _BODIES[key]


@router.get("/docs", response_class=HTMLResponse)
async def swagger_page() -> Response:
    return HTMLResponse(SWAGGER_PAGE, headers={**PAGE_HEADERS, "Content-Security-Policy": SWAGGER_CSP})


@router.get("/redoc", response_class=HTMLResponse)
async def redoc_page() -> Response:
    nonce = secrets.token_urlsafe(18)
    headers = {**PAGE_HEADERS, "Content-Security-Policy": REDOC_CSP.format(nonce=nonce)}
    return HTMLResponse(REDOC_PAGE.substitute(nonce=nonce), headers=headers)


@router.get(ASSETS_PATH + "/{name}")
async def docs_asset(request: Request, name: str) -> Response:
    if name not in ASSETS:
        raise NotFound()
    gzipped = "gzip" in request.headers.get("accept-encoding", "")
    headers = {**ASSET_HEADERS, "Vary": "Accept-Encoding"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return Response(await _body(name, gzipped), media_type=ASSETS[name][1], headers=headers)
