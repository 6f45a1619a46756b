"""The push stream bounds what a phone may send: a message over ``max_websocket_message_bytes`` closes it with 1009
(message too big); up to the limit a message is ignored like any other. (Through a real ``callerid serve``:
tests/test_limits_requests.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.delivery.conftest import register

RECEIVER = "919234567898"
LIMIT = 64 * 1024  # the default of max_websocket_message_bytes


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "message",
    [
        {"bytes": b"x" * (LIMIT + 1)},
        {"text": "x" * (LIMIT + 1)},
        {"text": "é" * (LIMIT // 2 + 1)},  # LIMIT // 2 + 1 characters, LIMIT + 2 bytes of UTF-8
    ],
    ids=["bytes", "ascii-text", "utf8-text"],
)
def test_a_message_over_the_limit_closes_the_stream_with_1009(
    phone_client: TestClient, message: dict[str, Any]
) -> None:
    device = register(phone_client, RECEIVER)
    with phone_client.websocket_connect("/app/v1/stream", headers=bearer(device["device_token"])) as ws:
        assert ws.receive_json()["type"] == "connected"
        ws.send({"type": "websocket.receive", **message})
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1009
    assert closed.value.reason == f"message must be at most {LIMIT} bytes"


@pytest.mark.parametrize("settings_overrides", [{"push_heartbeat_seconds": 0.05}])
def test_messages_up_to_the_limit_are_ignored_and_the_stream_stays_open(phone_client: TestClient) -> None:
    device = register(phone_client, RECEIVER)
    with phone_client.websocket_connect("/app/v1/stream", headers=bearer(device["device_token"])) as ws:
        assert ws.receive_json()["type"] == "connected"
        ws.send_bytes(b"x" * LIMIT)
        ws.send_text("é" * (LIMIT // 2))  # exactly LIMIT bytes of UTF-8
        assert ws.receive_json() == {"type": "heartbeat"}


@pytest.mark.parametrize("settings_overrides", [{"max_websocket_message_bytes": 2048}])
def test_the_limit_is_a_setting(phone_client: TestClient) -> None:
    device = register(phone_client, RECEIVER)
    with phone_client.websocket_connect("/app/v1/stream", headers=bearer(device["device_token"])) as ws:
        assert ws.receive_json()["type"] == "connected"
        ws.send_text("x" * 2049)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1009
