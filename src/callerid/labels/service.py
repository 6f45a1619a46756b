"""Labels and their logos: the rules, free of HTTP (SPEC §1.3, §5.1, §10.2)."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock, failures
from callerid.accounts import service as accounts
from callerid.config import Settings
from callerid.db import Database
from callerid.display_text import display_problem
from callerid.labels import logos
from callerid.labels.models import DYNAMIC, STATIC, Label
from callerid.paging import Page
from callerid.timefmt import iso_z

LABEL_TYPES = (DYNAMIC, STATIC)
NAME_MIN_CHARS = 3  # SPEC §10.2 / §12 #4: "under 40 characters", enforced as 3-40
NAME_MAX_CHARS = 40
LOGO_MAX_BYTES = 2 * 1024 * 1024  # "under 2 MB" = < 2,097,152 bytes (SPEC §12 #36)
LOGO_PIXELS = (200, 200)

# The file names logos had under <data dir>/logos before they moved into the database (migration 0015),
# `<uuid>-<nanoseconds>.png` like the reference's: still answered, by a redirect to the logo's URL.
_LEGACY_LOGO_KEY = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-[0-9]{1,20}\.png$")
LOGO_SUFFIX = ".png"  # every logo is a PNG (check_logo)


class LabelError(failures.InvalidInput):
    """A label rule was broken; the message says which, for a person to read."""


# --- logos -------------------------------------------------------------------------------------------


def logo_path(logo_key: str | None) -> str | None:
    """The path a logo is served at (``GET /logos/<key>.png``), None for a label without a logo."""
    return None if logo_key is None else f"/logos/{logo_key}{LOGO_SUFFIX}"


def logo_url(settings: Settings, logo_key: str | None) -> str:
    """The absolute URL phones and clients fetch a logo from; the content key in it changes when the logo does, so
    it may be cached for good. ``""`` for a label without a logo (its file was lost before logos moved into the
    database): the field stays a string, and phones show their placeholder."""
    if logo_key is None:
        return ""
    base = (settings.public_base_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    return f"{base}{logo_path(logo_key)}"


def logo_key_of_file(file_name: str) -> str | None:
    """The content key in the last segment of a logo URL (``<64 hex digits>.png``), or None."""
    if not file_name.endswith(LOGO_SUFFIX):
        return None
    key = file_name[: -len(LOGO_SUFFIX)]
    return key if logos.is_content_key(key) else None


def is_legacy_logo_key(value: str) -> bool:
    return _LEGACY_LOGO_KEY.fullmatch(value) is not None


async def logo_key_for_legacy(db: Database, legacy_key: str) -> str | None:
    """The content key of the logo that the file ``legacy_key`` (a pre-0015 logo file name) became, if any."""
    if not is_legacy_logo_key(legacy_key):
        return None
    async with db.session() as session:
        return await session.scalar(select(Label.logo_key).where(Label.legacy_logo_key == legacy_key))


def check_logo(data: bytes) -> None:
    """A PNG of exactly 200x200 pixels under 2 MiB, judged by decoding it (never by a file name)."""
    if len(data) >= LOGO_MAX_BYTES:
        raise LabelError(f"logo must be smaller than 2 MB ({LOGO_MAX_BYTES:,} bytes); it has {len(data):,} bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            image_format, size = image.format, image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise LabelError("logo must be a PNG image") from exc
    if image_format != "PNG":
        raise LabelError(f"logo must be a PNG image (it is {image_format or 'not an image'})")
    if size != LOGO_PIXELS:
        raise LabelError(f"logo must be exactly 200x200 pixels (it is {size[0]}x{size[1]})")
    try:
        # Only now that it is known to be small: check every chunk's CRC, then decode the pixels, so that a
        # truncated or damaged file is refused here rather than on the phones.
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise LabelError("logo must be a PNG image (the file is damaged)") from exc


# --- labels ------------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    if not NAME_MIN_CHARS <= len(name) <= NAME_MAX_CHARS or name.strip() == "":
        raise LabelError(f"name must be between {NAME_MIN_CHARS} and {NAME_MAX_CHARS} characters")
    problem = display_problem(name, "name")  # phones show it (callerid.display_text)
    if problem is not None:
        raise LabelError(problem)
    return name


async def create_label(
    session: AsyncSession,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    name: str,
    logo: bytes,
    label_type: str = DYNAMIC,
    category: int | None = None,
    sub_category: int | None = None,
    created_by_email: str | None = None,
    require_category: bool = False,
) -> Label:
    """Check every rule, then store the logo (once per distinct image) and the label. Without ``created_by_email``
    the account's first admin is recorded as the creator. ``require_category`` (the console) makes choosing a
    category, and its sub-category, compulsory; the API and the CLI leave them optional as the reference does."""
    # Imported here: the catalogue module raises this module's LabelError.
    from callerid.labels import catalogue

    check_name(name)
    if label_type not in LABEL_TYPES:
        raise LabelError(f"label type must be one of {', '.join(LABEL_TYPES)}")
    for field, value in (("category", category), ("sub-category", sub_category)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise LabelError(f"{field} must be a non-negative integer")
    await catalogue.check_category(session, category, sub_category, required=require_category)
    check_logo(logo)
    try:
        await accounts.get_account(session, account_id)
    except accounts.NotFound as exc:
        raise LabelError(str(exc)) from None
    if created_by_email is None:
        admins = await accounts.admin_emails(session, account_id)
        created_by_email = admins[0] if admins else ""
    # In the label's transaction: the label and its logo are stored together or not at all.
    key = await logos.logo_store(settings).put(session, logo)
    label = Label(
        id=uuid.uuid4(),
        account_id=account_id,
        name=name,
        label_type=label_type,
        logo_key=key,
        category=category,
        sub_category=sub_category,
        created_by_email=created_by_email,
        created_at=clock.now(),
    )
    session.add(label)
    await session.flush()
    return label


async def list_dynamic_labels(session: AsyncSession, account_id: uuid.UUID, page: Page) -> list[Label]:
    """One page of the account's dynamic labels, newest first, ties by id (SPEC §2.7)."""
    rows = await session.scalars(
        select(Label)
        .where(Label.account_id == account_id, Label.label_type == DYNAMIC)
        .order_by(Label.created_at.desc(), Label.id.desc())
        .offset(page.offset)
        .limit(page.limit)
    )
    return list(rows.all())


