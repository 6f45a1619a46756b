"""Sending a phone's registration code: the operator's SMS gateway, or the development SMS outbox.

Which one is decided by the settings alone (:func:`development_outbox`), never per request:

- ``CALLERID_SMS_WEBHOOK_URL`` set: each code is POSTed there as JSON (``{"to", "message", "code",
  "expires_at"}``) with Standard Webhooks headers signed with ``CALLERID_SMS_WEBHOOK_SECRET``, through the
  webhooks' HTTP client (:mod:`callerid.webhooks.delivery`): the same address guard against SSRF
  (``CALLERID_WEBHOOK_ALLOW_PRIVATE``), connection pool and user agent. The gateway turns it into an SMS.
- unset, on the embedded default (SQLite) only: the code is written to the ``sms_outbox`` table (``callerid sms
  outbox``) and handed back to the caller as ``demo_code``, so a laptop without an SMS gateway can still try the
  whole flow. With PostgreSQL there is no outbox: ``serve`` refuses to start (:func:`check_startup`).
"""

from __future__ import annotations

import asyncio
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.config import Settings
from callerid.delivery.models import SmsOutbox
from callerid.timefmt import iso_z
from callerid.webhooks import signing
from callerid.webhooks.safety import UnsafeUrl, check_url_syntax

if TYPE_CHECKING:
    from callerid.runtime import Runtime

# The deliverer's concurrency limit is per webhook id: the SMS gateway is one "webhook" of its own.
SMS_GATEWAY_ID = uuid.uuid5(uuid.NAMESPACE_URL, "callerid:sms-gateway")
# Development SMS are kept this long (their codes are useless after minutes anyway).
OUTBOX_KEPT = timedelta(days=1)


class SmsConfigError(Exception):
    """The SMS settings cannot work; the message says what to set."""


class SmsFailed(Exception):
    """The gateway did not take the message; the text is for the log (it may name internal addresses)."""


@dataclass(frozen=True)
class Sms:
    to: str
    code: str
    expires_at: datetime
    registration_id: uuid.UUID
    message: str

    def body(self) -> bytes:
        return orjson.dumps(
            {"to": self.to, "message": self.message, "code": self.code, "expires_at": iso_z(self.expires_at)}
        )


def compose(settings: Settings, *, to: str, code: str, expires_at: datetime, registration_id: uuid.UUID) -> Sms:
    message = settings.sms_code_message.replace("{code}", code)
    return Sms(to=to, code=code, expires_at=expires_at, registration_id=registration_id, message=message)


def development_outbox(settings: Settings) -> bool:
    """Whether codes go to the development outbox (and back to the caller as ``demo_code``).

    Only with no SMS gateway configured AND on SQLite: the one place this is decided.
    """
    return settings.sms_webhook_url is None and settings.embedded


def check_startup(settings: Settings) -> None:
    """Refuse settings that cannot deliver codes; raises :class:`SmsConfigError` saying what to set."""
    if settings.sms_webhook_url is not None:
        try:
            check_url_syntax(settings.sms_webhook_url, require_https=settings.webhook_require_https)
        except UnsafeUrl as exc:
            raise SmsConfigError(f"CALLERID_SMS_WEBHOOK_URL: {exc}") from None
        if settings.sms_webhook_secret is None:
            raise SmsConfigError(
                "CALLERID_SMS_WEBHOOK_SECRET is required with CALLERID_SMS_WEBHOOK_URL: the gateway checks the "
                "signature of each code it is asked to send (make one with `callerid sms generate-secret`)"
            )
        try:
            signing.sign(settings.sms_webhook_secret.get_secret_value(), "check", 0, b"")
        except (binascii.Error, ValueError):
            raise SmsConfigError("CALLERID_SMS_WEBHOOK_SECRET must be whsec_ followed by base64") from None
    if settings.device_verifier == "otp" and settings.sms_webhook_url is None and not settings.embedded:
        raise SmsConfigError(
            "CALLERID_DEVICE_VERIFIER=otp (the default) needs CALLERID_SMS_WEBHOOK_URL with PostgreSQL: phones prove "
            "their number with a code sent by SMS, and only the embedded default (SQLite) keeps codes in a "
            "development outbox. Set CALLERID_SMS_WEBHOOK_URL and CALLERID_SMS_WEBHOOK_SECRET, or "
            "CALLERID_DEVICE_VERIFIER=trusted_backend (the app's own server vouches) or none (no proof)"
        )


async def store_in_outbox(session: AsyncSession, sms: Sms) -> None:
    """Keep a development SMS (in the registration's own transaction); the delivery purge drops it after a day."""
    session.add(
        SmsOutbox(
            phone_number=sms.to,
            message=sms.message,
            code=sms.code,
            registration_id=sms.registration_id,
            created_at=clock.now(),
        )
    )


async def send_to_gateway(runtime: Runtime, sms: Sms) -> None:
    """POST the code to the SMS gateway once; raises :class:`SmsFailed` unless it answers 2xx in time."""
    settings = runtime.settings
    url, secret = settings.sms_webhook_url, settings.sms_webhook_secret
    if url is None or secret is None:
        raise SmsFailed("no SMS gateway configured (CALLERID_SMS_WEBHOOK_URL, CALLERID_SMS_WEBHOOK_SECRET)")
    try:
        async with asyncio.timeout(settings.sms_webhook_timeout_seconds):
            result = await runtime.deliverer.send(
                webhook_id=SMS_GATEWAY_ID,
                url=url,
                secrets=secret.get_secret_value(),
                event_id=uuid.uuid4(),
                body=sms.body(),
            )
    except TimeoutError:
        raise SmsFailed(f"no answer within {settings.sms_webhook_timeout_seconds:g} s") from None
    if result.status_code is not None and 200 <= result.status_code < 300:
        return
    raise SmsFailed(result.error or f"HTTP {result.status_code}")


async def list_outbox(session: AsyncSession, *, limit: int, phone_number: str | None = None) -> list[SmsOutbox]:
    """The newest development SMS first."""
    query = select(SmsOutbox).order_by(SmsOutbox.created_at.desc(), SmsOutbox.id).limit(limit)
    if phone_number is not None:
        query = query.where(SmsOutbox.phone_number == phone_number)
    return list((await session.execute(query)).scalars())
