"""A local webhook receiver for debugging an integration: verifies each delivery's signature, hands the event on,
answers 200 (401 when the signature does not verify, 400 when the body is not an event)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from callerid_client.errors import WebhookVerificationError
from callerid_client.models import CmbEvent, UserFeedbackEvent
from callerid_client.webhooks import DEFAULT_TOLERANCE, check_webhook, parse_event

EventHook = Callable[[CmbEvent | UserFeedbackEvent | None, dict[str, str], bytes, str | None], None]


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        secrets: Sequence[str],
        on_event: EventHook,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        max_events: int | None = None,
    ):
        super().__init__(address, _Handler)
        self.secrets = list(secrets)
        self.on_event = on_event
        self.tolerance = tolerance
        self.max_events = max_events
        self.received = 0


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        problem: str | None = None
        event: CmbEvent | UserFeedbackEvent | None = None
        status = 200
        try:
            check_webhook(self.server.secrets, headers, body, tolerance=self.server.tolerance)
            event = parse_event(body)
        except WebhookVerificationError as exc:
            problem = str(exc)
            status = 401 if "signature" in problem or "timestamp" in problem or "header" in problem else 400
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"received": true}' if status == 200 else b'{"received": false}')
        self.server.on_event(event, headers, body, problem)
        self.server.received += 1
        if self.server.max_events is not None and self.server.received >= self.server.max_events:
            # shutdown() waits for serve_forever to return: from another thread.
            import threading

            threading.Thread(target=self.server.shutdown, daemon=True).start()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # events are printed by on_event
