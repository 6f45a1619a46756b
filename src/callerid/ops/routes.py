"""Health, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
import hmac

import structlog
from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from callerid.errors import ApiError
from callerid.fastlane import FastRequest, FastResponse, FastRoute, documented, operation
from callerid.openapi import error_schema
from callerid.ops.metrics import render_metrics
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

router = APIRouter(tags=["Operations"])
log = structlog.get_logger("callerid.ops")


_STATUS_OK = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "ok"}},
    "additionalProperties": False,
}


async def healthz(_: FastRequest) -> FastResponse:
    return FastResponse({"status": "ok"})


# A fast route: probes come often, and the benchmarks use it as the server's ceiling for a trivial request.
# HEAD too (FastLane answers it for every GET route): some load balancers probe with it.
fast_routes = [
    FastRoute(
        ("GET",),
        "/healthz",
        healthz,
        operation(
            "healthz",
            summary="The process is up",
            description="Liveness: answers as long as the process serves requests (no database access).",
            tags=["Operations"],
            responses={200: documented("up", {"status": "ok"}, _STATUS_OK)},
        ),
    )
]


# A probe must answer quickly even when the database hangs rather than refuses. Module-level so tests can
# shorten it.
readiness_timeout_seconds = 5.0


# HEAD is served too (load balancers probe with it) but documented once, under GET: one route with both
# methods would give both operations the same operation id.
@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    summary="The database is reachable",
    operation_id="readyz",
    responses={
        200: documented(
            "ready",
            {"status": "ok", "database": "ok"},
            {
                "type": "object",
                "required": ["status", "database"],
                "properties": {"status": {"const": "ok"}, "database": {"const": "ok"}},
                "additionalProperties": False,
            },
        ),
        503: documented(
            "the database did not answer in time",
            {"slug": "service-unavailable", "message": "database unreachable"},
            error_schema("service-unavailable"),
        ),
    },
)
async def readyz(request: Request) -> JsonResponse:
    try:
        await asyncio.wait_for(runtime_of(request).db.ping(), timeout=readiness_timeout_seconds)
    except Exception as exc:
        # The reason is for the operator's log only; the probe's body stays the common error shape.
        log.warning("not_ready", error=type(exc).__name__)
        return JsonResponse({"slug": "service-unavailable", "message": "database unreachable"}, status_code=503)
    return JsonResponse({"status": "ok", "database": "ok"})


METRICS_TOKEN_REQUIRED = "send the metrics token: Authorization: Bearer <CALLERID_METRICS_TOKEN>"
METRICS_NOT_PUBLIC = (
    "metrics are not public in production: set CALLERID_METRICS_TOKEN and scrape with Authorization: Bearer <token>"
)


def _check_metrics_access(request: Request) -> None:
    """``CALLERID_METRICS_TOKEN`` set: the request must carry it as a bearer token (401 otherwise). Unset: open on
    the embedded default (SQLite, one laptop), refused in production (PostgreSQL), where metrics would otherwise
    tell anyone on the network about traffic and accounts."""
    settings = runtime_of(request).settings
    if settings.metrics_token is None:
        if not settings.embedded:
            raise ApiError(403, "forbidden-error", METRICS_NOT_PUBLIC)
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = settings.metrics_token.get_secret_value().encode()
    # Constant time: how much of a guess matched must not show in the answer's timing.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise ApiError(401, "authorization-error", METRICS_TOKEN_REQUIRED, headers={"WWW-Authenticate": "Bearer"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "Prometheus text format. With `CALLERID_METRICS_TOKEN` set, send `Authorization: Bearer <token>`. Without "
        "it, open on the embedded default (SQLite) and refused (403) with PostgreSQL (production)."
    ),
    include_in_schema=True,
    response_class=PlainTextResponse,
    responses={
        200: {"description": "the metrics (Prometheus text exposition format)"},
        401: documented(
            "authorization-error: missing or wrong metrics token",
            ApiError(401, "authorization-error", METRICS_TOKEN_REQUIRED).body(),
        ),
        403: documented(
            "forbidden-error: production without CALLERID_METRICS_TOKEN",
            ApiError(403, "forbidden-error", METRICS_NOT_PUBLIC).body(),
        ),
    },
)
async def metrics(request: Request) -> Response:
    _check_metrics_access(request)
    payload, content_type = render_metrics()
    return Response(payload, media_type=content_type)
