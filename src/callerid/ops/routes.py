"""Health, readiness and metrics endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from callerid.ops.metrics import render_metrics
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

router = APIRouter(tags=["Operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> JsonResponse:
    return JsonResponse({"status": "ok"})


@router.get("/readyz", summary="The database is reachable")
async def readyz(request: Request) -> JsonResponse:
    try:
        await runtime_of(request).db.ping()
    except Exception:
        return JsonResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JsonResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def metrics() -> Response:
    payload, content_type = render_metrics()
    return Response(payload, media_type=content_type)
