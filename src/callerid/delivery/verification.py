"""Phones prove they own their number before they get a device (issue 14): the verifiers of ``POST /app/v1/devices``.

Without a proof anyone could register any number, evict its phone and receive its caller-ID records. The proof is
chosen by ``CALLERID_DEVICE_VERIFIER``:

- ``otp`` (the default): the request only opens a *pending registration* and a 6-digit code is sent to the number
  by SMS (:mod:`callerid.delivery.sms`). Nothing changes for the number until the code comes back on
  ``POST /app/v1/devices/verify``: only then is the device created and the number's previous device replaced (its
  token deleted, its stream closed), exactly as a direct registration does. A code is valid
  ``device_code_ttl_minutes``; a registration ends after ``device_code_max_tries`` wrong codes (counted over its
  resends, so resending never buys more guesses) or when its code expires. Codes are stored only as a SHA-256
  bound to their registration. Codes sent and wrong codes are also limited per number and per client address with
  the shared :class:`RateLimiter` (Redis in production), so neither SMS flooding nor guessing across registrations
  gets far: 429 with the exact ``Retry-After``.
- ``trusted_backend``: the app vendor's server, which verified the number itself, registers the phone with an
  operator-issued app credential (:mod:`callerid.delivery.app_credentials`); the device is active at once.
- ``none``: no proof (test clients, closed networks); only when set explicitly.
"""

from __future__ import annotations

import hmac
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import structlog
from limits import RateLimitItem, parse
from sqlalchemy import delete, select

from callerid import clock
from callerid.accounts.ratelimit import RateLimiter
from callerid.accounts.secrets import new_sign_in_code, sha256_hex
from callerid.config import Settings
from callerid.delivery import sms
from callerid.delivery.app_credentials import authenticate_credential
from callerid.delivery.models import PendingRegistration
from callerid.delivery.service import RegisteredDevice, check_registration, register_device
from callerid.failures import Gone, InvalidInput, LimitExceeded, NotFound, Unauthorized, Unavailable, UpstreamFailed
from callerid.runtime import Runtime
from callerid.timefmt import iso_z
from callerid.uuids import parse_uuid

log = structlog.get_logger("callerid.delivery.verification")

OTP = "otp"
TRUSTED_BACKEND = "trusted_backend"
NONE = "none"
CODE_SENT = "code_sent"
# An expired registration is kept this long (so that its phone hears "expired" rather than "unknown"), then swept.
EXPIRED_KEPT = timedelta(hours=1)
MISSING_CREDENTIAL = (
    "Missing app credential: on this server phones are registered by the app's own server "
    "(Authorization: Bearer <app credential>)"
)
INVALID_CREDENTIAL = "invalid app credential"


@dataclass(frozen=True)
class CodeSent:
    """The 202 answer of a registration (or resend) waiting for its code."""

    registration_id: uuid.UUID
    expires_at: datetime
    resend_after: datetime
    # Only with the development SMS outbox (no SMS gateway, SQLite): see callerid.delivery.sms.development_outbox.
    demo_code: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "registration_id": str(self.registration_id),
            "status": CODE_SENT,
            "expires_at": iso_z(self.expires_at),
            "resend_after": iso_z(self.resend_after),
        }
        if self.demo_code is not None:
            body["demo_code"] = self.demo_code
        return body


def code_hash(registration_id: uuid.UUID, code: str) -> str:
    """What is stored of a code: bound to its registration, so it confirms nothing else."""
    return sha256_hex(f"device-registration:{registration_id}:{code}")


def registration_ended(message: str) -> Gone:
    return Gone("registration-ended", message)


def _unknown_registration() -> NotFound:
    return NotFound("registration_id is unknown or has ended: register again")


def _no_codes(settings: Settings) -> NotFound:
    return NotFound(f"this server does not send registration codes (device verifier: {settings.device_verifier})")


@lru_cache(maxsize=64)
def _limit(spec: str) -> RateLimitItem:
    return parse(spec)


_Limits = Sequence[tuple[str, str, str]]  # (limit, identity, what the 429 says)


