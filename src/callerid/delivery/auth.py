"""The device-token check of every ``/app/v1`` endpoint (HTTP and the WebSocket stream)."""

from __future__ import annotations

import re
from datetime import datetime

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection, Request

from callerid import clock
from callerid.delivery.service import DeviceInfo, authenticate_device
from callerid.failures import Unauthorized
from callerid.runtime import Runtime, runtime_of

_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+)$")
DEVICE_AUTH_CACHE = "device_auth_cache"
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


class DeviceAuthCache:
    """Recently authenticated device tokens, so the caller-ID hot path costs one query, not two.

    Only successes are cached, for ``ttl_seconds``; this process forgets a device at once when it is
    replaced or unregistered here, other processes within the TTL (the stream itself is closed at once
    everywhere, through the hub).
    """

    def __init__(self, ttl_seconds: float, max_entries: int = 100_000):
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[str, tuple[DeviceInfo, float]] = {}

    def get(self, token: str, now: datetime | None = None) -> DeviceInfo | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if (now or clock.now()).timestamp() - entry[1] >= self._ttl:
            self._entries.pop(token, None)
            return None
        return entry[0]

    def put(self, token: str, device: DeviceInfo) -> None:
        if self._ttl <= 0:
            return
        if len(self._entries) >= self._max:
            self._entries.clear()  # crude but bounded; refilled by the next requests
        self._entries[token] = (device, clock.now().timestamp())

    def forget(self, device_id: str | None) -> None:
        if device_id is None:
            return
        for token in [t for t, (device, _) in self._entries.items() if device.device_id == device_id]:
            self._entries.pop(token, None)


def device_auth_cache(runtime: Runtime) -> DeviceAuthCache:
    cache: DeviceAuthCache | None = runtime.services.get(DEVICE_AUTH_CACHE)
    if cache is None:
        cache = runtime.services[DEVICE_AUTH_CACHE] = DeviceAuthCache(runtime.settings.device_auth_cache_seconds)
    return cache


async def resolve_device(connection: HTTPConnection, *, cached: bool = False) -> DeviceInfo:
    """The calling device, or Unauthorized (401 authorization-error). ``cached`` allows a recent answer."""
    return await authenticate(runtime_of(connection), device_token_of(connection), cached=cached)


async def authenticate(
    runtime: Runtime, token: str | None, *, cached: bool = False, now: datetime | None = None
) -> DeviceInfo:
    """The device of ``token``, or Unauthorized (401 authorization-error). ``cached`` allows a recent answer."""
    if token is None:
        raise Unauthorized(MISSING)
    cache = device_auth_cache(runtime) if cached else None
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
