"""Every failure renders as ``{"slug", "message"}`` with a fitting status, and no internals reach a client
(issue point 9, SPEC §2.3, §2.4)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from callerid.app import create_app
from callerid.db import Database
from callerid.errors import ApiError
from callerid.failures import LimitExceeded, NotFound
from callerid.ops import routes as ops_routes
from tests.conftest import Tenant, make_settings
from tests.ops.probes import CRASH_PATH, add_probe_routes

PUBLIC = {"X-Public-Access": "allow"}
JSON_UTF8 = "application/json; charset=utf-8"


def error(slug: str, message: str) -> dict[str, str]:
    return {"slug": slug, "message": message}


@pytest.fixture
def probe_app(app: Any) -> Any:
    add_probe_routes(app, crash_message="db password=hunter2 at /secret/path")
    return app


SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
async def test_unknown_path_is_404_not_found(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("DELETE", "/nothing/here"),
        ("GET", "/clients/8a1e0ada-d53b-4304-8562-54895462e100/nothing-here"),
        ("GET", "/v2/clients"),
    ]:
        response = await client.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.headers["content-type"] == JSON_UTF8
        assert response.json() == error("not-found", "not found")


@SQLITE_ONLY
async def test_wrong_method_is_405_in_the_common_shape(client: httpx.AsyncClient) -> None:
    token_path = "/clients/8a1e0ada-d53b-4304-8562-54895462e100/token"
    for method, path, allow in [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/metrics", "GET"),
        ("GET", token_path, "POST"),
        ("PUT", token_path, "POST"),
    ]:
        response = await client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["content-type"] == JSON_UTF8
        assert response.json() == error("method-not-allowed", "method not allowed")
        assert set(response.headers["allow"].split(", ")) == set(allow.split(", "))


async def test_token_body_that_is_not_a_json_object(client: httpx.AsyncClient, tenant: Tenant) -> None:
    bodies = [b"{not json", b"", b"[]", b'"a string"', b"42", b"null", b'{"key_id": "x"', b"\xff\xfe"]
    for body in bodies:
        response = await client.post(
            f"/clients/{tenant.account_id}/token", content=body, headers={**PUBLIC, "Content-Type": "application/json"}
        )
        assert response.status_code == 400, body
        # SPEC §3.3: "body invalid or api_key missing/empty" answers api_key first.
        assert response.json() == error("invalid-input", "api_key is required")


async def test_token_content_type_never_rejects_a_body_that_parses(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = httpx.Request("POST", "/", json=tenant.credentials).content
    content_types = [None, "text/plain", "application/x-www-form-urlencoded", "application/vnd.api+json; v=1", "junk"]
    for content_type in content_types:
        headers = dict(PUBLIC) if content_type is None else {**PUBLIC, "Content-Type": content_type}
        response = await client.post(f"/clients/{tenant.account_id}/token", content=body, headers=headers)
        assert response.status_code == 200, (content_type, response.text)
        assert set(response.json()) == {"token", "created_at"}


@SQLITE_ONLY
async def test_unexpected_exception_is_500_without_internals(probe_app: Any, client: httpx.AsyncClient) -> None:
    response = await client.get(CRASH_PATH, headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == JSON_UTF8
    assert response.json() == error("internal-server-error", "internal server error")
    assert response.headers["x-request-id"] == "crash-1"
    for leak in ("Traceback", "RuntimeError", "hunter2", "/secret/path", "probes.py"):
        assert leak not in response.text


async def test_exception_outside_the_observability_middleware_still_renders_500(tmp_path: Path) -> None:
    """The framework-level handler is the last resort (e.g. a middleware added later that crashes)."""
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:", tmp_path))

    @app.middleware("http")
    async def crashing(request: Any, call_next: Any) -> Any:
        raise ValueError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/healthz")
    assert response.status_code == 500
    assert response.json() == error("internal-server-error", "internal server error")
    assert "secret internals" not in response.text


@SQLITE_ONLY
async def test_framework_validation_errors_name_the_field(probe_app: Any, client: httpx.AsyncClient) -> None:
    for path, expected in [
        ("/probe/query", "count is required"),
        ("/probe/query?count=many", "count is invalid"),
        ("/probe/query?count=", "count is invalid"),
    ]:
        response = await client.get(path)
        assert (response.status_code, response.json()) == (400, error("invalid-input", expected)), path
    for body, expected in [
        (b'{"name": "a", "count": "lots"}', "count is invalid"),
        (b'{"count": 1}', "name is required"),
        (b"{oops", "Request body is invalid"),
        (b"[1, 2]", "Request body is invalid"),
        (b"", "Request body is invalid"),
    ]:
        response = await client.post("/probe/body", content=body, headers={"Content-Type": "application/json"})
        assert (response.status_code, response.json()) == (400, error("invalid-input", expected)), body
    good = await client.post("/probe/body", json={"name": "a", "count": 2, "extra": True})
    assert (good.status_code, good.json()) == (200, {"name": "a", "count": 2})


@SQLITE_ONLY
async def test_framework_http_exceptions_render_the_common_shape(probe_app: Any, client: httpx.AsyncClient) -> None:
    for status, expected in [
        (400, error("invalid-input", "framework detail")),
        (401, error("authorization-error", "Missing authorization header")),
        (403, error("forbidden-error", "not authorized. please contact your admin.")),
        (409, error("conflict", "conflict")),
        (413, error("request-entity-too-large", "request entity too large")),
        (500, error("internal-server-error", "internal server error")),
        (503, error("service-unavailable", "service unavailable")),
    ]:
        response = await client.get(f"/probe/http/{status}")
        assert (response.status_code, response.json()) == (status, expected)
        assert "framework detail" not in response.text or status == 400


@SQLITE_ONLY
async def test_api_errors_keep_their_status_headers_and_body(app: Any, client: httpx.AsyncClient) -> None:
    @app.get("/probe/api-error/{kind}")
    async def raise_kind(kind: str) -> Any:
        if kind == "limited":
            raise LimitExceeded(retry_after=0)
        if kind == "http":
            raise ApiError(426, "upgrade-required", "connect with Upgrade: websocket", headers={"X-Probe": "1"})
        raise NotFound("feature set not found")

    limited = await client.get("/probe/api-error/limited")
    assert (limited.status_code, limited.json()) == (429, error("rate-limit-exceeded", "too many requests"))
    assert limited.headers["retry-after"] == "1"  # never 0
    http_only = await client.get("/probe/api-error/http")
    expected = error("upgrade-required", "connect with Upgrade: websocket")
    assert (http_only.status_code, http_only.json()) == (426, expected)
    assert http_only.headers["x-probe"] == "1"
    missing = await client.get("/probe/api-error/other")
    assert (missing.status_code, missing.json()) == (404, error("not-found", "feature set not found"))


@SQLITE_ONLY
async def test_readyz_with_an_unreachable_database_is_503(app: Any, client: httpx.AsyncClient) -> None:
    runtime = app.state.runtime
    reachable = runtime.db
    # The database goes away after startup; nothing listens on port 1, so the connection is refused.
    runtime.db = Database("postgresql+asyncpg://nobody:pw@127.0.0.1:1/none")
    try:
        ready = await client.get("/readyz")
        healthy = await client.get("/healthz")
    finally:
        await runtime.db.dispose()
        runtime.db = reachable
    assert ready.status_code == 503
    assert ready.json() == error("service-unavailable", "database unreachable")
    assert (healthy.status_code, healthy.json()) == (200, {"status": "ok"})
    assert (await client.get("/readyz")).status_code == 200


@SQLITE_ONLY
async def test_readyz_answers_head_and_is_documented_once(client: httpx.AsyncClient) -> None:
    head = await client.head("/readyz")
    assert (head.status_code, head.content) == (200, b"")
    document = (await client.get("/openapi.json")).json()
    assert list(document["paths"]["/readyz"]) == ["get"]
    assert document["paths"]["/readyz"]["get"]["operationId"] == "readyz"


@SQLITE_ONLY
async def test_readyz_with_a_database_that_hangs_is_503_within_the_timeout(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts the connection, never speaks

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(ops_routes, "readiness_timeout_seconds", 0.3)
    runtime = app.state.runtime
    reachable = runtime.db
    runtime.db = Database(f"postgresql+asyncpg://nobody:pw@127.0.0.1:{port}/none")
    try:
        started = time.monotonic()
        ready = await client.get("/readyz")
        elapsed = time.monotonic() - started
    finally:
        await runtime.db.dispose()
        runtime.db = reachable
        server.close()
    assert (ready.status_code, ready.json()) == (503, error("service-unavailable", "database unreachable"))
    assert elapsed < 5


async def test_readyz_with_the_database_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "database": "ok"})
    for path in ("/readyz", "/healthz"):
        head = await client.head(path)
        assert (head.status_code, head.content) == (200, b"")