def _send_limits(settings: Settings, number: str, address: str) -> _Limits:
    return (
        (
            settings.device_codes_per_number,
            f"device-codes-number:{number}",
            "phone_number has been sent too many codes",
        ),
        (settings.device_codes_per_address, f"device-codes-address:{address}", "too many codes asked for from here"),
    )


def _failure_limits(settings: Settings, number: str, address: str) -> _Limits:
    return (
        (
            settings.device_code_failures_per_number,
            f"device-code-failures-number:{number}",
            "code: too many wrong codes for this number",
        ),
        (
            settings.device_code_failures_per_address,
            f"device-code-failures-address:{address}",
            "code: too many wrong codes from here",
        ),
    )


async def _refuse_if_over(limiter: RateLimiter, limits: _Limits) -> None:
    """429 with the exact wait when one of ``limits`` is reached already (nothing is counted)."""
    for spec, identity, what in limits:
        wait = await limiter.blocked(_limit(spec), identity)
        if wait is not None:
            raise LimitExceeded(f"{what}: try again in {wait} seconds", retry_after=wait)


async def _count(limiter: RateLimiter, limits: _Limits) -> None:
    for spec, identity, _ in limits:
        await limiter.hit(_limit(spec), identity)


def _require_sender(settings: Settings) -> None:
    # `serve` refuses to start like this (sms.check_startup); an app built directly still must not pretend to send.
    if settings.sms_webhook_url is None and not sms.development_outbox(settings):
        raise Unavailable("sms-not-configured", "registration codes cannot be sent: no SMS gateway is configured")


def _registration_uuid(value: str) -> uuid.UUID:
    parsed = parse_uuid(value)
    if parsed is None:
        raise InvalidInput("registration_id is invalid")
    return parsed


async def start_registration(
    runtime: Runtime, *, phone_number: str, platform: str, app_version: str, client_address: str
) -> CodeSent:
    """Open a pending registration and send its code (``otp``). The number's current device is left alone."""
    settings = runtime.settings
    number = check_registration(phone_number, platform, app_version)
    _require_sender(settings)
    limits = _send_limits(settings, number, client_address)
    await _refuse_if_over(runtime.limiter, limits)
    await _count(runtime.limiter, limits)
    now = clock.now()
    registration_id = uuid.uuid4()
    code = new_sign_in_code()
    expires_at = now + timedelta(minutes=settings.device_code_ttl_minutes)
    message = sms.compose(settings, to=number, code=code, expires_at=expires_at, registration_id=registration_id)
    development = sms.development_outbox(settings)
    async with runtime.db.transaction() as session:
        session.add(
            PendingRegistration(
                id=registration_id,
                phone_number=number,
                platform=platform,
                app_version=app_version,
                code_hash=code_hash(registration_id, code),
                code_sent_at=now,
                expires_at=expires_at,
                tries=0,
                codes_sent=1,
                created_at=now,
            )
        )
        if development:
            await sms.store_in_outbox(session, message)
    if not development:
        await _send_or_end(runtime, message)
    return CodeSent(registration_id, expires_at, _resend_after(settings, now), code if development else None)


async def resend_code(runtime: Runtime, *, registration_id: str, client_address: str) -> CodeSent:
    """A new code for a pending registration (the previous one stops working); its tries are not reset."""
    settings = runtime.settings
    if settings.device_verifier != OTP:
        raise _no_codes(settings)
    rid = _registration_uuid(registration_id)
    _require_sender(settings)
    development = sms.development_outbox(settings)
    now = clock.now()
    expired = False
    async with runtime.db.transaction() as session:
        row = await session.get(PendingRegistration, rid, with_for_update=True)
        if row is None:
            raise _unknown_registration()
        if row.expires_at <= now:
            await session.delete(row)
            expired = True
        else:
            wait = (row.code_sent_at + timedelta(seconds=settings.device_code_resend_seconds) - now).total_seconds()
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                raise LimitExceeded(f"a code was just sent: ask for another in {seconds} seconds", retry_after=seconds)
            limits = _send_limits(settings, row.phone_number, client_address)
            await _refuse_if_over(runtime.limiter, limits)
            await _count(runtime.limiter, limits)
            code = new_sign_in_code()
            row.code_hash = code_hash(row.id, code)
            row.code_sent_at = now
            row.expires_at = now + timedelta(minutes=settings.device_code_ttl_minutes)
            row.codes_sent += 1
            message = sms.compose(
                settings, to=row.phone_number, code=code, expires_at=row.expires_at, registration_id=rid
            )
            if development:
                await sms.store_in_outbox(session, message)
            expires_at = row.expires_at
    if expired:
        raise registration_ended("registration_id has expired: register again")
    if not development:
        await _send_or_end(runtime, message)
    return CodeSent(rid, expires_at, _resend_after(settings, now), code if development else None)


