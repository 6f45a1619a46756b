"""App credentials (``device_verifier=trusted_backend``): an app vendor's server vouches for a phone's number.

An app that verifies numbers itself registers its phones from its own server, with
``Authorization: Bearer <app credential>`` on ``POST /app/v1/devices``. The operator issues and revokes the
credentials (``callerid app-credentials create|list|revoke``); each has a name, and only its SHA-256 is stored
(a long random value, like an API-key secret, so a fast hash is the right one).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.accounts.secrets import sha256_hex
from callerid.delivery.models import AppCredential
from callerid.display_text import is_displayable
from callerid.failures import InvalidInput, NotFound
from callerid.timefmt import iso_z

PREFIX = "appc_"
NAME_MAX = 100


@dataclass(frozen=True)
class IssuedCredential:
    credential: AppCredential
    secret: str  # shown once


def new_credential() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def credential_json(row: AppCredential) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "name": row.name,
        "status": "revoked" if row.revoked_at is not None else "active",
        "created_at": iso_z(row.created_at),
        "revoked_at": iso_z(row.revoked_at) if row.revoked_at is not None else None,
    }


async def create_credential(session: AsyncSession, name: str) -> IssuedCredential:
    """A new credential named ``name`` (unique among the active ones). Run inside ``db.transaction()``."""
    name = name.strip()
    if not name or len(name) > NAME_MAX or not is_displayable(name):
        raise InvalidInput(f"name must be 1-{NAME_MAX} printable characters")
    taken = await session.scalar(
        select(AppCredential.id).where(AppCredential.name == name, AppCredential.revoked_at.is_(None)).limit(1)
    )
    if taken is not None:
        raise InvalidInput(f"name {name!r} is already used by an active app credential")
    secret = new_credential()
    row = AppCredential(id=uuid.uuid4(), name=name, token_hash=sha256_hex(secret), created_at=clock.now())
    session.add(row)
    await session.flush()
    return IssuedCredential(row, secret)


async def list_credentials(session: AsyncSession) -> list[AppCredential]:
    return list((await session.execute(select(AppCredential).order_by(AppCredential.created_at))).scalars())


async def revoke_credential(session: AsyncSession, ref: str) -> AppCredential:
    """Revoke the active credential with this id or name (the id when both match). Run inside a transaction."""
    ref = ref.strip()
    try:
        by_id = await session.get(AppCredential, uuid.UUID(ref))
    except ValueError:
        by_id = None
    row = by_id or await session.scalar(
        select(AppCredential).where(AppCredential.name == ref, AppCredential.revoked_at.is_(None)).limit(1)
    )
    if row is None:
        raise NotFound(f"no app credential has the id or name {ref!r}")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        await session.flush()
    return row


async def authenticate_credential(session: AsyncSession, secret: str | None) -> AppCredential | None:
    """The active credential whose secret this is, or None."""
    if not secret:
        return None
    row = await session.scalar(select(AppCredential).where(AppCredential.token_hash == sha256_hex(secret)))
    if row is None or row.revoked_at is not None:
        return None
    return row
