"""Every failure the client raises: one root, ``CallerIdError``; answers of the API are ``APIError``s.

An ``APIError`` carries the HTTP ``status``, the ``slug`` and ``message`` of the answer (SPEC §2.4), the parsed
``body`` and the response ``headers``. The other shapes of the API map onto it too:

- ``{"status_info": {"status": "error", "field", "message"}}`` (R2/B2 validation) -> ``RecordValidationError`` with
  ``field`` and ``status_info``;
- ``{"status": "failure", "message": "... BatchID: <id>"}`` (R1/B1) -> ``V1FailureError`` with ``batch_id``;
- ``{"message": ...}`` (CMB/UF nothing found) -> ``NothingFoundError`` (``slug`` is None).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_BATCH_ID = re.compile(r"BatchID: ([0-9a-fA-F-]{36})")


class CallerIdError(Exception):
    """The root of every error this package raises."""


class APIError(CallerIdError):
    """The API answered with an error status."""

    def __init__(
        self,
        status: int,
        slug: str | None,
        message: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        method: str = "",
        path: str = "",
    ):
        where = f" ({method} {path})" if method else ""
        super().__init__(f"{status} {slug or 'error'}: {message}{where}")
        self.status = status
        self.slug = slug
        self.message = message
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})
        self.method = method
        self.path = path


class InvalidRequestError(APIError):
    """400 ``invalid-input`` (or another 4xx the client has no better class for)."""


class RecordValidationError(InvalidRequestError):
    """R2/B2 answered 400 ``{"status_info": {"status": "error", "field", "message"}}``."""

    @property
    def status_info(self) -> dict[str, Any]:
        info = self.body.get("status_info") if isinstance(self.body, dict) else None
        return dict(info) if isinstance(info, dict) else {}

    @property
    def field(self) -> str | None:
        value = self.status_info.get("field")
        return value if isinstance(value, str) else None


class V1FailureError(InvalidRequestError):
    """R1/B1 answered ``{"status": "failure", "message": ...}``; the batch is stored anyway (``batch_id``)."""

    @property
    def batch_id(self) -> str | None:
        found = _BATCH_ID.search(self.message)
        return found.group(1).lower() if found else None


class AuthenticationError(APIError):
    """401 ``authorization-error``: missing header, invalid credentials, or a token that stayed invalid after the
    client minted a fresh one."""


class PermissionDeniedError(APIError):
    """403 ``forbidden-error``: the key lacks the access level, or the account is not subscribed."""


class NotFoundError(APIError):
    """404 ``not-found`` (unknown feature set or survey)."""


class NothingFoundError(NotFoundError):
    """404 of CMB/UF with a bare ``{"message": ...}``: nothing in the range."""


class ConflictError(APIError):
    """409."""


class IdempotencyKeyInProgressError(ConflictError):
    """409 ``idempotency-key-in-progress``: the first request with this key is still running (retried by default)."""


class UnprocessableError(APIError):
    """422."""


class IdempotencyKeyReusedError(UnprocessableError):
    """422 ``idempotency-key-reused``: the same key was sent with another body."""


class RateLimitError(APIError):
    """429 ``rate-limit-exceeded``; ``retry_after`` in seconds when the server said."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


class TokenMintLimitError(RateLimitError):
    """The account's token mint limit (10 per 30 minutes) is reached and the client was told not to wait (or the
    wait would exceed ``ClientConfig.mint_wait_max``)."""


class ServerError(APIError):
    """5xx."""


class TransportError(CallerIdError):
    """The server could not be reached or the connection broke, and no retry was left (``__cause__`` is httpx's)."""


class LocalValidationError(CallerIdError):
    """Records broke the API's rules before anything was sent; ``problems`` lists (index, field, message)."""

    def __init__(self, problems: Sequence[tuple[int, str, str]]):
        self.problems = list(problems)
        shown = "; ".join(f"record {index}: {field}: {message}" for index, field, message in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"{len(self.problems)} invalid record(s), nothing sent: {shown}{more}")


class WebhookVerificationError(CallerIdError):
    """A webhook delivery's signature or timestamp did not verify."""


class WaitTimeoutError(CallerIdError):
    """Waiting for final states (batches, numbers) took longer than allowed."""


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableError,
    429: RateLimitError,
}
_BY_SLUG: dict[str, type[APIError]] = {
    "idempotency-key-in-progress": IdempotencyKeyInProgressError,
    "idempotency-key-reused": IdempotencyKeyReusedError,
}


def error_from_response(
    status: int, body: Any, headers: Mapping[str, str], *, method: str = "", path: str = "", token_call: bool = False
) -> APIError:
    """The exception for an error answer, whatever its shape."""
    slug: str | None = None
    message = ""
    kind: type[APIError] | None = None
    if isinstance(body, dict):
        info = body.get("status_info")
        if isinstance(info, dict):
            message = str(info.get("message") or "")
            slug = "invalid-input"
            kind = RecordValidationError
        elif body.get("status") == "failure":
            message = str(body.get("message") or "")
            slug = "invalid-input"
            kind = V1FailureError
        else:
            slug = body["slug"] if isinstance(body.get("slug"), str) else None
            message = str(body.get("message") or "")
            if slug is None and status == 404:
                kind = NothingFoundError
    elif isinstance(body, str):
        message = body[:500]
    if kind is None and slug is not None:
        kind = _BY_SLUG.get(slug)
    if kind is None:
        kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else InvalidRequestError)
    if kind is RateLimitError and token_call:
        kind = TokenMintLimitError
    if not message:
        message = f"HTTP {status}"
    return kind(status, slug, message, body=body, headers=headers, method=method, path=path)
