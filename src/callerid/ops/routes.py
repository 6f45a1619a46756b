"""Health, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response

from callerid.ops.metrics import render_metrics
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

router = APIRouter(tags=["Operations"])
log = structlog.get_logger("callerid.ops")


# HEAD too: some load balancers probe with it.
@router.api_route("/healthz", methods=["GET", "HEAD"], summary="The process is up")
async def healthz() -> JsonResponse:
    return JsonResponse({"status": "ok"})


# A probe must answer quickly even when the database hangs rather than refuses. Module-level so tests can
# shorten it.
readiness_timeout_seconds = 5.0


@router.api_route("/readyz", methods=["GET", "HEAD"], summary="The database is reachable")
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
