"""HTTP and WebSocket for phones: ``/app/v1/devices`` and the push stream ``/app/v1/stream``."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import structlog
from fastapi import APIRouter, Depends, Request, WebSocket
from starlette.responses import Response
from starlette.types import Message
from starlette.websockets import WebSocketDisconnect

from callerid.delivery import service
from callerid.delivery.auth import device_auth_cache, device_bearer, require_device, resolve_device
from callerid.delivery.hub import CLOSE, SHUTDOWN
from callerid.delivery.schemas import DeviceRegistration, DeviceRegistrationRequest, PushedPersonalisation
from callerid.delivery.service import PUSH_STREAMS, DeviceInfo
from callerid.errors import ApiError, invalid_input
from callerid.http import read_json_object
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

router = APIRouter(tags=["App: devices and push"])
log = structlog.get_logger("callerid.delivery")

# Close code (private range 4000-4999) telling the app its registration was replaced or removed.
CLOSE_DEVICE_GONE = 4001
CLOSE_UNAUTHORIZED = 4401
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_GOING_AWAY = 1001


def _required_string(body: dict[str, object], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise invalid_input(f"{name} is required")
    if not isinstance(value, str) or value.strip() == "":
        raise invalid_input(f"{name} is invalid")
    return value.strip()


@router.post(
    "/app/v1/devices",
    status_code=201,
    summary="Register this phone",
    description=(
        "Registers the app for `phone_number` and returns its `device_token`. Registering a number again replaces "
        "its previous device (whose token stops working and whose stream is closed)."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": DeviceRegistrationRequest.model_json_schema()}},
        }
    },
    response_model=DeviceRegistration,
    responses={400: {"description": "invalid-input naming the field"}},
)
async def register_device(request: Request) -> JsonResponse:
    body = await read_json_object(request)
    if body is None:
        raise invalid_input("request body must be a JSON object")
    phone_number = _required_string(body, "phone_number")
    platform = _required_string(body, "platform")
    app_version = _required_string(body, "app_version")
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        registered = await service.register_device(
            session, phone_number=phone_number, platform=platform, app_version=app_version
        )
    await service.close_device(runtime.services, registered.replaced_device_id)
    device_auth_cache(runtime).forget(registered.replaced_device_id)
    return JsonResponse({"device_id": registered.device_id, "device_token": registered.device_token}, status_code=201)


@router.delete(
    "/app/v1/devices/me",
    status_code=204,
    summary="Unregister this phone",
    description="The app was uninstalled: forget the device. Records sent to the number are then `not_app_user`.",
    responses={401: {"description": "authorization-error"}},
)
async def unregister_device(request: Request, device: DeviceInfo = Depends(require_device)) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        await service.unregister_device(session, device.device_id)
    await service.close_device(runtime.services, device.device_id)
    device_auth_cache(runtime).forget(device.device_id)
    return Response(status_code=204)


STREAM_DESCRIPTION = f"""
A WebSocket (documented here as GET because OpenAPI cannot describe WebSockets). Authenticate with
`Authorization: Bearer <device_token>` or, from a browser, `?token=<device_token>`.

Server messages (JSON text frames):
- `{{"type": "connected", "device_id", "phone_number"}}` first: from then on every push reaches this socket;
- `{{"type": "call_personalisation", ...}}` for each record accepted for this phone's number:
  `{orjson.dumps(PushedPersonalisation.model_json_schema()["properties"]).decode()}`;
- `{{"type": "heartbeat"}}` when idle.

