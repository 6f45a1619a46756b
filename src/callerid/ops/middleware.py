"""A pure ASGI middleware, the outermost layer of the app: request id, access log line, metrics, and the 500
answer for anything unexpected. It logs the route template, never the raw query string or headers."""

from __future__ import annotations

import functools
import os
import re
import time
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callerid.errors import INTERNAL_ERROR_BODY
from callerid.ops.logging import log_access
from callerid.ops.metrics import HTTP_LATENCY, HTTP_REQUESTS
from callerid.responses import JsonResponse

log = structlog.get_logger("callerid.access")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_INTERNAL_ERROR = orjson.dumps(INTERNAL_ERROR_BODY)
_INTERNAL_ERROR_HEADERS = [
    (b"content-type", JsonResponse.media_type.encode()),
    (b"content-length", str(len(_INTERNAL_ERROR)).encode()),
]


# ``labels()`` locks and validates on every call; the children for a given label set never change.
@functools.lru_cache(maxsize=4096)
def _request_counter(method: str, route: str, status: str) -> Any:
    return HTTP_REQUESTS.labels(method, route, status)


@functools.lru_cache(maxsize=4096)
def _latency_histogram(method: str, route: str) -> Any:
    return HTTP_LATENCY.labels(method, route)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "<unmatched>"


def _request_id(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when it is safe to log and echo, else a new random one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            incoming = value.decode("latin-1")
            if _SAFE_REQUEST_ID.match(incoming):
                return incoming
            break
    return os.urandom(16).hex()


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        context_tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        request_id_header = (b"x-request-id", request_id.encode())
        started = time.perf_counter()
        status = 500
        responded = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = True
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:
            # The request id stays on the log line and the response; the body never holds the exception's text.
            log.error("unhandled_error", route=_route_template(scope), exc_info=exc)
            if kind != "http" or responded:
                raise
            await send_with_request_id(
                {"type": "http.response.start", "status": 500, "headers": _INTERNAL_ERROR_HEADERS}
            )
            await send_with_request_id({"type": "http.response.body", "body": _INTERNAL_ERROR})
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope.get("method", "WS")
            outcome = str(status) if kind == "http" else "ws"
            _request_counter(method, route, outcome).inc()
            _latency_histogram(method, route).observe(elapsed)
            log_access(
                request_id,
                {"method": method, "route": route, "status": outcome, "duration_ms": round(elapsed * 1000, 2)},
            )
            structlog.contextvars.reset_contextvars(**context_tokens)
