"""Request observability: request id, access log line, metrics, and the 500 answer for anything unexpected, as a
pure ASGI middleware (every route but the fast ones, which use ``RequestObservation`` themselves). It logs the
route template, never the raw query string or headers."""

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
INTERNAL_ERROR = orjson.dumps(INTERNAL_ERROR_BODY)
_INTERNAL_ERROR_HEADERS = [
    (b"content-type", JsonResponse.media_type.encode()),
    (b"content-length", str(len(INTERNAL_ERROR)).encode()),
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


class RequestObservation:
    """One request's observability: its id (echoed as ``X-Request-ID``, bound to every log line of the request)
    and its timing; ``finish`` counts it in the metrics and writes its access line. Used by the middleware below
    and, for the hot endpoints, by ``callerid.fastlane`` directly (one layer less on every request)."""

    __slots__ = ("_context", "header", "request_id", "started")

    def __init__(self, scope: Scope):
        self.request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = self.request_id
        self._context = structlog.contextvars.bind_contextvars(request_id=self.request_id)
        self.header = (b"x-request-id", self.request_id.encode())
        self.started = time.perf_counter()

    def failed(self, scope: Scope, exc: BaseException) -> None:
        # The request id stays on the log line; the response body never holds the exception's text.
        log.error("unhandled_error", route=_route_template(scope), exc_info=exc)

    def finish(self, scope: Scope, status: str) -> None:
        elapsed = time.perf_counter() - self.started
        route = _route_template(scope)
        method = scope.get("method", "WS")
        _request_counter(method, route, status).inc()
        _latency_histogram(method, route).observe(elapsed)
        duration_ms = round(elapsed * 1000, 2)
        log_access(self.request_id, {"method": method, "route": route, "status": status, "duration_ms": duration_ms})
        structlog.contextvars.reset_contextvars(**self._context)


INTERNAL_ERROR_START = {"type": "http.response.start", "status": 500, "headers": _INTERNAL_ERROR_HEADERS}


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        observation = RequestObservation(scope)
        status = 500
        responded = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = True
                message["headers"] = [*message.get("headers", ()), observation.header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:
            observation.failed(scope, exc)
            if kind != "http" or responded:
                raise
            await send_with_request_id(dict(INTERNAL_ERROR_START))
            await send_with_request_id({"type": "http.response.body", "body": INTERNAL_ERROR})
        finally:
            observation.finish(scope, str(status) if kind == "http" else "ws")
