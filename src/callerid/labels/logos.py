"""Where logos' bytes live: the ``LogoStore`` seam, a database store (the default) and an S3-compatible one.

A logo is content-addressed: its key is the SHA-256 of its bytes (hex), so every process on the database can serve
every logo (none lives on one host's disk), one image used by several labels is stored once, and a logo that changes
gets a new key, hence a new URL that may be cached for good. The serving route (``GET /logos/<key>.png``) gives the
key as a strong ETag.

Either store keeps one ``label_logos`` row per image, written inside the caller's write transaction together with the
label that references it (the label's foreign key keeps a referenced logo from being deleted); the database store
keeps the bytes in the row, the S3 store in an object named in the row. Logos no label references any more are
purged by ``callerid.labels.jobs``: the rows, then (``sweep``) the objects no row names.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Protocol

import structlog
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.db.write import OnConflict
from callerid.labels.models import LabelLogo

log = structlog.get_logger("callerid.labels.logos")

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


class LogoStoreError(Exception):
    """The configured logo store cannot be used (a missing library)."""


class LogoStore(Protocol):
    """Logo bytes by content key. ``put`` runs inside the caller's write transaction (it must leave a
    ``label_logos`` row for the key, which the label's foreign key points at); ``get`` and ``exists`` read on their
    own; ``sweep`` deletes what the store keeps outside the database for rows that are gone."""

    async def put(self, session: AsyncSession, data: bytes, media_type: str = PNG) -> str: ...

    async def get(self, db: Database, key: str) -> StoredLogo | None: ...

    async def exists(self, db: Database, key: str) -> bool: ...

    async def sweep(self, db: Database, *, older_than: datetime) -> int: ...


def _upsert(insert: Any) -> Any:
    """INSERT of a logo row that, when the key is already stored, locks the stored row instead (a no-op update).

    The lock matters on PostgreSQL: the purge of unreferenced logos takes its rows ``FOR UPDATE SKIP LOCKED``, so it
    passes over a row that a label being created now is about to reference; and if the purge got there first and
    deletes the row, the upsert waits for it and then inserts the row again. (SQLite's writers take turns.)
    """
    statement = insert(LabelLogo).values(
        key=bindparam("key"),
        media_type=bindparam("media_type"),
        size=bindparam("size"),
        data=bindparam("data"),
        created_at=bindparam("created_at"),
    )
    # The bytes go in too when the row has none (it was stored in the object store before the operator went back
    # to the database store).
    return statement.on_conflict_do_update(
        index_elements=[_LOGOS.c.key],
        set_={
            "media_type": statement.excluded.media_type,
            "data": func.coalesce(_LOGOS.c.data, statement.excluded.data),
        },
    )


def _insert_if_absent(insert: Any) -> Any:
    """INSERT of a row naming an object; nothing when the key is stored already (its key RETURNed otherwise)."""
    statement = insert(LabelLogo).values(
        key=bindparam("key"),
        media_type=bindparam("media_type"),
        size=bindparam("size"),
        object_name=bindparam("object_name"),
        created_at=bindparam("created_at"),
    )
    return statement.on_conflict_do_nothing(index_elements=[_LOGOS.c.key]).returning(_LOGOS.c.key)


_UPSERT = OnConflict(_upsert)
_INSERT_IF_ABSENT = OnConflict(_insert_if_absent)
_GET = select(_LOGOS.c.media_type, _LOGOS.c.data, _LOGOS.c.object_name).where(_LOGOS.c.key == bindparam("key"))
_EXISTS = select(_LOGOS.c.key).where(_LOGOS.c.key == bindparam("key"))
# Locks the row of an image already stored (PostgreSQL; SQLite's writers take turns), see ``_upsert``.
_LOCK = select(_LOGOS.c.key).where(_LOGOS.c.key == bindparam("key")).with_for_update()


class DatabaseLogoStore:
    """Logos as rows of ``label_logos`` in the application's database (the default, and the only store so far)."""

    async def put(self, session: AsyncSession, data: bytes, media_type: str = PNG) -> str:
        key = content_key(data)
        values = {"key": key, "media_type": media_type, "size": len(data), "data": data, "created_at": clock.now()}
        await session.execute(_UPSERT.of(session), values)
        return key

    async def get(self, db: Database, key: str) -> StoredLogo | None:
        row = await _row(db, key)
        if row is None or row.data is None:
            return None
        return StoredLogo(key, row.media_type, row.data)

    async def exists(self, db: Database, key: str) -> bool:
        return await _exists(db, key)

    async def sweep(self, db: Database, *, older_than: datetime) -> int:
        return 0  # the bytes go with their rows


async def _row(db: Database, key: str) -> Any:
    if not is_content_key(key):
        return None
    async with db.session() as session:
        return (await session.execute(_GET, {"key": key})).first()


async def _exists(db: Database, key: str) -> bool:
    if not is_content_key(key):
        return False
    async with db.session() as session:
        return (await session.execute(_EXISTS, {"key": key})).first() is not None


class S3LogoStore:
    """Logos as objects of an S3-compatible store (AWS S3, MinIO, Ceph, R2...), with one ``label_logos`` row each.

    An object is named ``<prefix><key>-<random>.png``, unique to its row: when a purged image is uploaded again it
    gets a new object, so the sweep (which deletes objects no row names, once older than the purge's grace period)
    never races with an upload. The object is written before its row, inside the label's transaction (an object
    whose transaction then fails is swept later). Rows that hold the bytes themselves (moved in from files by
    migration 0015, or stored while the database store was configured) are served from the row. boto3 is
    synchronous: each call runs in a thread.
    """

    def __init__(self, bucket: str, *, endpoint_url: str | None, region: str | None, prefix: str):
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - the s3 extra is installed with the test extra
            raise LogoStoreError("CALLERID_LOGO_STORE=s3 needs boto3: pip install 'callerid[s3]'") from exc
        config = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3, "mode": "standard"})
        self.bucket = bucket
        self.prefix = prefix
        self._client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)

    async def put(self, session: AsyncSession, data: bytes, media_type: str = PNG) -> str:
        key = content_key(data)
        if (await session.execute(_LOCK, {"key": key})).first() is not None:
            return key  # stored already (and now held against the purge until this transaction ends)
        name = f"{self.prefix}{key}-{uuid.uuid4().hex}.png"
        await asyncio.to_thread(
            self._client.put_object, Bucket=self.bucket, Key=name, Body=data, ContentType=media_type
        )
        values = {"key": key, "media_type": media_type, "size": len(data), "object_name": name}
        inserted = await session.execute(_INSERT_IF_ABSENT.of(session), {**values, "created_at": clock.now()})
        if inserted.first() is None:  # another upload of the same image stored it meanwhile: theirs is kept
            await asyncio.to_thread(self._delete, [name])
        return key

    async def get(self, db: Database, key: str) -> StoredLogo | None:
        row = await _row(db, key)
        if row is None:
            return None
        if row.data is not None:
            return StoredLogo(key, row.media_type, row.data)
        if row.object_name is None:
            return None
        data = await asyncio.to_thread(self._read, row.object_name)
        if data is None:
            log.error("logo_object_missing", key=key, object_name=row.object_name, bucket=self.bucket)
            return None
        return StoredLogo(key, row.media_type, data)

    async def exists(self, db: Database, key: str) -> bool:
        return await _exists(db, key)

    async def sweep(self, db: Database, *, older_than: datetime) -> int:
        """Delete the objects under the prefix that no row names and that are older than ``older_than``."""
        async with db.session() as session:
            named = set(
                (await session.scalars(select(_LOGOS.c.object_name).where(_LOGOS.c.object_name.is_not(None)))).all()
            )
        stale = await asyncio.to_thread(self._unnamed, named, older_than)
        if stale:
            await asyncio.to_thread(self._delete, stale)
            log.info("logo_objects_swept", count=len(stale), bucket=self.bucket)
        return len(stale)

    # --- boto3 (in a thread) ---------------------------------------------------------------------------------

    def _read(self, name: str) -> bytes | None:
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=name)
        except self._client.exceptions.NoSuchKey:
            return None
        body = answer["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def _unnamed(self, named: set[str], older_than: datetime) -> list[str]:
        stale = []
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                if item["Key"] not in named and item["LastModified"] < older_than:
                    stale.append(item["Key"])
        return stale

    def _delete(self, names: Iterable[str]) -> None:
        names = list(names)
        for start in range(0, len(names), 1000):  # DeleteObjects takes at most 1,000 names
            chunk = names[start : start + 1000]
            self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": name} for name in chunk], "Quiet": True}
            )


_DATABASE_STORE = DatabaseLogoStore()


@cache
def _s3_store(bucket: str, endpoint_url: str | None, region: str | None, prefix: str) -> S3LogoStore:
    return S3LogoStore(bucket, endpoint_url=endpoint_url, region=region, prefix=prefix)


def logo_store(settings: Settings) -> LogoStore:
    """The configured logo store (``CALLERID_LOGO_STORE``; one per configuration, made once)."""
    if settings.logo_store == "s3":
        assert settings.logo_s3_bucket is not None  # Settings refuses s3 without a bucket
        return _s3_store(
            settings.logo_s3_bucket, settings.logo_s3_endpoint_url, settings.logo_s3_region, settings.logo_s3_prefix
        )
    return _DATABASE_STORE
