"""Logo files of versions before migration 0015 (``<data dir>/logos/<uuid>-<nanoseconds>.png``) moved into the
database.

Used by migration 0015 (on the host that runs it) and by ``callerid labels import-logos`` (on every other host that
received uploads): each label whose logo is still missing (``logo_key`` NULL) and that had a file
(``legacy_logo_key``) gets the file's bytes as its logo when this host has the file. Written against plain table
definitions and a synchronous connection, so that the migration keeps working whatever the models become.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from callerid.db.base import UtcDateTime

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 2 * 1024 * 1024  # the logo limit (labels.service.LOGO_MAX_BYTES): anything larger was never uploaded
LEGACY_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-[0-9]{1,20}\.png$")

labels_table = sa.table(
    "labels",
    sa.column("id", sa.Uuid()),
    sa.column("logo_key", sa.String()),
    sa.column("legacy_logo_key", sa.String()),
)
logos_table = sa.table(
    "label_logos",
    sa.column("key", sa.String()),
    sa.column("media_type", sa.String()),
    sa.column("size", sa.Integer()),
    sa.column("data", sa.LargeBinary()),
    sa.column("created_at", UtcDateTime()),
)


@dataclass
class MoveResult:
    moved: int = 0  # labels that got their logo
    stored: int = 0  # logo rows written (one per distinct image)
    missing: list[str] = field(default_factory=list)  # file names not found (or not a logo) here


def logo_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "logos"


def read_logo_file(folder: Path, name: str) -> tuple[bytes | None, str]:
    """The bytes of logo file ``name`` in ``folder``, or None and why not."""
    if not LEGACY_NAME.fullmatch(name):
        return None, "not a logo file name"
    path = folder / name
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None, "no such file"
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if len(data) >= MAX_BYTES or not data.startswith(PNG_SIGNATURE):
        return None, "not a PNG under 2 MB"
    return data, ""


def move_logo_files(connection: Connection, folder: Path, log: logging.Logger | None = None) -> MoveResult:
    """Store the files in ``folder`` of labels still without a logo; log each one not found. Runs in the caller's
    transaction; one label (and file) at a time, so memory stays at one logo."""
    log = log or logging.getLogger(__name__)
    labels, logos = labels_table.c, logos_table.c
    result = MoveResult()
    waiting = connection.execute(
        sa.select(labels.id, labels.legacy_logo_key)
        .where(labels.logo_key.is_(None), labels.legacy_logo_key.is_not(None))
        .order_by(labels.legacy_logo_key)
    ).all()
    for label_id, name in waiting:
        data, why = read_logo_file(folder, name)
        if data is None:
            log.warning("logo of label %s not moved into the database: %s (%s)", label_id, folder / name, why)
            result.missing.append(name)
            continue
        key = hashlib.sha256(data).hexdigest()
        if connection.execute(sa.select(logos.key).where(logos.key == key)).first() is None:
            connection.execute(
                sa.insert(logos_table).values(
                    key=key, media_type="image/png", size=len(data), data=data, created_at=datetime.now(UTC)
                )
            )
            result.stored += 1
        connection.execute(sa.update(labels_table).where(labels.id == label_id).values(logo_key=key))
        result.moved += 1
    if waiting:
        log.info(
            "logo files in %s moved into the database: %d labels (%d images stored), %d not found",
            folder,
            result.moved,
            result.stored,
            len(result.missing),
        )
    return result
