"""Fixtures for webhook tests: a local receiver, and webhooks allowed to call 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.webhooks import service
from tests.webhooks.receiver import Receiver


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The receivers run on loopback, which webhooks may only call when the operator allows it.
    return {"webhook_allow_private": True}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


async def make_webhook(
    db: Database,
    settings: Settings,
    account_id: uuid.UUID,
    url: str,
    *,
    name: str = "Orders",
    events: str = "cmb,user_feedback",
) -> service.CreatedWebhook:
    async with db.transaction() as session:
        return await service.create_webhook(session, settings, account_id=account_id, name=name, url=url, events=events)


async def emit(db: Database, account_id: uuid.UUID, event_type: str = "cmb") -> list[uuid.UUID]:
    async with db.transaction() as session:
        return await service.emit_event(
            session, account_id=account_id, event_type=event_type, created_at=clock.now(), body={"n": 1}
        )
