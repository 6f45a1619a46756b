"""What every console page shares: templates, security headers, cookies, CSRF, forms, flash, the signed-in member.

Pages render on the server (Jinja2) and work without JavaScript; htmx (vendored) only swaps parts of them. Every
response carries a strict Content-Security-Policy (no inline script or style, nothing from another host) and
``X-Frame-Options: DENY``. Every state-changing request must carry the CSRF token: the session's one (a hidden
field, or the ``X-CSRF-Token`` header that ``console.js`` adds to htmx requests), or, before sign-in, a
double-submit cookie. Access rules are never decided here: pages ask ``accounts.permissions.authorize``.
"""

from __future__ import annotations

import gzip
import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context, select_autoescape
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from callerid.accounts import members as members_service
from callerid.accounts import signin
from callerid.accounts.permissions import ROLE_TITLES, Actor, Permission, allowed
from callerid.config import Settings
from callerid.runtime import Runtime, runtime_of
from callerid.static_files import fingerprint

STATIC_DIR = Path(__file__).parent / "static"
SESSION_COOKIE = "callerid_session"
BROWSER_COOKIE = "callerid_browser"
CSRF_COOKIE = "callerid_csrf"
FLASH_COOKIE = "callerid_flash"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages hold account data and, once, secrets: never stored by the browser or a proxy.
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# Navigation: what each link needs; a member sees only the links their role may use.
NAVIGATION = (
    ("Home", "/console", Permission.VIEW_HOME),
    ("Organisation", "/console/organisation", Permission.VIEW_ORGANISATION),
    ("Caller ID", "/console/caller-id", Permission.VIEW_LABELS),
    ("Feature sets", "/console/feature-sets", Permission.VIEW_FEATURE_SETS),
    ("Numbers", "/console/numbers", Permission.VIEW_NUMBERS),
    ("Call activity", "/console/activity", Permission.VIEW_ACTIVITY),
    ("Analytics", "/console/analytics", Permission.VIEW_ANALYTICS),
    ("API keys", "/console/api-keys", Permission.MANAGE_API_KEYS),
    ("Webhooks", "/console/webhooks", Permission.MANAGE_WEBHOOKS),
    ("Members", "/console/members", Permission.VIEW_MEMBERS),
    ("Settings", "/console/settings", Permission.OWN_PROFILE),
)


# --- static files ---------------------------------------------------------------------------------------------

STATIC_FILES = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "htmx.min.js": "text/javascript; charset=utf-8",
}
_STATIC_PATHS = {
    "console.css": STATIC_DIR / "console.css",
    "console.js": STATIC_DIR / "console.js",
    "htmx.min.js": STATIC_DIR / "vendor" / "htmx-2.0.11" / "htmx.min.js",
}


def _fingerprints() -> dict[str, str]:
    # Content hashes in the URLs, so the files can be cached for good and an upgrade is still picked up at once.
    return {name: fingerprint(path) for name, path in _STATIC_PATHS.items()}


STATIC_VERSIONS = _fingerprints()
# The three files, as they are and gzipped, kept in memory (~70 KB): compressed once, not per request.
_STATIC_BODIES = {name: path.read_bytes() for name, path in _STATIC_PATHS.items()}
_STATIC_GZIPPED = {name: gzip.compress(body, compresslevel=9) for name, body in _STATIC_BODIES.items()}


def static_body(name: str, *, gzipped: bool) -> bytes | None:
    return (_STATIC_GZIPPED if gzipped else _STATIC_BODIES).get(name)


def static_url(name: str) -> str:
    return f"/console/static/{name}?v={STATIC_VERSIONS[name]}"


# --- templates ------------------------------------------------------------------------------------------------


@pass_context
def _when(context: Mapping[str, Any], value: datetime | None, style: str = "datetime") -> Markup:
    """A time in the account's timezone with the zone named; the exact UTC time on hover (``title``)."""
    if value is None:
        return Markup('<span class="muted">never</span>')
    zone = ZoneInfo(context.get("timezone") or "UTC")
    local = value.astimezone(zone)
    shown = local.strftime("%d %b %Y" if style == "date" else "%d %b %Y, %H:%M")
    utc = value.astimezone(UTC)
    return Markup('<time datetime="{iso}" title="{utc} UTC">{shown} {zone}</time>').format(
        iso=utc.isoformat().replace("+00:00", "Z"),
        utc=utc.strftime("%Y-%m-%d %H:%M:%S"),
        shown=shown,
        zone=local.tzname() or context.get("timezone"),
    )


