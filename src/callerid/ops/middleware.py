"""A pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot paths): request id, access log
line, metrics. It logs the route template, never the raw query string or headers."""

from __future__ import annotations

import functools
import re
import time
import uuid
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


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        context_tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            # Answered here rather than by Starlette's ServerErrorMiddleware so that the log line keeps the
            # request id and the response carries X-Request-ID. The body never holds the exception's text.
            log.error("unhandled_error", route=_route_template(scope), exc_info=exc)
            if scope["type"] != "http" or state["started"]:
                raise
            body = orjson.dumps(INTERNAL_ERROR_BODY)
            headers = [
                (b"content-type", JsonResponse.media_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ]
            await send_wrapper({"type": "http.response.start", "status": 500, "headers": headers})
            await send_wrapper({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope.get("method", "WS")
            status = str(state["status"]) if scope["type"] == "http" else "ws"
            _request_counter(method, route, status).inc()
            _latency_histogram(method, route).observe(elapsed)
            log_access({"method": method, "route": route, "status": status, "duration_ms": round(elapsed * 1000, 2)})
            structlog.contextvars.reset_contextvars(**context_tokens)
