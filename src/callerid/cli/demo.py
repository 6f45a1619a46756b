"""``callerid demo``: a ready-to-use demo account (console admin, API key, a label with a logo), created once and
reused.

Secrets are stored only as hashes, so the demo's own credentials are kept in ``<data_dir>/demo.json``
(a file for the developer's laptop, never used in production) to print them again next time. When the saved
admin password no longer signs in (the file was lost, or belongs to another database), the demo admin gets a
new one, so the printed e-mail and password always open the console.
"""

from __future__ import annotations

import io
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.accounts import members, service
from callerid.accounts.models import MEMBER_ACTIVE, ApiKey, ClientAccount, Member
from callerid.accounts.secrets import hash_password, new_password, verify_password
from callerid.config import FEATURES, Settings
from callerid.db import Database
from callerid.labels import catalogue
from callerid.labels import service as labels
from callerid.labels.logos import logo_store
from callerid.labels.models import DYNAMIC, Label
from callerid.uuids import parse_uuid

DEMO_ACCOUNT_NAME = "Demo Business"
DEMO_ADMIN_EMAIL = "admin@demo.example.com"
DEMO_KEY_NAME = "demo"
# Write on the four features (a key's default) and read on the analytics API, so the demo can try every API.
DEMO_KEY_ACCESS = {**{feature: "write" for feature in FEATURES}, service.ANALYTICS: "read"}
DEMO_LABEL_NAME = "Demo Flowers"
DEMO_LABEL_CATEGORY = 10  # in the default label catalogue, with sub-category 142
DEMO_LABEL_SUB_CATEGORY = 142


def demo_file(settings: Settings) -> Path:
    return settings.data_dir / "demo.json"


async def ensure_demo(settings: Settings, db: Database) -> dict[str, Any]:
    """Reuse the demo account and key when they still work; otherwise create what is missing."""
    path = demo_file(settings)
    saved = _read_saved(path)
    async with db.transaction() as session:
        account = None
        saved_account_id = parse_uuid(str(saved.get("client_account_id") or ""))
        if saved_account_id is not None:
            account = await session.get(ClientAccount, saved_account_id)
        if account is None:
            account = await session.scalar(
                select(ClientAccount)
                .where(ClientAccount.name == DEMO_ACCOUNT_NAME)
                .order_by(ClientAccount.created_at, ClientAccount.id)
                .limit(1)
            )
        if account is None:
            created = await service.create_account(session, name=DEMO_ACCOUNT_NAME, admin_email=DEMO_ADMIN_EMAIL)
            account = created.account
            saved = {"admin_email": created.admin_email, "admin_password": created.admin_password}
        elif account.id != saved_account_id:
            # The file describes another database's demo (or none): its password and key are not this one's.
            saved = {"admin_email": DEMO_ADMIN_EMAIL, "admin_password": None}
        saved["client_account_id"] = str(account.id)

        key = None
        saved_key_id = parse_uuid(str(saved.get("key_id") or ""))
        if saved_key_id is not None and isinstance(saved.get("api_key"), str):
            key = await service.verify_api_key(session, saved_key_id, saved["api_key"])
            if key is not None and key.account_id != account.id:
                key = None
        if key is None:
            existing = await session.scalar(
                select(ApiKey).where(ApiKey.account_id == account.id, ApiKey.name == DEMO_KEY_NAME)
            )
            if existing is not None:
                issued = await service.regenerate_api_key(session, account_id=account.id, key_id=existing.key_id)
            else:
                issued = await service.create_api_key(
                    session, settings, account_id=account.id, name=DEMO_KEY_NAME, access=dict(DEMO_KEY_ACCESS)
                )
            key = issued.key
            saved["key_id"] = str(issued.key.key_id)
            saved["api_key"] = issued.secret
        if key.access.get(service.ANALYTICS) != "read":
            # The demo key reads the analytics API too (a real key has it only when granted by name); a demo made
            # before analytics existed gets it here.
            key.access = {**key.access, service.ANALYTICS: "read"}

        saved["admin_email"] = DEMO_ADMIN_EMAIL
        saved["admin_password"] = await _ensure_admin_password(session, account.id, saved.get("admin_password"))
        label = await _ensure_demo_label(session, settings, account.id)
        saved["label_id"] = str(label.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with 0600 from the start: the file holds a password and a key secret.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(saved, indent=2))
    path.chmod(0o600)
    return saved


