"""HTTP and WebSocket for phones: ``/app/v1/devices`` and the push stream ``/app/v1/stream``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, Depends, Request, WebSocket
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import Message
from starlette.websockets import WebSocketDisconnect

from callerid import openapi
from callerid.delivery import service, verification
from callerid.delivery.auth import device_bearer, device_token, require_device, resolve_device
from callerid.delivery.hub import CLOSE, SHUTDOWN
from callerid.delivery.retention import keep_seen
from callerid.delivery.schemas import (
    CodeConfirmation,
    CodeResendRequest,
    CodeSentAnswer,
    DeviceRegistration,
    DeviceRegistrationRequest,
    PushedPersonalisation,
)
from callerid.delivery.service import PUSH_STREAMS, DeviceInfo
from callerid.errors import ApiError, problem_of
from callerid.failures import DomainError, InvalidInput
from callerid.http import read_json_object
from callerid.responses import JsonResponse
from callerid.runtime import Runtime, runtime_of

router = APIRouter(tags=["App: devices and push"])
log = structlog.get_logger("callerid.delivery")

# Close code (private range 4000-4999) telling the app its registration was replaced or removed.
CLOSE_DEVICE_GONE = 4001
CLOSE_UNAUTHORIZED = 4401
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_GOING_AWAY = 1001


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return openapi.json_body(schema, schema.pop("example"))


def _required_string(body: dict[str, object], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise InvalidInput(f"{name} is required")
    if not isinstance(value, str) or value.strip() == "":
        raise InvalidInput(f"{name} is invalid")
    return value.strip()


REGISTER_DESCRIPTION = """
Registers the app for `phone_number`. The phone must prove it owns the number; how is the server's setting
`CALLERID_DEVICE_VERIFIER`:

- `otp` (default): answers **202** `{"registration_id", "status": "code_sent", "expires_at", "resend_after"}` and
  sends a 6-digit code to the number by SMS. Nothing is registered yet: send the code to
  `POST /app/v1/devices/verify`, which answers 201 with the `device_token`. Only on a development server without
  an SMS gateway (SQLite, no `CALLERID_SMS_WEBHOOK_URL`) does the answer also carry `"demo_code"`, the code itself;
  never when an SMS gateway is configured.
- `trusted_backend`: called by the app vendor's server with `Authorization: Bearer <app credential>` (issued by
  the operator); answers 201 at once.
- `none`: no proof; answers 201 at once.

