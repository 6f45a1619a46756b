"""The one error type and the handlers that render every failure as ``{"slug", "message"}``.

Routes and dependencies raise ``ApiError``; whatever else escapes (framework 404/405, validation
errors, bugs) is turned into the same shape here, so no stack trace ever reaches a client.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from callerid.responses import JsonResponse

FORBIDDEN_MESSAGE = "not authorized. please contact your admin."
INTERNAL_ERROR_BODY = {"slug": "internal-server-error", "message": "internal server error"}


class ApiProblem(Exception):
    """Anything that answers the client with a non-2xx JSON body."""

    status_code: int = 500
    headers: dict[str, str] | None = None

    def body(self) -> Any:
        raise NotImplementedError


class ApiError(ApiProblem):
    """The spec's common error shape: ``{"slug": ..., "message": ...}`` (SPEC §2.4)."""

    def __init__(self, status_code: int, slug: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status_code} {slug}: {message}")
        self.status_code = status_code
        self.slug = slug
        self.message = message
        self.headers = headers

    def body(self) -> dict[str, str]:
        return {"slug": self.slug, "message": self.message}


class BodyError(ApiProblem):
    """An error whose body is not the slug shape (R1/B1 ``status``, R2/B2 ``status_info``, CMB/UF ``message``)."""

    def __init__(self, status_code: int, body: Any):
        super().__init__(f"{status_code}: {body}")
        self.status_code = status_code
        self._body = body

    def body(self) -> Any:
        return self._body


def invalid_input(message: str) -> ApiError:
    return ApiError(400, "invalid-input", message)


def authorization_error(message: str) -> ApiError:
    return ApiError(401, "authorization-error", message)


def forbidden() -> ApiError:
    return ApiError(403, "forbidden-error", FORBIDDEN_MESSAGE)


def not_found(message: str = "not found") -> ApiError:
    return ApiError(404, "not-found", message)


def method_not_allowed(allowed: tuple[str, ...]) -> ApiError:
    return ApiError(405, "method-not-allowed", "method not allowed", headers={"Allow": ", ".join(allowed)})


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def body_too_large(limit: int) -> ApiError:
    # The slug the framework's own 413 gets below (HTTP's phrase), with the limit in the message.
    return ApiError(413, "request-entity-too-large", f"request body must be at most {limit} bytes")


def rate_limited(retry_after: int, message: str = "too many requests") -> ApiError:
    return ApiError(429, "rate-limit-exceeded", message, headers={"Retry-After": str(max(1, retry_after))})


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
    @app.exception_handler(ApiProblem)
    async def _api_problem(_: Request, exc: ApiProblem) -> JsonResponse:
        return JsonResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_exception(_: Request, exc: StarletteHTTPException) -> JsonResponse:
        return JsonResponse(_http_error_body(exc), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        return JsonResponse({"slug": "invalid-input", "message": _validation_message(exc)}, status_code=400)
