"""POST /app/v1/devices, DELETE /app/v1/devices/me and the device-token check."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from callerid.accounts.secrets import sha256_hex
from callerid.delivery.models import Device
from tests.delivery.conftest import register


def _devices(client: TestClient) -> list[Device]:
    db = client.app.state.runtime.db  # type: ignore[attr-defined]

    async def rows() -> list[Device]:
        async with db.session() as session:
            return list((await session.execute(select(Device).order_by(Device.created_at))).scalars())

    return client.portal.call(rows)  # type: ignore[union-attr]


def test_register_returns_id_and_token_and_stores_only_a_hash(phone_client: TestClient) -> None:
    body = register(phone_client, "+91 9234567898".replace(" ", ""), "android", "1.10.0")
    assert set(body) == {"device_id", "device_token"}
    [device] = _devices(phone_client)
    assert str(device.id) == body["device_id"]
    assert device.phone_number == "919234567898"
    assert (device.platform, device.app_version) == ("android", "1.10.0")
    assert device.token_hash == sha256_hex(body["device_token"])
    assert body["device_token"] not in {device.token_hash, device.phone_number}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"platform": "android", "app_version": "1.0.0"}, "phone_number is required"),
        ({"phone_number": "12", "platform": "android", "app_version": "1.0.0"}, "phone_number is invalid"),
        ({"phone_number": 919234567898, "platform": "android", "app_version": "1.0.0"}, "phone_number is invalid"),
        ({"phone_number": "919234567898", "app_version": "1.0.0"}, "platform is required"),
        (
            {"phone_number": "919234567898", "platform": "windows", "app_version": "1.0.0"},
            "platform must be one of: android, ios",
        ),
        ({"phone_number": "919234567898", "platform": "android"}, "app_version is required"),
        ({"phone_number": "919234567898", "platform": "android", "app_version": "banana"}, "app_version is invalid"),
        ({"phone_number": "919234567898", "platform": "android", "app_version": ""}, "app_version is invalid"),
    ],
)
def test_register_rejects_bad_input_naming_the_field(
    phone_client: TestClient, payload: dict[str, Any], message: str
) -> None:
    response = phone_client.post("/app/v1/devices", json=payload)
    assert response.status_code == 400
    assert response.json() == {"slug": "invalid-input", "message": message}
    assert _devices(phone_client) == []


def test_register_rejects_a_body_that_is_not_an_object(phone_client: TestClient) -> None:
    response = phone_client.post("/app/v1/devices", content=b"[1, 2]")
    assert response.status_code == 400
    assert response.json() == {"slug": "invalid-input", "message": "request body must be a JSON object"}


def test_registering_again_replaces_the_previous_device(phone_client: TestClient) -> None:
    first = register(phone_client, "919234567898", "ios", "1.0.0")
    second = register(phone_client, "919234567898", "android", "2.0.0")
    [device] = _devices(phone_client)
    assert str(device.id) == second["device_id"] != first["device_id"]
    assert device.platform == "android"
    old = phone_client.delete("/app/v1/devices/me", headers={"Authorization": f"Bearer {first['device_token']}"})
    assert old.status_code == 401
    assert old.json() == {"slug": "authorization-error", "message": "invalid device token"}


def test_delete_me_unregisters_only_the_caller(phone_client: TestClient) -> None:
    mine = register(phone_client, "919234567898")
    other = register(phone_client, "919234567899")
    response = phone_client.delete("/app/v1/devices/me", headers={"Authorization": f"Bearer {mine['device_token']}"})
    assert response.status_code == 204
    assert response.content == b""
    assert [str(d.id) for d in _devices(phone_client)] == [other["device_id"]]
    again = phone_client.delete("/app/v1/devices/me", headers={"Authorization": f"Bearer {mine['device_token']}"})
    assert again.status_code == 401


def test_delete_me_accepts_the_token_query_parameter(phone_client: TestClient) -> None:
    mine = register(phone_client, "919234567898")
    response = phone_client.delete(f"/app/v1/devices/me?token={mine['device_token']}")
    assert response.status_code == 204
    assert _devices(phone_client) == []


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Missing device token"),
        ({"Authorization": "Bearer not-a-token"}, "invalid device token"),
        ({"Authorization": "Basic abc"}, "invalid device token"),
        ({"Authorization": "Bearer"}, "invalid device token"),
    ],
)
def test_bad_device_tokens_are_401(phone_client: TestClient, headers: dict[str, str], message: str) -> None:
    register(phone_client, "919234567898")
    response = phone_client.delete("/app/v1/devices/me", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"slug": "authorization-error", "message": message}
    assert len(_devices(phone_client)) == 1


def test_plain_get_on_the_stream_says_it_is_a_websocket(phone_client: TestClient) -> None:
    response = phone_client.get("/app/v1/stream")
    assert response.status_code == 426
    assert response.json()["slug"] == "upgrade-required"


def test_app_endpoints_are_documented(phone_client: TestClient) -> None:
    spec = phone_client.get("/openapi.json").json()
    assert {"/app/v1/devices", "/app/v1/devices/me", "/app/v1/stream"} <= set(spec["paths"])
    post = spec["paths"]["/app/v1/devices"]["post"]
    assert "201" in post["responses"]
    assert "DeviceToken" in spec["components"]["securitySchemes"]


async def test_device_count_query(db: Any) -> None:
    async with db.session() as session:
        assert (await session.execute(select(func.count()).select_from(Device))).scalar_one() == 0


async def test_concurrent_registrations_of_one_number_leave_one_device(db: Any) -> None:
    import asyncio

    from callerid.delivery.service import register_device

    async def one(version: str) -> str:
        async with db.transaction() as session:
            registered = await register_device(
                session, phone_number="919234567898", platform="android", app_version=version
            )
        return registered.device_id

    ids = await asyncio.gather(*(one(f"1.{n}.0") for n in range(8)))
    async with db.session() as session:
        rows = list((await session.execute(select(Device))).scalars())
    assert len(set(ids)) == 8
    assert len(rows) == 1 and str(rows[0].id) in ids
