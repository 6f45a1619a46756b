"""``callerid demo``: a ready-to-use demo account and API key, created once and reused.

Secrets are stored only as hashes, so the demo's own credentials are kept in ``<data_dir>/demo.json``
(a file for the developer's laptop, never used in production) to print them again next time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import select

from callerid.accounts import service
from callerid.accounts.models import ApiKey, ClientAccount
from callerid.config import Settings
from callerid.db import Database
from callerid.http import parse_uuid

DEMO_ACCOUNT_NAME = "Demo Business"
DEMO_ADMIN_EMAIL = "admin@demo.example.com"
DEMO_KEY_NAME = "demo"


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

        key_ok = False
        saved_key_id = parse_uuid(str(saved.get("key_id") or ""))
        if saved_key_id is not None and isinstance(saved.get("api_key"), str):
            key = await service.verify_api_key(session, saved_key_id, saved["api_key"])
            key_ok = key is not None and key.account_id == account.id
        if not key_ok:
            existing = await session.scalar(
                select(ApiKey).where(ApiKey.account_id == account.id, ApiKey.name == DEMO_KEY_NAME)
            )
            if existing is not None:
                issued = await service.regenerate_api_key(session, account_id=account.id, key_id=existing.key_id)
            else:
                issued = await service.create_api_key(session, settings, account_id=account.id, name=DEMO_KEY_NAME)
            saved["key_id"] = str(issued.key.key_id)
            saved["api_key"] = issued.secret
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with 0600 from the start: the file holds a password and a key secret.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(saved, indent=2))
    path.chmod(0o600)
    return saved


def _read_saved(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def demo_summary(settings: Settings, saved: dict[str, Any]) -> dict[str, Any]:
    base = settings.public_base_url or f"http://{settings.host}:{settings.port}"
    account_id = saved["client_account_id"]
    return {
        "client_account_id": account_id,
        "admin_email": saved.get("admin_email"),
        "admin_password": saved.get("admin_password"),
        "key_id": saved["key_id"],
        "api_key": saved["api_key"],
        "urls": {
            "api": base,
            "docs": f"{base}/docs",
            "phone": f"{base}/phone",
            "openapi": f"{base}/openapi.json",
            "token": f"{base}/clients/{account_id}/token",
        },
        "try": (
            f"curl -s -X POST {base}/clients/{account_id}/token -H 'X-Public-Access: allow' "
            f"-H 'Content-Type: application/json' "
            f'-d \'{{"key_id": "{saved["key_id"]}", "api_key": "{saved["api_key"]}"}}\''
        ),
    }
