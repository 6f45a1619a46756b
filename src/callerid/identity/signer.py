"""Signing keys and PASSporT call assertions (RFC 8225 with the RFC 9795 ``rcd`` extension), ES256.

Keys live in the database so every process signs with the same key and serves the same JWKS. Each
process caches the active key and re-reads it every ``KEY_REFRESH_SECONDS``; that bounds how long a
process can keep signing with a key another process has just retired, and the JWKS keeps a retired key
until every assertion it can have signed has expired (retired_at + grace + assertion lifetime).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import orjson
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.db.write import lock_session
from callerid.identity.models import SigningKey
from callerid.identity.signing_worker import SigningWorker, raw_signature
from callerid.timefmt import iso_z

log = structlog.get_logger("callerid.identity.signer")

ALGORITHM = "ES256"
KEY_REFRESH_SECONDS = 10.0
# How long after retirement a process may still sign with a retired key: its cache age plus a generous bound
# on the re-read itself. Retired keys stay published for this plus the assertion lifetime.
_KEY_REFRESH = timedelta(seconds=KEY_REFRESH_SECONDS)
RETIRED_SIGNING_GRACE_SECONDS = KEY_REFRESH_SECONDS + 60.0
# Serialises first-key creation between processes (Database.lock).
_KEYS_LOCK = "signing-keys"


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    private_key_pem: str  # for the signing helper process (identity.signing_worker)

    @cached_property
    def header_segment(self) -> bytes:
        """The JWS protected header of every assertion this key signs, base64url-encoded once."""
        header = {"alg": ALGORITHM, "kid": self.kid, "ppt": "rcd", "typ": "passport"}
        return _b64url(orjson.dumps(header, option=orjson.OPT_SORT_KEYS)).encode()


@dataclass(frozen=True)
class Rotation:
    kid: str
    retired: list[str]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(private_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    jwk: dict[str, Any] = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    # RFC 7638 thumbprint as the key id: stable, derived from the key itself, unique in practice.
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    kid = _b64url(hashlib.sha256(canonical.encode()).digest())
    return {"kty": "EC", "crv": jwk["crv"], "x": jwk["x"], "y": jwk["y"], "use": "sig", "alg": ALGORITHM, "kid": kid}


def new_signing_key() -> SigningKey:
    private_key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(private_key)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SigningKey(kid=jwk["kid"], private_key_pem=pem, public_jwk=jwk, created_at=clock.now(), retired_at=None)


def _load_private(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _active_query() -> Any:
    return (
        select(SigningKey.kid, SigningKey.private_key_pem)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc(), SigningKey.kid)
        .limit(1)
    )


async def _lock_keys(session: AsyncSession) -> None:
    await lock_session(session, _KEYS_LOCK)


async def ensure_active_key(session: AsyncSession) -> str:
    """The active key's kid, creating the first key if there is none. Run inside ``db.transaction()``."""
    await _lock_keys(session)
    row = (await session.execute(_active_query())).first()
    if row is not None:
        return str(row.kid)
    key = new_signing_key()
    session.add(key)
    await session.flush()
    return key.kid


async def rotate_keys(session: AsyncSession) -> Rotation:
    """Retire the active key(s) and make a new one active. Run inside ``db.transaction()``."""
    await _lock_keys(session)
    retired = list((await session.execute(select(SigningKey.kid).where(SigningKey.retired_at.is_(None)))).scalars())
    now = clock.now()
    if retired:
        await session.execute(update(SigningKey).where(SigningKey.kid.in_(retired)).values(retired_at=now))
    key = new_signing_key()
    session.add(key)
    await session.flush()
    return Rotation(kid=key.kid, retired=sorted(retired))


def publication_cutoff(settings: Settings, now: datetime) -> datetime:
    """Keys retired before this can no longer have an unexpired assertion out there."""
    return now - timedelta(seconds=settings.assertion_ttl_seconds + RETIRED_SIGNING_GRACE_SECONDS)


async def jwks(session: AsyncSession, settings: Settings) -> dict[str, Any]:
    """The public keys that verify every unexpired assertion: active ones, then recently retired ones."""
    cutoff = publication_cutoff(settings, clock.now())
    rows = (
        await session.execute(
            select(SigningKey.public_jwk)
            .where(or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > cutoff))
            .order_by(SigningKey.retired_at.is_not(None), SigningKey.created_at.desc(), SigningKey.kid)
        )
    ).scalars()
    return {"keys": [dict(jwk) for jwk in rows]}