A bad token is refused with HTTP 401 (or close code {CLOSE_UNAUTHORIZED}); the server closes with code
{CLOSE_DEVICE_GONE} when the device is replaced or unregistered (do not reconnect with that token), with
{CLOSE_GOING_AWAY} when it shuts down and {CLOSE_TRY_AGAIN_LATER} when pushes are unavailable (reconnect).
"""


@router.get(
    "/app/v1/stream",
    summary="Push stream (WebSocket)",
    description=STREAM_DESCRIPTION,
    status_code=101,
    response_description="switching protocols (the WebSocket is open)",
    responses={401: {"description": "authorization-error"}, 426: {"description": "not a WebSocket request"}},
    dependencies=[Depends(device_bearer)],
)
async def stream_doc() -> Response:
    # A plain GET (no Upgrade) reaches here; the WebSocket route below handles the upgrade.
    raise ApiError(426, "upgrade-required", "this endpoint is a WebSocket: connect with Upgrade: websocket")


@router.websocket("/app/v1/stream")
async def stream(websocket: WebSocket) -> None:
    runtime = runtime_of(websocket)
    try:
        device = await resolve_device(websocket)
    except ApiError as exc:
        await _deny(websocket, exc)
        return
    hub = service.hub_of(runtime.services)
    if hub is None:  # cannot happen in serve/worker; keep the socket honest anyway
        await websocket.close(code=1011)
        return
    heartbeat = runtime.settings.push_heartbeat_seconds
    accepted = False
    try:
        # Attach before accepting: by the time the phone reads "connected", pushes already reach it.
        async with hub.attach(device.device_id) as connection:
            await websocket.accept()
            accepted = True
            PUSH_STREAMS.inc()
            hello = {"type": "connected", "device_id": device.device_id, "phone_number": device.phone_number}
            await websocket.send_text(orjson.dumps(hello).decode())
            sender = asyncio.create_task(_send_loop(websocket, connection.queue, heartbeat))
            receiver = asyncio.create_task(_receive_loop(websocket, runtime.settings.max_websocket_message_bytes))
            try:
                await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sender, receiver):
                    task.cancel()
                for task in (sender, receiver):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                PUSH_STREAMS.dec()
    except Exception:
        # E.g. Redis unreachable while subscribing: refuse with "try again later" rather than a 500.
        log.warning("push_stream_failed", device_id=device.device_id, exc_info=True)
        if not accepted:
            await websocket.close(code=CLOSE_TRY_AGAIN_LATER)


async def _send_loop(websocket: WebSocket, queue: asyncio.Queue[str], heartbeat: float) -> None:
    heartbeat_text = orjson.dumps({"type": "heartbeat"}).decode()
    while True:
        try:
            payload = await asyncio.wait_for(queue.get(), timeout=heartbeat)
        except TimeoutError:
            payload = heartbeat_text
        if payload == CLOSE:
            await websocket.close(code=CLOSE_DEVICE_GONE, reason="device replaced or unregistered")
            return
        if payload == SHUTDOWN:
            await websocket.close(code=CLOSE_GOING_AWAY, reason="server shutting down; reconnect")
            return
        await websocket.send_text(payload)


async def _receive_loop(websocket: WebSocket, max_bytes: int) -> None:
    # The phone sends nothing we act on; reading is how a disconnect is noticed. A message over the limit closes
    # the stream with 1009 (message too big). Granian has no option to bound messages: it assembles each one
    # whole before handing it over, and drops the connection (no close code) only past its WebSocket library's
    # defaults, 16 MiB a frame or 64 MiB a message. So this check bounds what the app holds, not what Granian reads.
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if _message_bytes(message) > max_bytes:
                reason = f"message must be at most {max_bytes} bytes"
                await websocket.close(code=CLOSE_MESSAGE_TOO_BIG, reason=reason)
                return


def _message_bytes(message: Message) -> int:
    data = message.get("bytes")
    if data is not None:
        return len(data)
    text = message.get("text") or ""
    return len(text) if text.isascii() else len(text.encode())


async def _deny(websocket: WebSocket, error: ApiError) -> None:
    extensions = websocket.scope.get("extensions") or {}
    if "websocket.http.response" in extensions:
        await websocket.send_denial_response(JsonResponse(error.body(), status_code=error.status_code))
    else:
        await websocket.close(code=CLOSE_UNAUTHORIZED, reason=error.message)
