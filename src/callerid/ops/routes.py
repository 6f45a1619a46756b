"""Health, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response

from callerid.fastlane import FastRequest, FastResponse, FastRoute, documented, operation
from callerid.ops.metrics import render_metrics
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

router = APIRouter(tags=["Operations"])
log = structlog.get_logger("callerid.ops")


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
            responses={200: documented("up", {"status": "ok"})},
        ),
    )
]


# A probe must answer quickly even when the database hangs rather than refuses. Module-level so tests can
# shorten it.
readiness_timeout_seconds = 5.0


# HEAD is served too (load balancers probe with it) but documented once, under GET: one route with both
# methods would give both operations the same operation id.
@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", summary="The database is reachable", operation_id="readyz")
async def readyz(request: Request) -> JsonResponse:
    try:
        await asyncio.wait_for(runtime_of(request).db.ping(), timeout=readiness_timeout_seconds)
    except Exception as exc:
        # The reason is for the operator's log only; the probe's body stays the common error shape.
        log.warning("not_ready", error=type(exc).__name__)
        return JsonResponse({"slug": "service-unavailable", "message": "database unreachable"}, status_code=503)
    return JsonResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def metrics() -> Response:
    payload, content_type = render_metrics()
    return Response(payload, media_type=content_type)
