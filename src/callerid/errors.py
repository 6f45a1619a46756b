"""The one map from failures to HTTP answers: every failure renders as ``{"slug", "message"}`` (SPEC §2.4).

Services (and routes) raise the domain errors of ``callerid.failures``; ``STATUS`` gives each kind its status, in
one table, and one handler answers them all. ``ApiError`` is left for the few answers only HTTP has (405 with
``Allow``, 413, 426, the metrics token). Whatever else escapes (framework 404/405, validation errors, bugs) is
turned into the same shape here, so no stack trace ever reaches a client.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from callerid.failures import (
    FORBIDDEN_MESSAGE,
    Busy,
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    InvalidInput,
    LimitExceeded,
    NotFound,
    Unauthorized,
    Unavailable,
    Unprocessable,
    UpstreamFailed,
)
from callerid.responses import JsonResponse

INTERNAL_ERROR_BODY = {"slug": "internal-server-error", "message": "internal server error"}


class ApiError(Exception):
    """An answer that only HTTP has, in the spec's common shape ``{"slug": ..., "message": ...}``."""

    def __init__(self, status_code: int, slug: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status_code} {slug}: {message}")
        self.status_code = status_code
        self.slug = slug
        self.message = message
        self.headers = headers

    def body(self) -> dict[str, str]:
        return {"slug": self.slug, "message": self.message}


# The status of each kind of domain error. A domain's own subclass answers as the first of its bases found here
# (``accounts.service.NotFound`` is a NotFound before it is an AccountsError, an InvalidInput: 404).
STATUS: dict[type[DomainError], int] = {
    DomainError: 400,
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Busy: 409,
    Gone: 410,
    Unprocessable: 422,
    LimitExceeded: 429,
    UpstreamFailed: 502,
    Unavailable: 503,
}


def status_of(error: DomainError) -> int:
    return next(STATUS[kind] for kind in type(error).__mro__ if kind in STATUS)


def problem_of(error: DomainError | ApiError) -> ApiError:
    """The HTTP answer to ``error``: its status, ``{"slug", "message"}``, and ``Retry-After`` for a limit."""
    if isinstance(error, ApiError):
        return error
    headers = None
    if isinstance(error, LimitExceeded | Busy):
        headers = {"Retry-After": str(max(1, error.retry_after))}  # never 0: that would invite a retry at once
    return ApiError(status_of(error), error.slug, error.message, headers=headers)


def body_of(error: DomainError) -> dict[str, str]:
    """The body ``error`` is answered with (e.g. for an example in the OpenAPI document)."""
    return problem_of(error).body()


def method_not_allowed(allowed: tuple[str, ...]) -> ApiError:
    return ApiError(405, "method-not-allowed", "method not allowed", headers={"Allow": ", ".join(allowed)})


def body_too_large(limit: int) -> ApiError:
    # The slug the framework's own 413 gets below (HTTP's phrase), with the limit in the message.
    return ApiError(413, "request-entity-too-large", f"request body must be at most {limit} bytes")


def token_parse_error() -> ApiError:
    # Kept as the reference answers it (SPEC §3.4 #2, §12 #15), odd as a 500 is.
    return ApiError(500, "internal-server-error", "500/50011 - Failed to parse token")


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "Request is invalid"
    first = errors[0]
    raw_loc = tuple(first.get("loc", ()))
    if first.get("type") == "json_invalid" or raw_loc in ((), ("body",)):
        # Unparsable JSON, or a body that is not the object the route expects (SPEC §2.3).
        return "Request body is invalid"
    loc = [str(part) for part in raw_loc if part not in ("body", "query", "path", "header", "cookie")]
    field = ".".join(loc) if loc else "request"
    if first.get("type") == "missing":
        return f"{field} is required"
    return f"{field} is invalid"


# Statuses the framework itself can raise, rendered in the spec's shape.
_FRAMEWORK_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid-input", "Request is invalid"),
    401: ("authorization-error", "Missing authorization header"),
    403: ("forbidden-error", FORBIDDEN_MESSAGE),
    404: ("not-found", "not found"),
    405: ("method-not-allowed", "method not allowed"),
}


def _http_error_body(exc: StarletteHTTPException) -> dict[str, str]:
    if exc.status_code in _FRAMEWORK_ERRORS:
        slug, message = _FRAMEWORK_ERRORS[exc.status_code]
        if exc.status_code == 400 and isinstance(exc.detail, str) and exc.detail:
            message = exc.detail
        return {"slug": slug, "message": message}
    if exc.status_code == 500:
        return dict(INTERNAL_ERROR_BODY)
    try:
        phrase = HTTPStatus(exc.status_code).phrase.lower()
    except ValueError:
        phrase = "error"
    # e.g. 413 -> request-entity-too-large; the detail is the framework's text, not internals.
    return {"slug": phrase.replace(" ", "-"), "message": phrase}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    @app.exception_handler(DomainError)
    async def _problem(_: Request, exc: ApiError | DomainError) -> JsonResponse:
        problem = problem_of(exc)
        return JsonResponse(problem.body(), status_code=problem.status_code, headers=problem.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_exception(_: Request, exc: StarletteHTTPException) -> JsonResponse:
        return JsonResponse(_http_error_body(exc), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        return JsonResponse({"slug": "invalid-input", "message": _validation_message(exc)}, status_code=400)
