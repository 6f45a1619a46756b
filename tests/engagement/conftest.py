"""Fixtures of the engagement tests: feature sets with Call Me Back / surveys, listed numbers, a phone, webhooks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, update

from callerid import clock
from callerid.accounts.models import ClientAccount
from callerid.config import Settings
from callerid.db import Database
from callerid.engagement import service as engagement
from callerid.engagement.models import CmbRequest, SurveyResponse
from callerid.jobs.runner import JobRunner
from callerid.numbers import service as numbers
from callerid.webhooks.models import WebhookEvent
from tests.conftest import Tenant
from tests.numbers.conftest import make_label
from tests.webhooks.conftest import make_webhook
from tests.webhooks.receiver import Receiver

CLIENT_NUMBER = "911234567890"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # List/delist jobs due at once; the webhook receiver runs on loopback.
    return {"number_job_delay_seconds": 0, "webhook_allow_private": True}


@dataclass
class Org:
    account_id: uuid.UUID
    process_id: uuid.UUID
    label_id: uuid.UUID


async def make_org(db: Database, account_id: uuid.UUID, timezone: str = "Asia/Kolkata") -> Org:
    label_id = await make_label(db, account_id)
    async with db.transaction() as session:
        await session.execute(update(ClientAccount).where(ClientAccount.id == account_id).values(timezone=timezone))
        department = await numbers.create_department(session, account_id=account_id, name="Flowers")
        operation, _ = await numbers.create_operation(
            session, account_id=account_id, department_id=department.id, name="Deliveries",
            calling_operation_name="Delivery",
        )  # fmt: skip
        process = await numbers.create_process(session, account_id=account_id, operation_id=operation.id, name="Door")
    return Org(account_id, process.id, label_id)


@pytest.fixture
async def org(db: Database, tenant: Tenant) -> Org:
    return await make_org(db, tenant.account_id)


async def make_feature_set(
    db: Database,
    org: Org,
    name: str,
    *,
    call_me_back: bool = False,
    survey: bool = False,
    cmb_name: str | None = None,
    slot_picker: bool | None = None,
    windows: list[str] | None = None,
    with_config: bool = True,
) -> uuid.UUID:
    """A feature set; with Call Me Back, its config as the CLI would create it (unless ``with_config=False``)."""
    async with db.transaction() as session:
        feature_set = await numbers.create_feature_set(
            session, account_id=org.account_id, process_id=org.process_id, label_id=org.label_id, name=name,
            call_me_back=call_me_back, survey=survey,
        )  # fmt: skip
        if call_me_back and with_config:
            await engagement.set_cmb_config(
                session,
                account_id=org.account_id,
                feature_set_id=feature_set.id,
                name=cmb_name,
                slot_picker=slot_picker,
                windows=engagement.parse_windows(windows) if windows else None,
            )
    return feature_set.id


async def publish(
    client: httpx.AsyncClient,
    runner: JobRunner,
    account_id: uuid.UUID,
    auth: dict[str, str],
    feature_set_id: uuid.UUID,
    *phone_numbers: str,
) -> None:
    """List numbers through NL and run the list job (clock untouched: job delay is 0)."""
    response = await client.post(
        f"/clients/{account_id}/number_management/feature_sets/{feature_set_id}/numbers/publish",
        json={"phone_numbers": list(phone_numbers)},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    await runner.run_until_idle()


async def register_phone(client: httpx.AsyncClient, number: str = CLIENT_NUMBER) -> dict[str, str]:
    response = await client.post(
        "/app/v1/devices", json={"phone_number": number, "platform": "android", "app_version": "2.0.0"}
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['device_token']}"}


@pytest.fixture
async def phone(client: httpx.AsyncClient) -> dict[str, str]:
    return await register_phone(client)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


async def subscribe(
    db: Database, settings: Settings, account_id: uuid.UUID, url: str, *, name: str = "Orders", events: str = "cmb"
) -> uuid.UUID:
    created = await make_webhook(db, settings, account_id, url, name=name, events=events)
    return created.webhook.id


async def events(db: Database, event_type: str | None = None) -> list[WebhookEvent]:
    async with db.session() as session:
        query = select(WebhookEvent).order_by(WebhookEvent.webhook_name)
        if event_type is not None:
            query = query.where(WebhookEvent.event_type == event_type)
        return list((await session.scalars(query)).all())


def body_of(event: WebhookEvent) -> Any:
    return orjson.loads(event.body)


async def stored_requests(db: Database) -> list[CmbRequest]:
    async with db.session() as session:
        return list((await session.scalars(select(CmbRequest).order_by(CmbRequest.requested_at))).all())


async def stored_responses(db: Database) -> list[SurveyResponse]:
    async with db.session() as session:
        return list((await session.scalars(select(SurveyResponse).order_by(SurveyResponse.requested_at))).all())


def at(epoch_seconds: int) -> None:
    """Freeze the clock at an epoch-seconds instant (the reference examples' ``requested_at``)."""
    from datetime import UTC, datetime

    clock.freeze(datetime.fromtimestamp(epoch_seconds, UTC))
