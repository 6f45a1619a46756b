"""Bounded request bodies: one pure ASGI layer in front of every route, the fast lane's included.

A body over ``max_request_body_bytes`` is answered 413 (``request-entity-too-large``) before it is read whole:

- with ``Content-Length``: at once, before any route runs. A declared length within the limit needs nothing
  more, because the server frames the body by it (HTTP/1.1 delivers exactly that many bytes, HTTP/2 refuses DATA
  that does not add up to it): so a hot endpoint pays a scan of its few headers and a comparison (this layer
  costs ~0.45 µs a request, beside the ~250 µs of an R2 request; ~0.8 µs when it counts);
- without it (a chunked body): the bytes are counted as the app reads its ``http.request`` messages, and the read
  that passes the limit raises the 413 ``ApiError``. The fast lane and the exception handlers render it like any
  other error, with the request id, access line and metrics; nothing past the limit is read, parsed or stored.

The web console (``/console/...``) is left to ``console.web.read_form``: its form posts carry a logo (under
2 MB), so they have their own, larger limit, ``console_upload_max_bytes``, which ``read_form`` checks the same two
ways and answers with the console's HTML error page rather than JSON. Every console body is read through it.

JSON nesting is bounded in ``callerid.http.parse_json_object``; the phones' WebSocket messages in
``callerid.delivery.routes``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callerid.errors import body_too_large
from callerid.fastlane import send_json
from callerid.ops.middleware import RequestObservation

CONSOLE_PREFIX = "/console/"


class RequestLimits:
    """ASGI middleware refusing HTTP request bodies over ``max_body_bytes`` (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONSOLE_PREFIX):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:  # servers refuse these before the app; count the bytes if one gets here
                    break
                if declared > self.max_body_bytes:
                    await self._refuse(scope, send)
                else:
                    await self.app(scope, receive, send)
                return
        await self.app(scope, _counting(receive, self.max_body_bytes), send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        """The 413 for a declared length over the limit, sent before any of the body is read."""
        observation = RequestObservation(scope)
        problem = body_too_large(self.max_body_bytes)
        await send_json(send, problem.status_code, problem.body(), problem.headers, observation.header)
        observation.finish(scope, str(problem.status_code))


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` raising the 413 as soon as the body read so far passes ``limit`` bytes."""
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise body_too_large(limit)
        return message

    return counted
