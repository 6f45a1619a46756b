"""Delivery outcomes (SPEC §8) and the WebSocket push stream, end to end through the app."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from callerid.delivery.hub import LocalHub
from callerid.delivery.service import DeliveryOutcome, PushMessage, deliver_many
from tests.conftest import REDIS_URL, requires_redis
from tests.delivery.conftest import register

RECEIVER = "919234567898"
CALLER = "911234567898"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"min_app_version": "1.10.0"}


def message(receiver: str = RECEIVER, *, call_reason: str | None = "Flower Delivery") -> PushMessage:
    return PushMessage(
        record_id=str(uuid.uuid4()),
        caller=CALLER,
        receiver=receiver,
        label_id="c6d86658-008d-4c08-98fb-2bf2649d59a5",
        label_name="Flower rasm",
        logo_url="http://testserver/logos/06930f35-4b9c-4144-b748-9ace309c70d2-1751871235271177747.png",
        call_reason=call_reason,
        starts_at=1753088751000,
        ends_at=1753103151000,
    )


def deliver(client: TestClient, messages: list[PushMessage]) -> list[DeliveryOutcome]:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    outcomes: list[DeliveryOutcome] = client.portal.call(  # type: ignore[union-attr]
        deliver_many, runtime, messages
    )
    return outcomes


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expected_json(pushed: PushMessage) -> dict[str, Any]:
    return {
        "type": "call_personalisation",
        "record_id": pushed.record_id,
        "caller": CALLER,
        "receiver": pushed.receiver,
        "label_id": "c6d86658-008d-4c08-98fb-2bf2649d59a5",
        "label_name": "Flower rasm",
        "logo_url": "http://testserver/logos/06930f35-4b9c-4144-b748-9ace309c70d2-1751871235271177747.png",
        "call_reason": pushed.call_reason,
        "starts_at": 1753088751000,
        "ends_at": 1753103151000,
    }


def test_no_device_is_not_an_app_user(phone_client: TestClient) -> None:
    assert deliver(phone_client, [message()]) == [DeliveryOutcome("not_app_user", "Not an app user")]


def test_ios_is_os_not_supported(phone_client: TestClient) -> None:
    register(phone_client, RECEIVER, "ios", "9.0.0")
    assert deliver(phone_client, [message()]) == [DeliveryOutcome("os_not_supported", "OS not supported")]


def test_versions_compare_as_versions_not_strings(phone_client: TestClient) -> None:
    # As strings "1.9.0" > "1.10.0"; as versions it is older than the minimum 1.10.0.
    register(phone_client, RECEIVER, "android", "1.9.0")
    assert deliver(phone_client, [message()]) == [
        DeliveryOutcome("app_version_not_supported", "App version not supported")
    ]
    register(phone_client, RECEIVER, "android", "1.10.0")
    assert deliver(phone_client, [message()]) == [DeliveryOutcome("failed_to_push", "Failed to push")]


def test_registered_but_not_connected_failed_to_push(phone_client: TestClient) -> None:
    register(phone_client, RECEIVER, "android", "1.10.0")
    assert deliver(phone_client, [message()]) == [DeliveryOutcome("failed_to_push", "Failed to push")]


@pytest.mark.parametrize(
    "settings_overrides",
    [{"min_app_version": "1.10.0", "outcome_message_not_app_user": "Install the app"}],
)
def test_outcome_messages_are_settings(phone_client: TestClient) -> None:
    assert deliver(phone_client, [message()]) == [DeliveryOutcome("not_app_user", "Install the app")]


def test_connected_phone_receives_the_push_and_it_is_a_success(phone_client: TestClient) -> None:
    device = register(phone_client, RECEIVER, "android", "1.10.0")
    with phone_client.websocket_connect("/app/v1/stream", headers=bearer(device["device_token"])) as ws:
        assert ws.receive_json() == {"type": "connected", "device_id": device["device_id"], "phone_number": RECEIVER}
        first, second = message(), message(call_reason=None)
        assert deliver(phone_client, [first, second]) == [DeliveryOutcome(None, None), DeliveryOutcome(None, None)]
        assert ws.receive_json() == expected_json(first)
        assert ws.receive_json() == expected_json(second)
    # Once the phone has gone away, pushes fail again.
    assert deliver(phone_client, [message()]) == [DeliveryOutcome("failed_to_push", "Failed to push")]


def test_token_query_parameter_authenticates_the_stream(phone_client: TestClient) -> None:
    device = register(phone_client, RECEIVER, "android", "2.0.0")
    with phone_client.websocket_connect(f"/app/v1/stream?token={device['device_token']}") as ws:
        assert ws.receive_json()["type"] == "connected"
        pushed = message()
        assert deliver(phone_client, [pushed]) == [DeliveryOutcome(None, None)]
        assert ws.receive_json() == expected_json(pushed)


def test_one_batch_mixes_every_outcome_in_order(phone_client: TestClient) -> None:
    numbers = {name: f"9190000000{index:02d}" for index, name in enumerate(["ios", "old", "offline", "online"])}
    register(phone_client, numbers["ios"], "ios", "2.0.0")
    register(phone_client, numbers["old"], "android", "1.2.0")
    register(phone_client, numbers["offline"], "android", "1.10.0")
    online = register(phone_client, numbers["online"], "android", "1.10.1")
    batch = [
        message(numbers["online"]),
        message("919999999999"),
        message(numbers["ios"]),
        message(numbers["old"]),
        message(numbers["offline"]),
        message(numbers["online"]),
    ]
    with phone_client.websocket_connect("/app/v1/stream", headers=bearer(online["device_token"])) as ws:
        ws.receive_json()
        outcomes = deliver(phone_client, batch)
        assert [o.reason for o in outcomes] == [
            None,
            "not_app_user",
            "os_not_supported",
            "app_version_not_supported",
            "failed_to_push",
            None,
        ]
        assert ws.receive_json()["record_id"] == batch[0].record_id
        assert ws.receive_json()["record_id"] == batch[5].record_id


def test_replacing_the_device_closes_the_old_stream(phone_client: TestClient) -> None:
    old = register(phone_client, RECEIVER, "android", "2.0.0")
    with phone_client.websocket_connect("/app/v1/stream", headers=bearer(old["device_token"])) as ws:
        ws.receive_json()
        register(phone_client, RECEIVER, "android", "2.1.0")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4001
    # The new device is not connected: the old socket never counted for it.
    assert deliver(phone_client, [message()]) == [DeliveryOutcome("failed_to_push", "Failed to push")]


def test_unregistering_closes_the_stream(phone_client: TestClient) -> None:
    device = register(phone_client, RECEIVER, "android", "2.0.0")
    with phone_client.websocket_connect("/app/v1/stream", headers=bearer(device["device_token"])) as ws:
        ws.receive_json()
        assert phone_client.delete("/app/v1/devices/me", headers=bearer(device["device_token"])).status_code == 204
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4001
    assert deliver(phone_client, [message()]) == [DeliveryOutcome("not_app_user", "Not an app user")]


@pytest.mark.parametrize(
    ("path", "headers", "message_text"),
    [
        ("/app/v1/stream", {}, "Missing device token"),
        ("/app/v1/stream", {"Authorization": "Bearer wrong"}, "invalid device token"),
        ("/app/v1/stream?token=wrong", {}, "invalid device token"),
    ],
)
def test_stream_refuses_bad_tokens_with_401(
    phone_client: TestClient, path: str, headers: dict[str, str], message_text: str
) -> None:
    register(phone_client, RECEIVER, "android", "2.0.0")
    with pytest.raises(WebSocketDenialResponse) as denied, phone_client.websocket_connect(path, headers=headers):
        pass
    assert denied.value.status_code == 401
    assert denied.value.json() == {"slug": "authorization-error", "message": message_text}


@pytest.mark.parametrize("settings_overrides", [{"push_heartbeat_seconds": 0.05}])
def test_idle_stream_gets_heartbeats(phone_client: TestClient) -> None:
    device = register(phone_client, RECEIVER, "android", "2.0.0")
    with phone_client.websocket_connect("/app/v1/stream", headers=bearer(device["device_token"])) as ws:
        ws.receive_json()
        assert ws.receive_json() == {"type": "heartbeat"}


@requires_redis
@pytest.mark.parametrize("settings_overrides", [{"min_app_version": "1.10.0", "redis_url": REDIS_URL}])
def test_stream_through_the_redis_hub(phone_client: TestClient) -> None:
    device = register(phone_client, RECEIVER, "android", "1.10.0")
    assert deliver(phone_client, [message()]) == [DeliveryOutcome("failed_to_push", "Failed to push")]
    with phone_client.websocket_connect("/app/v1/stream", headers=bearer(device["device_token"])) as ws:
        assert ws.receive_json()["type"] == "connected"
        pushed = message()
        assert deliver(phone_client, [pushed]) == [DeliveryOutcome(None, None)]
        assert ws.receive_json() == expected_json(pushed)
        register(phone_client, RECEIVER, "android", "1.11.0")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4001


class BrokenHub(LocalHub):
    """A hub whose backend is down (as when Redis is unreachable)."""

    async def _on_first(self, device_id: str) -> None:
        raise ConnectionError("redis is down")

    async def publish_many(self, items: list[tuple[str, str]]) -> list[bool]:
        raise ConnectionError("redis is down")


def test_hub_failure_refuses_the_stream_and_fails_the_push(phone_client: TestClient) -> None:
    device = register(phone_client, RECEIVER, "android", "2.0.0")
    phone_client.app.state.runtime.hub = BrokenHub()  # type: ignore[attr-defined]
    headers = bearer(device["device_token"])
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        phone_client.websocket_connect("/app/v1/stream", headers=headers),
    ):
        pass
    assert refused.value.code == 1013
    assert deliver(phone_client, [message()]) == [DeliveryOutcome("failed_to_push", "Failed to push")]


METRICS_TOKEN = "push-metrics-token"  # /metrics is refused on PostgreSQL (production) without a token


def metric(client: TestClient, line_start: str) -> float:
    text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start + " ")]
    return values[0] if values else 0.0


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": METRICS_TOKEN}])
def test_outcomes_and_open_streams_are_metrics(phone_client: TestClient) -> None:
    success = 'callerid_push_outcomes_total{outcome="success"}'
    not_app_user = 'callerid_push_outcomes_total{outcome="not_app_user"}'
    before_success, before_not_app_user = metric(phone_client, success), metric(phone_client, not_app_user)
    streams_before = metric(phone_client, "callerid_push_streams")
    device = register(phone_client, RECEIVER, "android", "2.0.0")
    with phone_client.websocket_connect("/app/v1/stream", headers=bearer(device["device_token"])) as ws:
        ws.receive_json()
        assert metric(phone_client, "callerid_push_streams") == streams_before + 1
        deliver(phone_client, [message(), message("919999999999"), message("919999999998")])
        ws.receive_json()
    assert metric(phone_client, success) == before_success + 1
    assert metric(phone_client, not_app_user) == before_not_app_user + 2


def test_min_app_version_setting_must_be_a_version() -> None:
    from pydantic import ValidationError

    from callerid.config import Settings

    with pytest.raises(ValidationError, match="not a version: 'banana'"):
        Settings(min_app_version="banana")
    assert Settings(min_app_version="1.10.0").min_app_version == "1.10.0"


def test_server_shutdown_closes_streams_with_going_away(database_url: str, tmp_path: Any) -> None:
    from callerid.app import create_app
    from tests.conftest import empty_all_tables, make_settings

    application = create_app(make_settings(database_url, tmp_path / "data"))
    with TestClient(application) as client:
        client.portal.call(empty_all_tables, application.state.runtime.db)
        device = register(client, RECEIVER, "android", "2.0.0")
        with client.websocket_connect("/app/v1/stream", headers=bearer(device["device_token"])) as ws:
            ws.receive_json()
            client.portal.call(application.state.runtime.hub.stop)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1001