async def list_keys(session: AsyncSession, settings: Settings) -> list[dict[str, Any]]:
    cutoff = publication_cutoff(settings, clock.now())
    rows = (await session.execute(select(SigningKey).order_by(SigningKey.created_at.desc(), SigningKey.kid))).scalars()
    return [
        {
            "kid": key.kid,
            "created_at": iso_z(key.created_at),
            "retired_at": iso_z(key.retired_at) if key.retired_at is not None else None,
            "active": key.retired_at is None,
            "published": key.retired_at is None or key.retired_at > cutoff,
        }
        for key in rows
    ]


class Signer:
    """Process-wide (``Runtime.signer``): caches the active signing key and signs PASSporTs with it.

    A stale key is still used while one background task re-reads it (stale-while-revalidate): requests never
    wait for the database here except on a cold start, so a request holding a pooled connection can never
    queue behind another that needs a second one (which exhausts the pool under load).
    """

    def __init__(self, db: Database, settings: Settings):
        self._db = db
        self._settings = settings
        self._worker = SigningWorker() if settings.signing_process else None
        self._key: ActiveKey | None = None
        self._loaded_at: datetime | None = None
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None

    async def prepare(self) -> str:
        """Make sure a signing key exists (first start). Not cached: the next ``sign`` reads it fresh."""
        async with self._db.transaction() as session:
            return await ensure_active_key(session)

    def invalidate(self) -> None:
        self._key = None

    def _fresh(self, now: datetime) -> bool:
        if self._loaded_at is None:
            return False
        return self._loaded_at <= now < self._loaded_at + _KEY_REFRESH

    async def active_key(self, now: datetime | None = None) -> ActiveKey:
        key = self._key
        if key is not None:
            if not self._fresh(now or clock.now()) and (self._refreshing is None or self._refreshing.done()):
                self._refreshing = asyncio.create_task(self._refresh(), name="signer-refresh")
            return key
        async with self._lock:  # cold start: one loader, everyone else waits for it
            if self._key is None:
                await self._refresh()
            assert self._key is not None
            return self._key

    async def _refresh(self) -> None:
        try:
            self._key = await self._load()
            self._loaded_at = clock.now()
        except Exception:
            if self._key is None:
                raise
            log.warning("signing_key_refresh_failed", exc_info=True)  # keep signing with the cached key

    async def wait_refreshed(self) -> None:
        """Wait for a background re-read in progress, if any (tests; shutdown)."""
        if self._refreshing is not None:
            await self._refreshing

    async def _load(self) -> ActiveKey:
        async with self._db.session() as session:
            row = (await session.execute(_active_query())).first()
        if row is None:
            async with self._db.transaction() as session:
                await ensure_active_key(session)
            async with self._db.session() as session:
                row = (await session.execute(_active_query())).one()
        return ActiveKey(
            kid=str(row.kid), private_key=_load_private(row.private_key_pem), private_key_pem=row.private_key_pem
        )

    async def sign(self, claims: dict[str, Any], now: datetime | None = None) -> str:
        """A PASSporT of ``claims`` with the active key (the signature made in the helper process when enabled)."""
        key = await self.active_key(now)
        data = signing_input(key, claims)
        signature = (
            await self._worker.sign(key, data) if self._worker is not None else raw_signature(key.private_key, data)
        )
        return f"{data.decode()}.{_b64url(signature)}"

    async def stop(self) -> None:
        if self._worker is not None:
            await self._worker.stop()


def signing_input(key: ActiveKey, claims: dict[str, Any]) -> bytes:
    """The JWS signing input (RFC 7515 §5.1) of a PASSporT: header and claims, base64url, in the canonical form
    RFC 8225 §9 asks of PASSporTs (keys sorted, no whitespace).

    Written out rather than with ``jwt.encode``: on the caller-ID hot path PyJWT's generic header handling and
    DER-to-raw conversion cost about as much again as the signature itself.
    """
    return key.header_segment + b"." + _b64url(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS)).encode()


def passport_claims(
    settings: Settings, *, caller: str, receiver: str, name: str, logo_url: str, call_reason: str | None, iat: int
) -> dict[str, Any]:
    """PASSporT claims for one call: RFC 8225 ``orig``/``dest``/``iat`` and the RFC 9795 rich call data.

    ``crn`` (call reason) is its own top-level claim in RFC 9795, not a member of ``rcd``: the IANA
    "PASSporT RCD Claim Types" registry holds only nam, apn, icn, jcd and jcl.
    """
    claims: dict[str, Any] = {
        "orig": {"tn": caller},
        "dest": {"tn": [receiver]},
        "iat": iat,
        "exp": iat + settings.assertion_ttl_seconds,
        "rcd": {"nam": name, "icn": logo_url},
    }
    if call_reason is not None:
        claims["crn"] = call_reason
    return claims
