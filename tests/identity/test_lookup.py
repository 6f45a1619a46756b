"""GET /app/v1/caller-id: the verified identity during a record's window, with a verifiable PASSporT."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import delete

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.delivery.models import Device
from callerid.labels import service as labels
from callerid.labels.models import Label
from tests.conftest import Tenant
from tests.identity.test_keys import fetch_jwks, verify
from tests.labels.images import image_bytes

CALLER = "911234567898"
RECEIVER = "919234567898"
HOUR_MS = 3_600_000


@pytest.fixture(autouse=True)
def now() -> Iterator[datetime]:
    pinned = clock.now().replace(microsecond=0)
    clock.freeze(pinned)
    yield pinned
    clock.reset()


@pytest.fixture
def now_ms(now: datetime) -> int:
    return int(now.timestamp()) * 1000


@pytest.fixture
async def label(db: Database, settings: Settings, tenant: Tenant) -> Label:
    async with db.transaction() as session:
        return await labels.create_label(
            session, settings, account_id=tenant.account_id, name="FlowerEra", logo=image_bytes()
        )


@pytest.fixture
async def phone(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post(
        "/app/v1/devices", json={"phone_number": RECEIVER, "platform": "android", "app_version": "2.0.0"}
    )
    assert response.status_code == 201
    return {"Authorization": f"Bearer {response.json()['device_token']}"}


async def send_record(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, **fields: Any
) -> None:
    body = {
        "label_id": str(label.id),
        "dynamic_label_name": "Flower rasm",
        "dynamic_call_reason": "Flower Delivery",
        "caller_number": CALLER,
        "receiver_number": RECEIVER,
        **fields,
    }
    body = {key: value for key, value in body.items() if value is not ...}  # ``...`` leaves a field out
    response = await client.post(f"/v2/clients/{tenant.account_id}/dynamic_call_record", json=body, headers=auth)
    assert response.status_code == 200, response.text


async def lookup(client: httpx.AsyncClient, phone: dict[str, str], caller: str = CALLER) -> httpx.Response:
    return await client.get("/app/v1/caller-id", params={"caller": caller}, headers=phone)


async def test_inside_the_window_the_identity_is_verified_and_signed(
    client: httpx.AsyncClient,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    phone: dict[str, str],
    settings: Settings,
    now_ms: int,
) -> None:
    await send_record(client, tenant, auth, label, starts_at=now_ms - 1000, ends_at=now_ms + HOUR_MS)
    response = await lookup(client, phone, "+" + CALLER)
    assert response.status_code == 200
    body = response.json()
    logo_url = labels.logo_url(settings, label.logo_key)
    assertion = body.pop("assertion")
    assert body == {
        "verified": True,
        "caller": CALLER,
        "name": "Flower rasm",
        "logo_url": logo_url,
        "call_reason": "Flower Delivery",
        "label_id": str(label.id),
        "starts_at": now_ms - 1000,
        "ends_at": now_ms + HOUR_MS,
    }
    assert jwt.get_unverified_header(assertion)["typ"] == "passport"
    iat = now_ms // 1000
    assert verify(assertion, await fetch_jwks(client)) == {
        "orig": {"tn": CALLER},
        "dest": {"tn": [RECEIVER]},
        "iat": iat,
        "exp": iat + settings.assertion_ttl_seconds,
        "rcd": {"nam": "Flower rasm", "icn": logo_url},
        "crn": "Flower Delivery",
    }


async def test_outside_every_window_is_exactly_not_verified(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, phone: dict[str, str], now_ms: int
) -> None:
    await send_record(client, tenant, auth, label, starts_at=now_ms + HOUR_MS, ends_at=now_ms + 2 * HOUR_MS)
    assert (await lookup(client, phone)).json() == {"verified": False}
    clock.advance(timedelta(hours=1))
    assert (await lookup(client, phone)).json()["verified"] is True
    clock.advance(timedelta(hours=1, milliseconds=1))
    assert (await lookup(client, phone)).json() == {"verified": False}


async def test_only_the_pair_matches_and_the_latest_record_wins(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, phone: dict[str, str], now_ms: int
) -> None:
    window = {"starts_at": now_ms - 1000, "ends_at": now_ms + HOUR_MS}
    await send_record(client, tenant, auth, label, dynamic_label_name="Older name", **window)
    clock.advance(timedelta(seconds=1))
    await send_record(client, tenant, auth, label, dynamic_label_name="Newer name", dynamic_call_reason=..., **window)
    body = (await lookup(client, phone)).json()
    assert (body["name"], body["call_reason"]) == ("Newer name", None)
    claims = jwt.decode(body["assertion"], options={"verify_signature": False})
    assert "crn" not in claims and claims["rcd"]["nam"] == "Newer name"
    # Another caller has no record for this phone.
    assert (await lookup(client, phone, "911111111111")).json() == {"verified": False}
    # Another phone does not see this phone's records.
    other = await client.post(
        "/app/v1/devices", json={"phone_number": "919000000001", "platform": "android", "app_version": "2.0.0"}
    )
    other_auth = {"Authorization": f"Bearer {other.json()['device_token']}"}
    assert (await lookup(client, other_auth)).json() == {"verified": False}


@pytest.mark.parametrize(
    ("params", "message"),
    [({}, "caller is required"), ({"caller": ""}, "caller is required"), ({"caller": "12ab"}, "caller is invalid")],
)
async def test_bad_caller_is_invalid_input(
    client: httpx.AsyncClient, phone: dict[str, str], params: dict[str, str], message: str
) -> None:
    response = await client.get("/app/v1/caller-id", params=params, headers=phone)
    assert response.status_code == 400
    assert response.json() == {"slug": "invalid-input", "message": message}


@pytest.mark.parametrize(
    ("headers", "message"),
    [({}, "Missing device token"), ({"Authorization": f"Bearer {uuid.uuid4()}"}, "invalid device token")],
)
async def test_lookup_needs_a_device_token(client: httpx.AsyncClient, headers: dict[str, str], message: str) -> None:
    response = await client.get("/app/v1/caller-id", params={"caller": CALLER}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"slug": "authorization-error", "message": message}


async def test_lookup_is_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/app/v1/caller-id"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json; charset=utf-8"]["schema"]
    refs = {item["$ref"].rsplit("/", 1)[-1] for item in schema["anyOf"]}
    assert refs == {"VerifiedCaller", "UnverifiedCaller"}
    assert "/.well-known/jwks.json" in spec["paths"]


async def test_replaced_or_removed_devices_lose_lookup_access(client: httpx.AsyncClient, db: Database) -> None:
    async def register() -> dict[str, str]:
        response = await client.post(
            "/app/v1/devices", json={"phone_number": RECEIVER, "platform": "android", "app_version": "2.0.0"}
        )
        return {"Authorization": f"Bearer {response.json()['device_token']}"}

    first = await register()
    assert (await lookup(client, first)).status_code == 200  # now in this process's auth cache
    second = await register()
    assert (await lookup(client, first)).status_code == 401  # replaced here: forgotten at once
    assert (await lookup(client, second)).status_code == 200
    assert (await client.delete("/app/v1/devices/me", headers=second)).status_code == 204
    assert (await lookup(client, second)).status_code == 401

    # Removed by another process (straight in the database): noticed once the cached check is too old.
    third = await register()
    assert (await lookup(client, third)).status_code == 200
    async with db.transaction() as session:
        await session.execute(delete(Device))
    assert (await lookup(client, third)).status_code == 200
    clock.advance(timedelta(seconds=5))
    response = await lookup(client, third)
    assert response.status_code == 401
    assert response.json() == {"slug": "authorization-error", "message": "invalid device token"}