async def _ensure_admin_password(session: AsyncSession, account_id: uuid.UUID, saved_password: Any) -> str:
    """The saved password when it still signs the demo admin in; otherwise a new random one, set now.

    The demo admin is made again, or active again, when needed: the printed e-mail and password must sign in.
    """
    admin = await session.scalar(
        select(Member).where(Member.account_id == account_id, Member.email == DEMO_ADMIN_EMAIL).limit(1)
    )
    if admin is None:
        admin = Member(
            account_id=account_id, email=DEMO_ADMIN_EMAIL, role="admin", password_hash="", created_at=clock.now()
        )
        session.add(admin)
        await session.flush()
    if admin.status != MEMBER_ACTIVE:
        admin.status = MEMBER_ACTIVE
        admin.revoked_at = None
    if isinstance(saved_password, str) and saved_password and verify_password(admin.password_hash, saved_password):
        return saved_password
    password = new_password()
    # Like any new password: the admin's open sessions and e-mailed links end.
    await members.set_password(session, admin, hash_password(password))
    return password


async def _ensure_demo_label(session: AsyncSession, settings: Settings, account_id: uuid.UUID) -> Label:
    """The account's dynamic label "Demo Flowers" with its logo: reused when it exists, otherwise created."""
    label = await session.scalar(
        select(Label)
        .where(Label.account_id == account_id, Label.name == DEMO_LABEL_NAME, Label.label_type == DYNAMIC)
        .order_by(Label.created_at, Label.id)
        .limit(1)
    )
    if label is not None:
        if label.logo_key is None:  # its file was lost when logos moved into the database: draw it again
            label.logo_key = await logo_store(settings).put(session, demo_logo_png())
        return label
    category: int | None = DEMO_LABEL_CATEGORY
    sub_category: int | None = DEMO_LABEL_SUB_CATEGORY
    try:
        await catalogue.check_category(session, category, sub_category, required=False)
    except labels.LabelError:
        # The operator changed the catalogue: a label without a category still fills the console.
        category = sub_category = None
    return await labels.create_label(
        session,
        settings,
        account_id=account_id,
        name=DEMO_LABEL_NAME,
        logo=demo_logo_png(),
        category=category,
        sub_category=sub_category,
    )


def demo_logo_png() -> bytes:
    """The demo label's logo: a pink five-petal flower with a yellow heart on green, a 200x200 PNG."""
    size = labels.LOGO_PIXELS
    image = Image.new("RGB", size, (46, 125, 50))
    draw = ImageDraw.Draw(image)
    cx, cy = size[0] / 2, size[1] / 2
    for petal in range(5):
        angle = math.radians(-90 + petal * 72)
        px, py = cx + 44 * math.cos(angle), cy + 44 * math.sin(angle)
        draw.ellipse((px - 34, py - 34, px + 34, py + 34), fill=(240, 98, 146), outline=(255, 255, 255), width=3)
    draw.ellipse((cx - 26, cy - 26, cx + 26, cy + 26), fill=(255, 213, 79), outline=(255, 255, 255), width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _read_saved(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def demo_summary(settings: Settings, saved: dict[str, Any]) -> dict[str, Any]:
    base = settings.base_url
    account_id = saved["client_account_id"]
    return {
        "client_account_id": account_id,
        "admin_email": saved.get("admin_email"),
        "admin_password": saved.get("admin_password"),
        "key_id": saved["key_id"],
        "api_key": saved["api_key"],
        "label_id": saved["label_id"],
        "urls": {
            "console": f"{base}/console",
            "api": base,
            "docs": f"{base}/docs",
            "phone": f"{base}/phone",
            "openapi": f"{base}/openapi.json",
            "token": f"{base}/clients/{account_id}/token",
        },
        "phone_codes": phone_codes(settings),
        "try": (
            f"curl -s -X POST {base}/clients/{account_id}/token -H 'X-Public-Access: allow' "
            f"-H 'Content-Type: application/json' "
            f'-d \'{{"key_id": "{saved["key_id"]}", "api_key": "{saved["api_key"]}"}}\''
        ),
    }


def phone_codes(settings: Settings) -> str:
    """How a phone proves its number on this server, for the demo's summary."""
    from callerid.delivery.sms import development_outbox

    if settings.device_verifier != "otp":
        return f"phones register without a code (CALLERID_DEVICE_VERIFIER={settings.device_verifier})"
    if development_outbox(settings):
        return (
            "a phone registering gets a code by SMS; with no SMS gateway (development) /phone shows it in a "
            "'Demo SMS' box, and `callerid sms outbox` lists it"
        )
    if settings.sms_webhook_url is not None:
        return "a phone registering gets a code by SMS, through CALLERID_SMS_WEBHOOK_URL"
    return "a phone registering needs a code by SMS: set CALLERID_SMS_WEBHOOK_URL (serve refuses to start without it)"


def demo_title(summary: dict[str, Any]) -> str:
    """The first line ``callerid demo`` (and so ``dev.py start``) prints above the summary."""
    return (
        f"Demo account ready: sign in to the console at {summary['urls']['console']} "
        f"as {summary['admin_email']} with password {summary['admin_password']}"
    )
