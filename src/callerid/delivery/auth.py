"""The device-token check of every ``/app/v1`` endpoint (HTTP and the WebSocket stream)."""

from __future__ import annotations

import re

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection, Request

from callerid.delivery.service import DeviceInfo, authenticate_device
from callerid.errors import authorization_error
from callerid.runtime import runtime_of

_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+)$")
MISSING = "Missing device token"
INVALID = "invalid device token"

# Only for the OpenAPI document (the security scheme shown on app endpoints); the check is below.
device_bearer = HTTPBearer(
    auto_error=False, scheme_name="DeviceToken", description="`device_token` from POST /app/v1/devices"
)


def device_token_of(connection: HTTPConnection) -> str | None:
    """The token from ``Authorization: Bearer`` or, for browsers' WebSockets, ``?token=``."""
    header = connection.headers.get("authorization")
    if header is not None:
        match = _BEARER.match(header.strip())
        return match.group(1) if match else ""
    return connection.query_params.get("token")


async def resolve_device(connection: HTTPConnection) -> DeviceInfo:
    """The calling device, or ApiError 401 authorization-error."""
    token = device_token_of(connection)
    if token is None:
        raise authorization_error(MISSING)
    async with runtime_of(connection).db.session() as session:
        device = await authenticate_device(session, token)
    if device is None:
        raise authorization_error(INVALID)
    return device


async def require_device(
    request: Request, _scheme: HTTPAuthorizationCredentials | None = Depends(device_bearer)
) -> DeviceInfo:
    """FastAPI dependency for the app's HTTP endpoints."""
    return await resolve_device(request)
