"""The one family of domain errors: what a service raises when a request breaks one of its rules.

Services know nothing of HTTP: they raise these, and each front end shows them its own way, in one place each.
``callerid.errors`` maps them to a status and the spec's ``{"slug", "message"}`` body (SPEC §2.4); the CLI
prints ``error: <message>`` (``callerid.cli.common.run_with_db``); console pages show the message next to the
form field it names. A domain may subclass these (``AccountsError``, ``NumbersError``, ...) so that its own front
ends can catch what it raises; the family class it derives from decides how it is answered.

Nothing here imports a web framework (``tests/test_layers.py`` keeps it so).
"""

from __future__ import annotations

# The reference answers every refused permission with this one sentence (SPEC §3.4).
FORBIDDEN_MESSAGE = "not authorized. please contact your admin."


class DomainError(Exception):
    """A rule was broken: ``slug`` names which kind for a program, ``message`` says what for a person.

    ``field`` names the input it is about, when there is one (the console shows the message next to it).
    ``str(error)`` is the message.
    """

    def __init__(self, slug: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.slug = slug
        self.message = message
        self.field = field


# The subclasses below call ``DomainError.__init__`` by name, not ``super().__init__``: a domain's error may derive
# from two of them (``accounts.service.NotFound`` is a ``NotFound`` and an ``AccountsError``), and each must set
# its own slug whatever comes next in the method resolution order.


class InvalidInput(DomainError):
    """The input is missing, malformed or breaks a rule (400 invalid-input)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        DomainError.__init__(self, "invalid-input", message, field=field)


class Unauthorized(DomainError):
    """No credentials, or ones that identify nobody (401 authorization-error)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        DomainError.__init__(self, "authorization-error", message, field=field)


class Forbidden(DomainError):
    """Known, but not allowed to do this (403 forbidden-error)."""

    def __init__(self, message: str = FORBIDDEN_MESSAGE, field: str | None = None) -> None:
        DomainError.__init__(self, "forbidden-error", message, field=field)


class NotFound(DomainError):
    """Nothing of that name or id, or nothing the caller may see (404 not-found)."""

    def __init__(self, message: str = "not found", field: str | None = None) -> None:
        DomainError.__init__(self, "not-found", message, field=field)


class Conflict(DomainError):
    """Valid input that the current state does not allow (409 conflict)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        DomainError.__init__(self, "conflict", message, field=field)


class Busy(DomainError):
    """The same thing is being done right now by another request: retry after ``retry_after`` seconds (409, with its
    own slug, e.g. ``idempotency-key-in-progress``)."""

    def __init__(self, slug: str, message: str, field: str | None = None, *, retry_after: int) -> None:
        DomainError.__init__(self, slug, message, field=field)
        self.retry_after = retry_after


class Unprocessable(DomainError):
    """Well-formed, but cannot be done as sent, e.g. a key reused for another request (422, with its own slug)."""


class Gone(DomainError):
    """What the request is about has ended for good (410, with its own slug, e.g. ``registration-ended``)."""


class LimitExceeded(DomainError):
    """Too many requests: ``retry_after`` seconds until the next one may succeed (429 rate-limit-exceeded)."""

    def __init__(self, message: str = "too many requests", field: str | None = None, *, retry_after: int) -> None:
        DomainError.__init__(self, "rate-limit-exceeded", message, field=field)
        self.retry_after = retry_after


class UpstreamFailed(DomainError):
    """A service this one depends on failed, e.g. the SMS gateway (502, with its own slug)."""


class Unavailable(DomainError):
    """This server is not set up to do it, e.g. no SMS gateway (503, with its own slug)."""


__all__ = [
    "FORBIDDEN_MESSAGE",
    "Busy",
    "Conflict",
    "DomainError",
    "Forbidden",
    "Gone",
    "InvalidInput",
    "LimitExceeded",
    "NotFound",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "UpstreamFailed",
]
