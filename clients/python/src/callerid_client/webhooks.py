"""Receiving webhooks: Standard Webhooks signatures (SPEC §9.1) and the typed events (SPEC §9.3).

Every delivery carries ``webhook-id`` (the event id, the same on every retry: use it to drop duplicates),
``webhook-timestamp`` (epoch seconds) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` of
``<id>.<timestamp>.<raw body>``, keyed with the base64-decoded part of the ``whsec_`` secret; several
space-separated while a rotated secret is still valid). Verify the raw bytes before parsing them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from pydantic import TypeAdapter, ValidationError

from callerid_client.errors import WebhookVerificationError
from callerid_client.models import WebhookEvent

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300  # seconds a delivery's timestamp may be away from this machine's clock

_EVENT: TypeAdapter[WebhookEvent] = TypeAdapter(WebhookEvent)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict with other capitalisation
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from exc


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """A ``webhook-signature`` value (``v1,<base64>``) as the server makes it (for tests of your receiver)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def check_webhook(
    secret: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Raise ``WebhookVerificationError`` (saying why) unless the delivery is signed with ``secret`` (or one of
    several, e.g. during a rotation) and its timestamp is within ``tolerance`` seconds of ``now``."""
    message_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signature = _header(headers, "webhook-signature")
    if not message_id or not timestamp or not signature:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise WebhookVerificationError(f"webhook-timestamp is more than {tolerance:.0f} s away from now (a replay?)")
    candidates = [value for version, _, value in (part.partition(",") for part in signature.split()) if version == "v1"]
    for key in [secret] if isinstance(secret, str) else secret:
        expected = sign(key, message_id, sent_at, body).partition(",")[2]
        if any(hmac.compare_digest(candidate, expected) for candidate in candidates):
            return
    raise WebhookVerificationError("no webhook-signature matches the secret")


def verify_webhook(
    secret: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """True when the delivery is signed with ``secret`` and recent (see ``check_webhook`` for the reason when not)."""
    try:
        check_webhook(secret, headers, body, tolerance=tolerance, now=now)
    except WebhookVerificationError:
        return False
    return True


def parse_event(body: bytes | str) -> WebhookEvent:
    """The typed event of a delivery's body: ``CmbEvent`` or ``UserFeedbackEvent`` (by ``event_type``)."""
    try:
        return _EVENT.validate_json(body)
    except ValidationError as exc:
        raise WebhookVerificationError(f"not a callerid webhook event: {exc.errors()[0]['msg']}") from exc


def construct_event(
    secret: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> WebhookEvent:
    """``check_webhook`` then ``parse_event``: the one call a receiver needs."""
    check_webhook(secret, headers, body, tolerance=tolerance)
    return parse_event(body)
