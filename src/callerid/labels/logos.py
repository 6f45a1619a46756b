"""Where logos' bytes live: the ``LogoStore`` seam and its database implementation.

A logo is content-addressed: its key is the SHA-256 of its bytes (hex), so every process on the database can serve
every logo (none lives on one host's disk), one image used by several labels is stored once, and a logo that changes
gets a new key, hence a new URL that may be cached for good. The serving route (``GET /logos/<key>.png``) gives the
key as a strong ETag.

The store is written to inside the caller's write transaction, together with the label that references it (the
label's foreign key keeps a referenced logo from being deleted); logos no label references any more are purged by
``callerid.labels.jobs``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.labels.models import LabelLogo

PNG = "image/png"
_KEY = re.compile(r"^[0-9a-f]{64}$")
_LOGOS = LabelLogo.__table__


def content_key(data: bytes) -> str:
    """The key of a logo: the SHA-256 of its bytes, 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def is_content_key(value: str) -> bool:
    return _KEY.fullmatch(value) is not None


@dataclass(frozen=True)
class StoredLogo:
    key: str
    media_type: str
    data: bytes


class LogoStore(Protocol):
    """Logo bytes by content key. ``put`` runs inside the caller's write transaction (it must leave a
    ``label_logos`` row for the key, which the label's foreign key points at); ``get`` reads on its own."""

    async def put(self, session: AsyncSession, data: bytes, media_type: str = PNG) -> str: ...

    async def get(self, db: Database, key: str) -> StoredLogo | None: ...

    async def exists(self, db: Database, key: str) -> bool: ...


def _upsert(dialect: str) -> Any:
    """INSERT of a logo row that, when the key is already stored, locks the stored row instead (a no-op update).

    The lock matters on PostgreSQL: the purge of unreferenced logos takes its rows ``FOR UPDATE SKIP LOCKED``, so it
    passes over a row that a label being created now is about to reference; and if the purge got there first and
    deletes the row, the upsert waits for it and then inserts the row again. (SQLite's writers take turns.)
    """
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(LabelLogo).values(
        key=bindparam("key"),
        media_type=bindparam("media_type"),
        size=bindparam("size"),
        data=bindparam("data"),
        created_at=bindparam("created_at"),
    )
    return statement.on_conflict_do_update(
        index_elements=[_LOGOS.c.key], set_={"media_type": statement.excluded.media_type}
    )


_UPSERTS = {dialect: _upsert(dialect) for dialect in ("postgresql", "sqlite")}
_GET = select(_LOGOS.c.media_type, _LOGOS.c.data).where(_LOGOS.c.key == bindparam("key"))
_EXISTS = select(_LOGOS.c.key).where(_LOGOS.c.key == bindparam("key"))


class DatabaseLogoStore:
    """Logos as rows of ``label_logos`` in the application's database (the default, and the only store so far)."""

    async def put(self, session: AsyncSession, data: bytes, media_type: str = PNG) -> str:
        key = content_key(data)
        values = {"key": key, "media_type": media_type, "size": len(data), "data": data, "created_at": clock.now()}
        await session.execute(_UPSERTS[session.bind.dialect.name], values)
        return key

    async def get(self, db: Database, key: str) -> StoredLogo | None:
        if not is_content_key(key):
            return None
        async with db.session() as session:
            row = (await session.execute(_GET, {"key": key})).first()
        return None if row is None else StoredLogo(key, row.media_type, row.data)

    async def exists(self, db: Database, key: str) -> bool:
        if not is_content_key(key):
            return False
        async with db.session() as session:
            return (await session.execute(_EXISTS, {"key": key})).first() is not None


_DATABASE_STORE = DatabaseLogoStore()


def logo_store(settings: Settings) -> LogoStore:
    """The configured logo store (the database; see the README on object stores)."""
    return _DATABASE_STORE
