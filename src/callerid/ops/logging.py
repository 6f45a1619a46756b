"""Structured JSON logs (structlog) with secrets scrubbed.

No secret or token may reach a log line: a processor masks values under sensitive keys and anything
that looks like a bearer token, whatever the caller passed.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

# A field is masked when its name contains one of these (``admin_password``, ``webhook_secret``,
# ``device_token``, ``x-api-key``...), whatever the value looks like.
SENSITIVE_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "api-key",
    "apikey",
    "authorization",
    "cookie",
)
_BEARER_TOKEN = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
# ``api_key=...``, ``"password": "..."``, ``?token=...`` inside free text such as an exception message;
# a quoted value is masked up to its closing quote, so a password with spaces does not half-leak.
_KEY_VALUE = re.compile(
    r"(?i)((?:api[_-]?key|password|passwd|secret|token|authorization)[\"']?\s*[:=]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s\"'&,;)}\]]+)"
)
_TOKEN_LIKE = re.compile(r"\b[A-Za-z0-9]{64}\b")
_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/=_-]+")
# ``scheme://user:password@host`` (a database or webhook URL in an error message).
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")


def is_sensitive_key(key: object) -> bool:
    name = str(key).lower()
    return any(part in name for part in SENSITIVE_KEY_PARTS)


def _mask_value(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match.group(1)}{quote}[redacted]{quote}"


# Text every pattern above leaves alone: they need a space, ``:``, ``=``, ``/``, ``@``, a quote, ``whsec_`` or 64
# letters/digits in a row. Request ids, route templates, slugs... are such text: skip the five searches.
_PLAIN = re.compile(r"[A-Za-z0-9.-]{0,63}|[A-Za-z0-9._-]{0,5}")


def _scrub_text(text: str) -> str:
    if _PLAIN.fullmatch(text):
        return text
    text = _BEARER_TOKEN.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = _WHSEC.sub("whsec_[redacted]", text)
    text = _URL_CREDENTIALS.sub(r"\1[redacted]@", text)
    text = _KEY_VALUE.sub(_mask_value, text)
    return _TOKEN_LIKE.sub("[redacted]", text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, dict):
        return {k: ("[redacted]" if is_sensitive_key(k) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def scrub_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {key: ("[redacted]" if is_sensitive_key(key) else _scrub(value)) for key, value in event_dict.items()}


PRERENDERED = "callerid_prerendered"  # LogRecord attribute: the line is already final JSON


class _PrerenderedOrProcessorFormatter(structlog.stdlib.ProcessorFormatter):
    """Passes pre-rendered lines through untouched (the per-request access line, see ``access_line``)."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, PRERENDERED, False):
            return str(record.msg)
        return super().format(record)


_ACCESS_LOGGER = logging.getLogger("callerid.access")


# Access lines wait at most this long before they are written, together (one write and one LogRecord per batch
# instead of per request: at thousands of requests/s the per-line handler call and write were ~40% of /healthz).
ACCESS_FLUSH_SECONDS = 0.02
_pending_access: list[bytes] = []
_flush_handle: asyncio.TimerHandle | None = None


def log_access(request_id: str, fields: dict[str, Any]) -> None:
    """The access line of one request, as the structlog chain would render it but much cheaper.

    Every request writes one, so it skips the generic processor chain: the fields are plain (method, route
    template, status, duration) and the request id is already known safe (see the middleware). Lines are
    written in batches, within ``ACCESS_FLUSH_SECONDS`` (at once outside an event loop).
    """
    global _flush_handle
    if not _ACCESS_LOGGER.isEnabledFor(logging.INFO):
        return
    line = {
        "request_id": _scrub_text(request_id),
        **fields,
        "event": "request",
        "level": "info",
        "logger": "callerid.access",
        "timestamp": _timestamp(),
    }
    _pending_access.append(orjson.dumps(line))
    if _flush_handle is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            flush_access_log()
            return
        _flush_handle = loop.call_later(ACCESS_FLUSH_SECONDS, flush_access_log)


_second: int | None = None
_second_text = ""


def _timestamp() -> str:
    """Now as ISO-8601 UTC with microseconds, like structlog's TimeStamper(fmt="iso", utc=True) writes it; the
    date-time part is formatted once per second (datetime.isoformat() was most of the access line's cost)."""
    global _second, _second_text
    now = time.time()
    second = int(now)
    if second != _second:
        _second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = second
    return f"{_second_text}.{int((now - second) * 1_000_000):06d}Z"


def flush_access_log() -> None:
    """Write the access lines waiting (shutdown, tests; otherwise the timer does)."""
    global _flush_handle
    if _flush_handle is not None:
        _flush_handle.cancel()
        _flush_handle = None
    if not _pending_access:
        return
    text = b"\n".join(_pending_access).decode()
    _pending_access.clear()
    record = logging.LogRecord("callerid.access", logging.INFO, __file__, 0, text, None, None)
    setattr(record, PRERENDERED, True)
    _ACCESS_LOGGER.handle(record)


atexit.register(flush_access_log)


def configure_logging(level: str = "INFO", json_output: bool = True) -> None:
    """Route structlog and the standard library (Granian, alembic) through one JSON renderer."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrub_secrets,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = _PrerenderedOrProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # The server's own messages go through our renderer; its access log would print raw query strings (tokens
    # in ?token=...), and ours replaces it.
    granian = logging.getLogger("_granian")
    granian.handlers = []
    granian.propagate = True
    logging.getLogger("granian.access").handlers = []
    logging.getLogger("granian.access").propagate = False
    # httpx logs every outbound request's full URL at INFO (webhook URLs may carry credentials or tokens).
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
