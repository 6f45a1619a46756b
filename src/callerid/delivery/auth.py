"""The device-token check of every ``/app/v1`` endpoint (HTTP and the WebSocket stream)."""

from __future__ import annotations

import re
from datetime import datetime

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection, Request

from callerid.delivery.service import DeviceInfo, authenticate_device
from callerid.failures import Unauthorized
from callerid.runtime import Runtime, runtime_of

_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+)$")
MISSING = "Missing device token"
INVALID = "invalid device token"

# Only for the OpenAPI document (the security scheme shown on app endpoints); the check is below.
device_bearer = HTTPBearer(
    auto_error=False, scheme_name="DeviceToken", description="`device_token` from POST /app/v1/devices"
)


def device_token(authorization: str | None, query_token: str | None) -> str | None:
    """The token from ``Authorization: Bearer`` or, for browsers' WebSockets, ``?token=``."""
    if authorization is not None:
        match = _BEARER.match(authorization.strip())
        return match.group(1) if match else ""
    return query_token


def device_token_of(connection: HTTPConnection) -> str | None:
    return device_token(connection.headers.get("authorization"), connection.query_params.get("token"))


async def resolve_device(connection: HTTPConnection, *, cached: bool = False) -> DeviceInfo:
    """The calling device, or Unauthorized (401 authorization-error). ``cached`` allows a recent answer."""
    return await authenticate(runtime_of(connection), device_token_of(connection), cached=cached)


async def authenticate(
    runtime: Runtime, token: str | None, *, cached: bool = False, now: datetime | None = None
) -> DeviceInfo:
    """The device of ``token``, or Unauthorized (401 authorization-error). ``cached`` allows a recent answer."""
    if token is None:
        raise Unauthorized(MISSING)
    cache = runtime.device_auth if cached else None
    device = cache.get(token, now) if cache is not None else None
    if device is None:
        async with runtime.db.point_session() as session:
            device = await authenticate_device(session, token)
        if device is None:
            raise Unauthorized(INVALID)
        if cache is not None:
            cache.put(token, device)
    return device


async def require_device(
    request: Request, _scheme: HTTPAuthorizationCredentials | None = Depends(device_bearer)
) -> DeviceInfo:
    """FastAPI dependency for the app's HTTP endpoints (always checked against the database)."""
    return await resolve_device(request)
