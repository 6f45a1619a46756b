"""The hot endpoints answered before FastAPI's router (callerid.fastlane): same shapes, headers, errors, logs,
metrics and OpenAPI documentation as every other route."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from callerid.fastlane import FastRequest, FastResponse, FastRoute, operation
from tests.conftest import Tenant
from tests.ops.test_observability import sample

JSON_UTF8 = "application/json; charset=utf-8"
ACCOUNT = "8a1e0ada-d53b-4304-8562-54895462e100"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def error(slug: str, message: str) -> dict[str, str]:
    return {"slug": slug, "message": message}


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", f"/v2/clients/{ACCOUNT}/dynamic_call_record", {"POST"}),
        ("DELETE", f"/v2/clients/{ACCOUNT}/dynamic_call_record", {"POST"}),
        # B2's path is also S2's (GET, served by FastAPI): Allow names both
        ("PUT", f"/v2/clients/{ACCOUNT}/dynamic_call_records", {"POST", "GET"}),
        ("POST", "/app/v1/caller-id", {"GET", "HEAD"}),
        ("DELETE", "/healthz", {"GET", "HEAD"}),
    ],
)
async def test_a_method_no_route_serves_is_405_naming_every_allowed_method(
    client: httpx.AsyncClient, method: str, path: str, allow: set[str]
) -> None:
    response = await client.request(method, path, headers={"X-Request-ID": "wrong-method"})
    assert response.status_code == 405
    assert response.headers["content-type"] == JSON_UTF8
    assert response.json() == error("method-not-allowed", "method not allowed")
    assert set(response.headers["allow"].split(", ")) == allow
    assert response.headers["x-request-id"] == "wrong-method"


@SQLITE_ONLY
async def test_the_method_fastapi_serves_on_a_fast_path_still_reaches_it(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str]
) -> None:
    # S2 shares its path with B2 (a fast route): the GET is FastAPI's, with its own checks and shape.
    path = f"/v2/clients/{tenant.account_id}/dynamic_call_records"
    missing = await client.get(path, headers=auth)
    assert (missing.status_code, missing.json()) == (400, error("invalid-input", "batchId is required"))
    unknown = await client.get(path, params={"batchId": str(uuid.uuid4())}, headers=auth)
    assert unknown.status_code == 200 and unknown.json()["data"] == []


@SQLITE_ONLY
async def test_head_on_a_fast_get_route_has_the_headers_and_no_body(client: httpx.AsyncClient) -> None:
    head = await client.head("/healthz")
    get = await client.get("/healthz")
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert head.headers["content-type"] == get.headers["content-type"] == JSON_UTF8


@SQLITE_ONLY
async def test_fast_routes_echo_or_make_request_ids_and_are_counted_by_template(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str]
) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-ID": "probe-1"})
    assert echoed.headers["x-request-id"] == "probe-1"
    made = await client.get("/healthz", headers={"X-Request-ID": "not safe!"})  # not echoed: a new one instead
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    # An error answered by a fast route carries the id too, and counts under its route template.
    before = sample(
        (await client.get("/metrics")).text,
        "callerid_http_requests_total",
        {"method": "POST", "route": "/v2/clients/{clientAccountId}/dynamic_call_record", "status": "400"},
    )
    bad = await client.post(
        f"/v2/clients/{tenant.account_id}/dynamic_call_record",
        content=b"{nope",
        headers={**auth, "X-Request-ID": "bad-body"},
    )
    assert bad.status_code == 400 and bad.headers["x-request-id"] == "bad-body"
    after = sample(
        (await client.get("/metrics")).text,
        "callerid_http_requests_total",
        {"method": "POST", "route": "/v2/clients/{clientAccountId}/dynamic_call_record", "status": "400"},
    )
    assert after == before + 1


@SQLITE_ONLY
async def test_an_unexpected_error_in_a_fast_handler_is_the_common_500_with_the_request_id(
    app: Any, client: httpx.AsyncClient
) -> None:
    async def broken(_: FastRequest) -> FastResponse:
        raise RuntimeError("bug with Bearer abcdef")

    route = FastRoute(
        ("GET",), "/test/broken", broken, operation("broken", summary="-", description="-", tags=[], responses={})
    )
    await client.get("/healthz")  # the middleware stack is built on the first request
    lane = app.middleware_stack.app  # RequestLimits -> FastLane
    lane.routes.append(route)
    try:
        response = await client.get("/test/broken", headers={"X-Request-ID": "crash-fast"})
    finally:
        lane.routes.remove(route)
    assert response.status_code == 500
    assert response.json() == error("internal-server-error", "internal server error")
    assert response.headers["x-request-id"] == "crash-fast"
    assert "abcdef" not in response.text


@SQLITE_ONLY
async def test_fast_routes_are_in_the_openapi_document(client: httpx.AsyncClient, app: Any) -> None:
    spec = (await client.get("/openapi.json")).json()
    for route in app.fast_routes:
        for method in route.methods:
            operation_object = spec["paths"][route.path][method.lower()]
            assert operation_object["summary"] and operation_object["responses"]
            parameters = {p["name"] for p in operation_object["parameters"] if p["in"] == "path"}
            assert parameters == set(re.findall(r"\{(\w+)\}", route.path))
    r2 = spec["paths"]["/v2/clients/{clientAccountId}/dynamic_call_record"]["post"]
    assert r2["requestBody"]["content"]["application/json"]["example"]["label_id"]
    assert {"200", "400", "401", "403", "429"} <= set(r2["responses"])
