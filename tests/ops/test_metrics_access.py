"""/metrics is not public by default in production (issue point 7): a bearer token when one is set, refused on
PostgreSQL without one, open on the embedded default (SQLite) as before."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from callerid.responses import JsonResponse

TOKEN = "metrics-token-4f1d9c"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
POSTGRESQL_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
WITH_TOKEN = pytest.mark.parametrize("settings_overrides", [{"metrics_token": TOKEN}])


def is_metrics(response: httpx.Response) -> bool:
    return response.status_code == 200 and "callerid_http_requests_total" in response.text


@WITH_TOKEN
async def test_a_set_token_is_required_and_checked(client: httpx.AsyncClient) -> None:
    # On both databases: once a token is set, only a request carrying it gets the metrics.
    for scheme in ("Bearer", "bearer"):
        assert is_metrics(await client.get("/metrics", headers={"Authorization": f"{scheme} {TOKEN}"}))
    refused = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"X-Metrics-Token": TOKEN},
    ]
    for headers in refused:
        response = await client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.json() == {
            "slug": "authorization-error",
            "message": "send the metrics token: Authorization: Bearer <CALLERID_METRICS_TOKEN>",
        }
        assert response.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in response.text


@POSTGRESQL_ONLY
async def test_production_without_a_token_refuses_metrics(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
        response = await client.get("/metrics", headers=headers)
        assert response.status_code == 403
        body = response.json()
        assert body["slug"] == "forbidden-error"
        assert "set CALLERID_METRICS_TOKEN" in body["message"] and "Authorization: Bearer" in body["message"]
        assert "callerid_" not in response.text
    assert (await client.get("/healthz")).status_code == 200  # probes stay open


@SQLITE_ONLY
async def test_the_embedded_default_serves_metrics_openly(client: httpx.AsyncClient) -> None:
    assert is_metrics(await client.get("/metrics"))
    assert is_metrics(await client.get("/metrics", headers={"Authorization": "Bearer anything"}))


@SQLITE_ONLY
@pytest.mark.parametrize("settings_overrides", [{"metrics_token": ""}])
async def test_a_blank_token_is_no_token(client: httpx.AsyncClient, settings: Any) -> None:
    assert settings.metrics_token is None
    assert is_metrics(await client.get("/metrics"))


@SQLITE_ONLY
async def test_the_openapi_document_describes_metrics_and_its_refusals(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/metrics"]["get"]
    assert operation["summary"] == "Prometheus metrics"
    assert "CALLERID_METRICS_TOKEN" in operation["description"]
    responses = operation["responses"]
    assert set(responses) >= {"200", "401", "403"}
    assert list(responses["200"]["content"]) == ["text/plain"]
    unauthorised = responses["401"]["content"][JsonResponse.media_type]["example"]
    forbidden = responses["403"]["content"][JsonResponse.media_type]["example"]
    assert unauthorised["slug"] == "authorization-error" and "Bearer" in unauthorised["message"]
    assert forbidden["slug"] == "forbidden-error" and "CALLERID_METRICS_TOKEN" in forbidden["message"]