def label_json(settings: Settings, label: Label) -> dict[str, Any]:
    """A label as L returns it (SPEC §5.1)."""
    return {
        "id": str(label.id),
        "name": label.name,
        "logo_url": logo_url(settings, label.logo_key),
        "category": label.category,
        "sub_category": label.sub_category,
        "created_by_email": label.created_by_email,
        "created_at": iso_z(label.created_at),
        "label_type": label.label_type,
    }


@dataclass(frozen=True)
class DynamicLabel:
    """What a call record needs of its label."""

    id: uuid.UUID
    name: str
    logo_key: str | None


class DynamicLabelCache:
    """Dynamic labels recently found, by (account, label id), for the record paths (R1/R2 look one up per request).

    Sound because a label never changes once created (``create_label`` is the only write; labels used by records
    are never deleted, SPEC §10.2; a label left without a logo by migration 0015 may get it back from
    ``callerid labels import-logos``, seen after ``ttl_seconds``). Only found labels are kept (a missing one may be
    created the next moment), for ``ttl_seconds``, so that an operator's direct database edit is still seen within
    that time.
    """

    def __init__(self, ttl_seconds: float = 30.0, max_entries: int = 10_000):
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[tuple[uuid.UUID, uuid.UUID], tuple[DynamicLabel, float]] = {}

    def get(self, account_id: uuid.UUID, label_id: uuid.UUID, now: float) -> DynamicLabel | None:
        entry = self._entries.get((account_id, label_id))
        if entry is None or now - entry[1] >= self._ttl:
            return None
        return entry[0]

    def put(self, account_id: uuid.UUID, label: DynamicLabel, now: float) -> None:
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[(account_id, label.id)] = (label, now)


_CACHE_ATTRIBUTE = "_dynamic_label_cache"
_LABELS = Label.__table__
# The one-label query of the real-time paths, built once (statement construction cost more than the query).
_DYNAMIC_LABEL = select(_LABELS.c.id, _LABELS.c.name, _LABELS.c.logo_key).where(
    _LABELS.c.account_id == bindparam("account_id"),
    _LABELS.c.label_type == DYNAMIC,
    _LABELS.c.id == bindparam("label_id"),
)


async def find_dynamic_labels(
    db: Database, account_id: uuid.UUID, label_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, DynamicLabel]:
    """The account's dynamic labels among ``label_ids`` (cached, see ``DynamicLabelCache``)."""
    cache: DynamicLabelCache = db.__dict__.setdefault(_CACHE_ATTRIBUTE, DynamicLabelCache())
    now = clock.now().timestamp()
    found: dict[uuid.UUID, DynamicLabel] = {}
    missing = []
    for label_id in label_ids:
        label = cache.get(account_id, label_id, now)
        if label is None:
            missing.append(label_id)
        else:
            found[label_id] = label
    if len(missing) == 1:
        async with db.point_session() as session:
            rows = await session.execute(_DYNAMIC_LABEL, {"account_id": account_id, "label_id": missing[0]})
            fetched = {row.id: DynamicLabel(row.id, row.name, row.logo_key) for row in rows}
    elif missing:
        async with db.session() as session:
            fetched = await dynamic_labels(session, account_id, missing)
    else:
        fetched = {}
    for label in fetched.values():
        cache.put(account_id, label, now)
    found.update(fetched)
    return found


async def dynamic_labels(
    session: AsyncSession, account_id: uuid.UUID, label_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, DynamicLabel]:
    """The account's dynamic labels among ``label_ids``, in one query (ids of other accounts or of
    static labels are simply absent)."""
    if not label_ids:
        return {}
    rows = await session.execute(
        select(Label.id, Label.name, Label.logo_key).where(
            Label.account_id == account_id, Label.label_type == DYNAMIC, Label.id.in_(list(label_ids))
        )
    )
    return {row.id: DynamicLabel(row.id, row.name, row.logo_key) for row in rows}