A confirmed registration replaces the number's previous device (whose token stops working and whose stream is
closed). Codes sent are limited per number and per client address (429 with `Retry-After`).
"""


@router.post(
    "/app/v1/devices",
    status_code=201,
    summary="Register this phone",
    description=REGISTER_DESCRIPTION,
    openapi_extra={"requestBody": _json_body(DeviceRegistrationRequest)},
    response_model=DeviceRegistration,
    responses={
        202: {"model": CodeSentAnswer, "description": "`otp`: a code was sent; confirm it on /app/v1/devices/verify"},
        400: {"description": "invalid-input naming the field"},
        401: {"description": "`trusted_backend` only: authorization-error (missing or invalid app credential)"},
        429: {"description": "rate-limit-exceeded: too many codes for this number or from this address"},
        502: {"description": "sms-not-sent: the SMS gateway did not take the code; nothing was registered"},
        503: {"description": "sms-not-configured: `otp` without an SMS gateway on PostgreSQL (a misconfiguration)"},
    },
)
async def register_device(request: Request) -> JsonResponse:
    runtime = runtime_of(request)
    verifier = runtime.settings.device_verifier
    credential = None
    if verifier == verification.TRUSTED_BACKEND:
        # The credential is checked before the body, like every other authenticated endpoint.
        credential = device_token(request.headers.get("authorization"), None)
        await verification.check_credential(runtime, credential)
    body = await read_json_object(request)
    if body is None:
        raise InvalidInput("request body must be a JSON object")
    phone_number = _required_string(body, "phone_number")
    platform = _required_string(body, "platform")
    app_version = _required_string(body, "app_version")
    if verifier == verification.OTP:
        sent = await verification.start_registration(
            runtime,
            phone_number=phone_number,
            platform=platform,
            app_version=app_version,
            client_address=_client_address(request),
        )
        return JsonResponse(sent.to_json(), status_code=202)
    if verifier == verification.TRUSTED_BACKEND:
        registered = await verification.register_vouched(
            runtime, credential=credential, phone_number=phone_number, platform=platform, app_version=app_version
        )
    else:
        async with runtime.db.transaction() as session:
            registered = await service.register_device(
                session, phone_number=phone_number, platform=platform, app_version=app_version
            )
    return await _registered(runtime, registered)


@router.post(
    "/app/v1/devices/verify",
    status_code=201,
    summary="Confirm this phone's code",
    description=(
        "`otp`: the code the number received by SMS for `registration_id`. Right: the device is registered (201, "
        "replacing the number's previous device). Wrong: 400 saying how many tries are left; the last wrong try "
        "or an expired code ends the registration (410 `registration-ended`: register again). Wrong codes are "
        "also limited per number and per client address (429 with `Retry-After`)."
    ),
    openapi_extra={"requestBody": _json_body(CodeConfirmation)},
    response_model=DeviceRegistration,
    responses={
        400: {"description": "invalid-input naming the field (a wrong code says how many tries are left)"},
        404: {"description": "not-found: unknown registration_id, or the server does not use codes"},
        410: {"description": "registration-ended: the code expired or was wrong too often; register again"},
        429: {"description": "rate-limit-exceeded: too many wrong codes for this number or from this address"},
    },
)
async def verify_device(request: Request) -> JsonResponse:
    body = await read_json_object(request)
    if body is None:
        raise InvalidInput("request body must be a JSON object")
    registration_id = _required_string(body, "registration_id")
    code = _required_string(body, "code")
    runtime = runtime_of(request)
    registered = await verification.confirm_code(
        runtime, registration_id=registration_id, code=code, client_address=_client_address(request)
    )
    return await _registered(runtime, registered)


@router.post(
    "/app/v1/devices/resend",
    status_code=202,
    summary="Send this phone a new code",
    description=(
        "`otp`: a new code for `registration_id` (the previous one stops working; the tries left do not change). "
        "At most one every `resend_after`, and codes are limited per number and per client address (429 with "
        "`Retry-After`)."
    ),
    openapi_extra={"requestBody": _json_body(CodeResendRequest)},
    response_model=CodeSentAnswer,
    responses={
        400: {"description": "invalid-input naming the field"},
        404: {"description": "not-found: unknown registration_id, or the server does not use codes"},
        410: {"description": "registration-ended: the code expired; register again"},
        429: {"description": "rate-limit-exceeded: a code was just sent, or too many codes"},
        502: {"description": "sms-not-sent: the SMS gateway did not take the code; the registration ended"},
        503: {"description": "sms-not-configured: `otp` without an SMS gateway on PostgreSQL (a misconfiguration)"},
    },
)
async def resend_device_code(request: Request) -> JsonResponse:
    body = await read_json_object(request)
    if body is None:
        raise InvalidInput("request body must be a JSON object")
    registration_id = _required_string(body, "registration_id")
    runtime = runtime_of(request)
    sent = await verification.resend_code(
        runtime, registration_id=registration_id, client_address=_client_address(request)
    )
    return JsonResponse(sent.to_json(), status_code=202)


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _registered(runtime: Runtime, registered: service.RegisteredDevice) -> JsonResponse:
    """The 201 of a registration: the replaced device's streams closed and its cached token check dropped."""
    await service.close_device(runtime, registered.replaced_device_id)
    return JsonResponse({"device_id": registered.device_id, "device_token": registered.device_token}, status_code=201)


@router.delete(
    "/app/v1/devices/me",
    status_code=204,
    summary="Unregister this phone",
    description="The app was uninstalled: forget the device. Records sent to the number are then `not_app_user`.",
    responses={204: {"description": "forgotten: its token stops working and its stream is closed"}},
)
async def unregister_device(request: Request, device: DeviceInfo = Depends(require_device)) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        await service.unregister_device(session, device.device_id)
    await service.close_device(runtime, device.device_id)
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
    responses={
        401: {"description": "authorization-error: the WebSocket handshake carried no device token, or an unknown one"},
        426: {"description": "upgrade-required: a plain HTTP request (not a WebSocket handshake)"},
    },
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
    except DomainError as exc:
        await _deny(websocket, exc)
        return
    hub = runtime.hub
    heartbeat = runtime.settings.push_heartbeat_seconds
    accepted = False
    try:
        # Attach before accepting: by the time the phone reads "connected", pushes already reach it.
        async with hub.attach(device.device_id) as connection:
            await websocket.accept()
            accepted = True
            PUSH_STREAMS.inc()
            # The device is in use (data retention): marked seen now and once a day while connected.
            seen = asyncio.create_task(keep_seen(runtime, device.device_id))
            hello = {"type": "connected", "device_id": device.device_id, "phone_number": device.phone_number}
            await websocket.send_text(orjson.dumps(hello).decode())
            sender = asyncio.create_task(_send_loop(websocket, connection.queue, heartbeat))
            receiver = asyncio.create_task(_receive_loop(websocket, runtime.settings.max_websocket_message_bytes))
            try:
                await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sender, receiver, seen):
                    task.cancel()
                for task in (sender, receiver, seen):
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


async def _deny(websocket: WebSocket, error: DomainError) -> None:
    extensions = websocket.scope.get("extensions") or {}
    if "websocket.http.response" in extensions:
        problem = problem_of(error)
        await websocket.send_denial_response(JsonResponse(problem.body(), status_code=problem.status_code))
    else:
        await websocket.close(code=CLOSE_UNAUTHORIZED, reason=error.message)
