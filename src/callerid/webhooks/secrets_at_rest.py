"""Webhook signing secrets at rest: sealed with the operator's key in ``webhooks.secret`` / ``previous_secret``.

A signing secret must be used in clear (HMAC), so it cannot be hashed; it is encrypted with
``CALLERID_SECRET_KEY`` (see :mod:`callerid.secretbox`) and bound to its webhook's id, so that a value copied
into another webhook's row does not decrypt there. Everything that writes those columns seals here, and
everything that signs opens here: the columns never hold (and nothing reads them as) a clear secret, except
legacy rows written before encryption, until :func:`reencrypt_all` (``callerid secret-key rotate``) or the
migration re-encrypts them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import secretbox
from callerid.config import Settings
from callerid.db import Database
from callerid.webhooks import signing
from callerid.webhooks.models import WebhookConfig

DEFAULT_CHUNK_SIZE = 500
# A row changed by a secret rotation while being re-encrypted is read again this many times at most.
MAX_CHANGED_RETRIES = 3


class StoredSecrets(Protocol):
    """What signing needs of a webhook: a ``WebhookConfig`` or the delivery path's ``WebhookRow``."""

    id: uuid.UUID
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None


def associated_data(webhook_id: uuid.UUID) -> bytes:
    """What a webhook's secret is bound to: its webhook's id."""
    return b"webhooks.secret:" + str(webhook_id).encode()


def seal(settings: Settings, webhook_id: uuid.UUID, secret: str) -> str:
    """The stored form of a clear ``whsec_`` secret of this webhook."""
    return secretbox.keyring_for(settings).encrypt(secret, associated_data(webhook_id))


def unseal(settings: Settings, webhook_id: uuid.UUID, stored: str) -> str:
    """The clear secret of a stored value; raises :class:`secretbox.DecryptionError`."""
    return secretbox.keyring_for(settings).decrypt(stored, associated_data(webhook_id))


def resealed(settings: Settings, webhook_id: uuid.UUID, stored: str) -> str | None:
    """``stored`` encrypted with the current key (a secret kept as the previous one after a rotation), or None
    when it no longer decrypts: a secret nobody can sign with is not worth keeping."""
    keyring = secretbox.keyring_for(settings)
    try:
        return keyring.rotate(stored, associated_data(webhook_id)) or stored
    except secretbox.DecryptionError:
        return None


def signing_secrets(settings: Settings, webhook: StoredSecrets, now: datetime) -> list[str]:
    """The clear secrets a delivery is signed with now: the current one, and the previous one until it expires."""
    stored = signing.active_secrets(webhook.secret, webhook.previous_secret, webhook.previous_secret_expires_at, now)
    return [unseal(settings, webhook.id, value) for value in stored]


# --- rotation: re-encrypt everything with the first key -----------------------------------------------------


@dataclass
class ReencryptCounts:
    webhooks: int = 0  # rows looked at
    reencrypted: int = 0  # values rewritten with the first key
    were_clear_text: int = 0  # of those, legacy values that were stored in clear
    already_current: int = 0  # values already encrypted with the first key

    def as_json(self, key_id: str) -> dict[str, Any]:
        return {
            "key_id": key_id,
            "webhooks": self.webhooks,
            "secrets_reencrypted": self.reencrypted,
            "secrets_were_clear_text": self.were_clear_text,
            "secrets_already_current": self.already_current,
        }


class ReencryptError(Exception):
    """A stored secret does not decrypt with any configured key; the message names the webhook."""


def _rotated(
    keyring: secretbox.Keyring, webhook_id: uuid.UUID, stored: str | None, counts: ReencryptCounts
) -> str | None:
    """The new value of one column (None: unchanged), counted."""
    if stored is None:
        return None
    try:
        new = keyring.rotate(stored, associated_data(webhook_id))
    except secretbox.DecryptionError as exc:
        raise ReencryptError(f"webhook {webhook_id}: its signing secret cannot be decrypted: {exc}") from None
    if new is None:
        counts.already_current += 1
    else:
        counts.reencrypted += 1
        counts.were_clear_text += not secretbox.is_encrypted(stored)
    return new


async def _reencrypt_row(
    session: AsyncSession, keyring: secretbox.Keyring, webhook_id: uuid.UUID, secret: str, previous: str | None
) -> ReencryptCounts:
    """Re-encrypt one webhook's values (compare and set); a row changed meanwhile is read again."""
    table = WebhookConfig.__table__
    for _ in range(MAX_CHANGED_RETRIES):
        counts = ReencryptCounts(webhooks=1)
        new_secret = _rotated(keyring, webhook_id, secret, counts)
        new_previous = _rotated(keyring, webhook_id, previous, counts)
        if new_secret is None and new_previous is None:
            return counts
        written = await session.execute(
            update(table)
            .where(
                table.c.id == webhook_id,
                table.c.secret == secret,
                table.c.previous_secret.is_not_distinct_from(previous),
            )
            .values(secret=new_secret or secret, previous_secret=new_previous or previous)
        )
        if written.rowcount == 1:  # type: ignore[attr-defined]
            return counts
        current = (
            await session.execute(select(table.c.secret, table.c.previous_secret).where(table.c.id == webhook_id))
        ).first()
        if current is None:
            return ReencryptCounts()  # deleted meanwhile
        secret, previous = current
    raise ReencryptError(f"webhook {webhook_id} kept changing during the rotation; run it again")


async def reencrypt_all(db: Database, settings: Settings, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ReencryptCounts:
    """Re-encrypt every stored webhook secret with the first key of ``CALLERID_SECRET_KEY``.

    Idempotent (values already under the first key are left alone) and in bounded chunks: ``chunk_size``
    webhooks per transaction, walked in id order, so a large table neither holds a long lock nor fills memory.
    Each row is written only if it still holds the values read (compare and set), so a secret rotated meanwhile
    by a serving process is never overwritten with the old one; such a row is read again.
    """
    keyring = secretbox.keyring_for(settings)
    table = WebhookConfig.__table__
    total = ReencryptCounts()
    after: uuid.UUID | None = None
    while True:
        query = select(table.c.id, table.c.secret, table.c.previous_secret).order_by(table.c.id).limit(chunk_size)
        if after is not None:
            query = query.where(table.c.id > after)
        async with db.transaction() as session:
            rows = (await session.execute(query)).all()
            for webhook_id, secret, previous in rows:
                counts = await _reencrypt_row(session, keyring, webhook_id, secret, previous)
                total.webhooks += counts.webhooks
                total.reencrypted += counts.reencrypted
                total.were_clear_text += counts.were_clear_text
                total.already_current += counts.already_current
        if len(rows) < chunk_size:
            return total
        after = rows[-1][0]