def _query(base: Mapping[str, Any], **changes: Any) -> str:
    """``?a=1&page=2``: the current filters with some changed (for pagination links)."""
    merged = {k: v for k, v in {**base, **changes}.items() if v not in (None, "")}
    return "?" + urlencode(merged) if merged else "?"


TEMPLATES = Environment(
    loader=PackageLoader("callerid.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters["when"] = _when
TEMPLATES.filters["urldecode"] = unquote
TEMPLATES.globals.update(static_url=static_url, role_titles=ROLE_TITLES, query=_query, Permission=Permission)


@dataclass
class Page:
    """What a signed-in page knows about its viewer."""

    request: Request
    runtime: Runtime
    current: signin.Current
    actor: Actor
    form_errors: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def account_id(self) -> Any:
        return self.actor.account_id

    def can(self, permission: Permission) -> bool:
        return allowed(self.actor, permission)

    def navigation(self) -> list[tuple[str, str, bool]]:
        path = self.request.url.path
        items = []
        for title, href, permission in NAVIGATION:
            if self.can(permission):
                active = path == href if href == "/console" else path == href or path.startswith(href + "/")
                items.append((title, href, active))
        return items


# Pages are compressed when the browser accepts it (every browser does): a list of 50 rows is ~40 KB of HTML and
# ~6 KB gzipped, which keeps a page under the 100 KB budget. Done here rather than with a middleware so that the
# API's hot paths never pay for the check.
GZIP_MIN_BYTES = 1024


def accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "")


def html_response(
    request: Request, body: str, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    content = body.encode()
    extra = {**SECURITY_HEADERS, **(headers or {}), "Vary": "Accept-Encoding"}
    if len(content) >= GZIP_MIN_BYTES and accepts_gzip(request):
        content = gzip.compress(content, compresslevel=6)
        extra["Content-Encoding"] = "gzip"
    return HTMLResponse(content, status_code=status_code, headers=extra)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    page: Page | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    values: dict[str, Any] = {
        "request": request,
        "page": page,
        "timezone": "UTC",
        "flash": None,
        "settings": request.app.state.runtime.settings,
    }
    if page is not None:
        values.update(
            timezone=page.current.account.timezone,
            csrf_token=page.current.csrf_token,
            member=page.current.member,
            account=page.current.account,
            actor=page.actor,
            navigation=page.navigation(),
        )
    values["flash"] = request.cookies.get(FLASH_COOKIE)
    values.update(context or {})
    values.setdefault("errors", {})
    values.setdefault("csrf_token", "")
    body = TEMPLATES.get_template(template).render(values)
    response = html_response(request, body, status_code=status_code, headers=headers)
    if values["flash"] is not None:
        response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
    return response


def render_fragment(
    request: Request, template: str, context: Mapping[str, Any], *, timezone: str = "UTC"
) -> HTMLResponse:
    """Part of a page for an htmx swap (no layout)."""
    body = TEMPLATES.get_template(template).render({"timezone": timezone, "errors": {}, **context})
    return html_response(request, body)


def redirect(url: str, *, flash: str | None = None, request: Request | None = None) -> Response:
    """303 to ``url`` (htmx follows the ``HX-Redirect`` header instead), with an optional one-line message."""
    if request is not None and request.headers.get("hx-request") == "true":
        response: Response = Response(status_code=200, headers={**SECURITY_HEADERS, "HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
    if flash:
        response.set_cookie(FLASH_COOKIE, quote(flash[:200]), path=COOKIE_PATH, httponly=True, samesite="lax")
    return response


# --- errors answered as pages ----------------------------------------------------------------------------------


class PageError(Exception):
    """Answer with an error page (403 for a role that may not, 404 for anything not found or not visible)."""

    def __init__(self, status_code: int, title: str, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.title = title
        self.message = message


def not_found() -> PageError:
    # The same answer whether the object does not exist or belongs to someone else: nothing leaks.
    return PageError(404, "Not found", "There is nothing here, or it is not yours to see.")


def forbidden() -> PageError:
    return PageError(403, "Not allowed", "Your role does not give access to this. Ask an admin of your account.")


class SignInFirst(Exception):
    """Signed out (or the session ended): go to the sign-in page and come back afterwards."""

    def __init__(self, next_path: str):
        super().__init__(next_path)
        self.next_path = next_path


class BadCsrf(Exception):
    """A state-changing request without the right CSRF token."""


def sign_in_redirect(request: Request, next_path: str) -> Response:
    target = "/console/sign-in"
    if next_path and next_path not in ("/console", "/console/"):
        target += "?" + urlencode({"next": next_path})
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={**SECURITY_HEADERS, "HX-Redirect": target})
    return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)


def safe_next(value: str | None) -> str:
    """Only our own console paths: an open redirect would make the sign-in page a phishing tool."""
    if value and value.startswith("/console") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console"


# --- cookies ------------------------------------------------------------------------------------------------------


def secure_cookies(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


def set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.console_session_max_hours * 3600,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(settings),
    )


def set_browser_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        BROWSER_COOKIE,
        token,
        max_age=settings.console_trusted_browser_days * 86400,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(settings),
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure_cookies(settings)
    )


def client_of(request: Request) -> signin.Client:
    address = request.client.host if request.client else "unknown"
    return signin.Client(address=address, user_agent=request.headers.get("user-agent", ""))


# --- forms and CSRF ---------------------------------------------------------------------------------------------


class TooLarge(Exception):
    """The form post is larger than ``console_upload_max_bytes``."""


async def read_form(request: Request) -> FormData:
    """The posted form, refusing bodies over the limit before parsing them (a logo is the largest part)."""
    limit = request.app.state.runtime.settings.console_upload_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise TooLarge()
    chunks = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise TooLarge()
        chunks.append(chunk)
    request._body = b"".join(chunks)  # starlette re-reads a cached body when parsing the form
    return await request.form(max_files=1, max_fields=200, max_part_size=limit)


def _token_matches(expected: str, given: str | None) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(expected.encode(), given.encode())


def check_csrf(request: Request, form: FormData | None, expected: str) -> None:
    given = request.headers.get(CSRF_HEADER)
    if given is None and form is not None:
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not _token_matches(expected, given):
        raise BadCsrf()


def signed_out_csrf(request: Request) -> str:
    """The double-submit token of a signed-out form: the cookie's value, or a new one (set by ``with_csrf_cookie``)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and len(existing) <= 100:
        return existing
    token: str = request.state.__dict__.setdefault("new_csrf", secrets.token_urlsafe(32))
    return token


def with_csrf_cookie(request: Request, response: Response) -> Response:
    new = request.state.__dict__.get("new_csrf")
    if new:
        response.set_cookie(
            CSRF_COOKIE,
            new,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=secure_cookies(request.app.state.runtime.settings),
        )
    return response


async def signed_out_form(request: Request) -> FormData:
    form = await read_form(request)
    check_csrf(request, form, request.cookies.get(CSRF_COOKIE, ""))
    return form


# --- the signed-in member ---------------------------------------------------------------------------------------


async def page_for(request: Request, permission: Permission) -> Page:
    """The signed-in member's page context, when their role has ``permission``; else sign-in or 403."""
    runtime = runtime_of(request)
    current = await signin.current(runtime.db, runtime.settings, request.cookies.get(SESSION_COOKIE))
    if current is None or current.state != signin.ACTIVE:
        next_path = request.url.path if request.method == "GET" else ""
        raise SignInFirst(next_path)
    async with runtime.db.session() as session:
        actor = await members_service.actor_of(session, current.member)
    if not allowed(actor, permission):
        raise forbidden()
    return Page(request, runtime, current, actor)


async def form_for(request: Request, permission: Permission) -> tuple[Page, FormData]:
    """``page_for`` for a state-changing request: also reads the form and checks its CSRF token."""
    page = await page_for(request, permission)
    form = await read_form(request)
    check_csrf(request, form, page.current.csrf_token)
    return page, form


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def path_uuid(value: str) -> uuid.UUID:
    """A UUID from the path; anything else is a page that does not exist."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found() from None


def page_number(request: Request) -> int:
    """``?page=`` of a listing: 1 unless a sensible positive number is given."""
    raw = request.query_params.get("page", "1")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 and int(raw) > 0 else 1


def field_of(message: str, prefixes: tuple[tuple[str, str], ...]) -> str:
    """Which form field a service's message is about: the services name the input in their first words
    (``name must be ...``, ``url host ... is a loopback address``); anything else is about the whole form."""
    lowered = message.lower()
    for prefix, field_name in prefixes:
        if lowered.startswith(prefix):
            return field_name
    return "form"
