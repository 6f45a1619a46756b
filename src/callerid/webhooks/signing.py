"""Standard Webhooks signatures (SPEC §9.1): ``webhook-signature: v1,<base64 HMAC-SHA256>``.

After a secret rotation a delivery is signed with the new and the old secret (``v1,<new> v1,<old>``,
space-separated, as Standard Webhooks allows) until the old one expires, so receivers can switch over.

Hand-written rather than using the ``standardwebhooks`` package: signing is a few lines of stdlib, and
the package pulls extra dependencies into the server; the tests check our output against it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def active_secrets(
    secret: str, previous_secret: str | None, previous_expires_at: datetime | None, now: datetime
) -> list[str]:
    """The secrets a delivery is signed with: the current one, then the previous one until it expires."""
    if previous_secret and previous_expires_at is not None and now < previous_expires_at:
        return [secret, previous_secret]
    return [secret]


def sign(secret: str | Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one delivery: one ``v1,...`` per secret, space-separated."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    keys = [secret] if isinstance(secret, str) else secret
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_key(key), signed, hashlib.sha256).digest()).decode() for key in keys
    )


def headers(secret: str | Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers; ``secret`` is one secret or the list of :func:`active_secrets`."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def verify(secret: str, message_id: str, timestamp: str, body: bytes, signature_header: str) -> bool:
    """True when one of the space-separated signatures matches (what a receiver does)."""
    expected = sign(secret, message_id, int(timestamp), body).split(",", 1)[1]
    for candidate in signature_header.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False
