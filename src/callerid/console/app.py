"""Plugging the console into the application: its routes, static files and the pages its errors answer with."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from callerid.accounts.permissions import Forbidden
from callerid.console import web
from callerid.console.routes import router as console_router
from callerid.failures import NotFound

# Files are addressed by content hash (``web.static_url``), so they can be cached for good.
STATIC_CACHE = "public, max-age=31536000, immutable"


async def static_file(request: Request, name: str) -> Response:
    gzipped = web.accepts_gzip(request)
    body = web.static_body(name, gzipped=gzipped)
    if body is None:
        raise NotFound()
    headers = {"Cache-Control": STATIC_CACHE, "X-Content-Type-Options": "nosniff", "Vary": "Accept-Encoding"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=web.STATIC_FILES[name], headers=headers)


async def console_not_found(request: Request, path: str) -> Response:
    """Any other /console path: the console's own 404 page rather than the API's JSON."""
    error = web.not_found()
    return web.render(request, "error.html", {"title": error.title, "message": error.message}, status_code=404)


def install_console(app: FastAPI) -> None:
    app.include_router(console_router)
    app.add_api_route("/console/static/{name}", static_file, methods=["GET"], include_in_schema=False)
    app.add_api_route("/console/{path:path}", console_not_found, methods=["GET"], include_in_schema=False)

    @app.exception_handler(web.PageError)
    async def _page_error(request: Request, exc: web.PageError) -> Response:
        context = {"title": exc.title, "message": exc.message}
        return web.render(request, "error.html", context, status_code=exc.status_code)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        error = web.forbidden()
        return web.render(request, "error.html", {"title": error.title, "message": error.message}, status_code=403)

    @app.exception_handler(web.SignInFirst)
    async def _sign_in_first(request: Request, exc: web.SignInFirst) -> Response:
        return web.sign_in_redirect(request, exc.next_path)

    @app.exception_handler(web.BadCsrf)
    async def _bad_csrf(request: Request, exc: web.BadCsrf) -> Response:
        context = {
            "title": "This form has expired",
            "message": "The page was open too long or came from somewhere else. Go back, reload it and try again.",
        }
        return web.render(request, "error.html", context, status_code=403)

    @app.exception_handler(web.TooLarge)
    async def _too_large(request: Request, exc: web.TooLarge) -> Response:
        limit = request.app.state.runtime.settings.console_upload_max_bytes
        context = {
            "title": "Too large",
            "message": f"A form may send at most {limit:,} bytes: a logo must be under 2 MB, and a file of numbers "
            "larger than this must be split (the API takes at most the same number of numbers per request).",
        }
        return web.render(request, "error.html", context, status_code=413)
