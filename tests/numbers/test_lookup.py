"""Listed numbers in the caller-ID lookup (``GET /app/v1/caller-id``): the feature
set's static label and call reason, unless an active call record overrides it; nothing once delisted."""

from __future__ import annotations

import uuid

import httpx
import jwt

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.runner import JobRunner
from callerid.labels import service as labels
from callerid.numbers import service
from tests.conftest import Tenant
from tests.identity.test_keys import fetch_jwks, verify
from tests.labels.images import image_bytes
from tests.numbers.conftest import Api, settle

CALLER = "911234567898"
RECEIVER = "919234567898"


async def setup(db: Database, settings: Settings, tenant: Tenant) -> tuple[uuid.UUID, uuid.UUID, str]:
    """A feature set with a static label and a call reason; returns (feature set, dynamic label, logo url)."""
    async with db.transaction() as session:
        static = await labels.create_label(
            session,
            settings,
            account_id=tenant.account_id,
            name="Acme Parcels",
            logo=image_bytes(),
            label_type="static",
        )
        dynamic = await labels.create_label(
            session, settings, account_id=tenant.account_id, name="Acme Live", logo=image_bytes()
        )
        department = await service.create_department(session, account_id=tenant.account_id, name="Ops")
        operation, _ = await service.create_operation(
            session,
            account_id=tenant.account_id,
            department_id=department.id,
            name="Mile",
            calling_operation_name="Delivery",
        )
        process = await service.create_process(
            session, account_id=tenant.account_id, operation_id=operation.id, name="Door"
        )
        fs = await service.create_feature_set(
            session,
            account_id=tenant.account_id,
            process_id=process.id,
            label_id=static.id,
            name="Main",
            call_reason="Your parcel is on its way",
        )
    return fs.id, dynamic.id, labels.logo_url(settings, static.logo_key)


async def phone(client: httpx.AsyncClient) -> dict[str, str]:
    """The receiver's device token headers."""
    response = await client.post(
        "/app/v1/devices", json={"phone_number": RECEIVER, "platform": "android", "app_version": "2.0.0"}
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['device_token']}"}


async def lookup(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, object]:
    response = await client.get("/app/v1/caller-id", params={"caller": CALLER}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_listed_number_shows_its_feature_set_identity_until_delisted(
    client: httpx.AsyncClient,
    api: Api,
    tenant: Tenant,
    db: Database,
    settings: Settings,
    runner: JobRunner,
) -> None:
    fs, _, logo_url = await setup(db, settings, tenant)
    headers = await phone(client)
    await api.publish(fs, [CALLER])
    assert await lookup(client, headers) == {"verified": False}  # pending is not listed yet
    await settle(runner)
    body = await lookup(client, headers)
    assertion = body.pop("assertion")
    label_id = (await service.listed_identity(db, CALLER)).label_id  # type: ignore[union-attr]
    assert body == {
        "verified": True,
        "caller": CALLER,
        "name": "Acme Parcels",
        "logo_url": logo_url,
        "call_reason": "Your parcel is on its way",
        "label_id": str(label_id),
        "starts_at": None,
        "ends_at": None,
    }
    claims = verify(str(assertion), await fetch_jwks(client))
    assert claims["rcd"] == {"nam": "Acme Parcels", "icn": logo_url}
    assert claims["crn"] == "Your parcel is on its way"
    assert jwt.get_unverified_header(str(assertion))["typ"] == "passport"
    # Still shown while the delist is processing; gone once it is done.
    await api.delist(fs, [CALLER])
    assert (await lookup(client, headers))["verified"] is True
    await settle(runner)
    assert await lookup(client, headers) == {"verified": False}


async def test_active_call_record_overrides_the_listed_identity(
    client: httpx.AsyncClient,
    api: Api,
    tenant: Tenant,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    runner: JobRunner,
) -> None:
    fs, dynamic_label, _ = await setup(db, settings, tenant)
    headers = await phone(client)
    await api.publish(fs, [CALLER])
    await settle(runner)
    now_ms = clock.now_ms()
    response = await client.post(
        f"/v2/clients/{tenant.account_id}/dynamic_call_record",
        json={
            "label_id": str(dynamic_label),
            "dynamic_label_name": "Acme Live Desk",
            "dynamic_call_reason": "Calling about your refund",
            "caller_number": CALLER,
            "receiver_number": RECEIVER,
            "starts_at": now_ms - 1000,
            "ends_at": now_ms + 3_600_000,
        },
        headers=auth,
    )
    assert response.status_code == 200, response.text
    body = await lookup(client, headers)
    assert (body["name"], body["call_reason"], body["label_id"]) == (
        "Acme Live Desk",
        "Calling about your refund",
        str(dynamic_label),
    )
    # After the record's window the listed identity is back.
    clock.advance(3601)
    body = await lookup(client, headers)
    assert (body["name"], body["starts_at"]) == ("Acme Parcels", None)


async def test_listed_identity_needs_a_listed_number(db: Database) -> None:
    assert await service.listed_identity(db, CALLER) is None
    assert await service.listed_identity(db, "not a number") is None