async def confirm_code(runtime: Runtime, *, registration_id: str, code: str, client_address: str) -> RegisteredDevice:
    """Check the code of a pending registration; when right, register the device (replacing the number's previous
    one). A wrong code counts a try and says how many are left; the last try, or an expired code, ends it."""
    settings = runtime.settings
    if settings.device_verifier != OTP:
        raise _no_codes(settings)
    rid = _registration_uuid(registration_id)
    async with runtime.db.session() as reader:
        number = await reader.scalar(select(PendingRegistration.phone_number).where(PendingRegistration.id == rid))
    if number is None:
        raise _unknown_registration()
    failure_limits = _failure_limits(settings, number, client_address)
    await _refuse_if_over(runtime.limiter, failure_limits)
    code = code.strip().replace(" ", "")
    now = clock.now()
    async with runtime.db.transaction() as session:
        row = await session.get(PendingRegistration, rid, with_for_update=True)
        if row is None:
            raise _unknown_registration()
        if row.expires_at <= now:
            await session.delete(row)
            outcome = "expired"
        elif _matches(row, code):
            await session.delete(row)
            await session.flush()
            return await register_device(
                session, phone_number=row.phone_number, platform=row.platform, app_version=row.app_version
            )
        else:
            row.tries += 1
            left = settings.device_code_max_tries - row.tries
            outcome = "wrong" if left > 0 else "ended"
            if left <= 0:
                await session.delete(row)
    if outcome == "expired":
        raise registration_ended("registration_id has expired: register again")
    await _count(runtime.limiter, failure_limits)
    if outcome == "ended":
        raise registration_ended(
            f"code was wrong {settings.device_code_max_tries} times: registration_id has ended, register again"
        )
    raise InvalidInput(f"code is not right ({left} {'tries' if left != 1 else 'try'} left)")


def _matches(row: PendingRegistration, code: str) -> bool:
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return False
    return hmac.compare_digest(row.code_hash, code_hash(row.id, code))


def _resend_after(settings: Settings, sent_at: datetime) -> datetime:
    return sent_at + timedelta(seconds=settings.device_code_resend_seconds)


async def _send_or_end(runtime: Runtime, message: sms.Sms) -> None:
    """Hand the code to the SMS gateway; if it fails the registration ends (nothing was registered) and 502."""
    try:
        await sms.send_to_gateway(runtime, message)
    except sms.SmsFailed as exc:
        log.warning("device_code_not_sent", registration_id=str(message.registration_id), error=str(exc))
        async with runtime.db.transaction() as session:
            await session.execute(delete(PendingRegistration).where(PendingRegistration.id == message.registration_id))
        raise UpstreamFailed(
            "sms-not-sent", "the code could not be sent by SMS and nothing was registered: try again later"
        ) from None


async def check_credential(runtime: Runtime, credential: str | None) -> None:
    """401 unless ``credential`` is an active app credential (``trusted_backend``)."""
    if credential is None:
        raise Unauthorized(MISSING_CREDENTIAL)
    async with runtime.db.session() as session:
        if await authenticate_credential(session, credential) is None:
            raise Unauthorized(INVALID_CREDENTIAL)


async def register_vouched(
    runtime: Runtime, *, credential: str | None, phone_number: str, platform: str, app_version: str
) -> RegisteredDevice:
    """Register at once a number the app's own server vouches for (``trusted_backend``)."""
    if credential is None:
        raise Unauthorized(MISSING_CREDENTIAL)
    async with runtime.db.transaction() as session:
        if await authenticate_credential(session, credential) is None:
            raise Unauthorized(INVALID_CREDENTIAL)
        return await register_device(session, phone_number=phone_number, platform=platform, app_version=app_version)
