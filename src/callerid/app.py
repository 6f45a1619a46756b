"""``create_app(settings)``: the ASGI application with every router, error handler and middleware."""

from __future__ import annotations

import gc
import importlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp

from callerid import __version__
from callerid.config import Settings, load_settings
from callerid.console.app import install_console
from callerid.errors import install_error_handlers
from callerid.fastlane import FastLane, FastRoute, add_to_openapi
from callerid.http import set_max_json_depth
from callerid.openapi import finish as finish_openapi
from callerid.ops.logging import flush_access_log
from callerid.ops.middleware import ObservabilityMiddleware
from callerid.request_limits import RequestLimits
from callerid.responses import JsonResponse
from callerid.runtime import Runtime

# Modules that register job handlers at import. Add a domain's jobs module here.
JOB_MODULES = (
    "callerid.accounts.jobs",
    "callerid.analytics.jobs",
    "callerid.analytics.weekly_report",
    "callerid.delivery.jobs",
    "callerid.engagement.jobs",
    "callerid.idempotency.jobs",
    "callerid.jobs.housekeeping",
    "callerid.labels.jobs",
    "callerid.numbers.jobs",
    "callerid.personalisation.jobs",
    "callerid.webhooks.jobs",
)

DESCRIPTION = """
Verified-business caller ID. The business API (`/clients/...`, `/v2/clients/...`) is wire-compatible with
the reference service: every request needs `Authorization: Bearer <token>` from
`POST /clients/{clientAccountId}/token`. Errors are `{"slug": ..., "message": ...}`.
"""


class CallerIdApp(FastAPI):
    """FastAPI with a shorter middleware stack in front of the router.

    FastAPI's own stack puts ServerErrorMiddleware, an exception-telemetry layer and a body-limit layer (both
    idle here: telemetry is off and no body limit is set) before any user middleware; each costs a call and
    some a send wrapper on every request. Ours is: RequestLimits (413 for a body over the limit, before it is
    read) -> FastLane (the hot endpoints, which observe their requests themselves) -> ObservabilityMiddleware
    (which also answers unexpected errors with the spec's 500 body, as ServerErrorMiddleware would with our
    handler) -> the exception handlers -> the router, as FastAPI builds it.
    """

    fast_routes: list[FastRoute]
    settings: Settings

    def build_middleware_stack(self) -> ASGIApp:
        handlers = {key: value for key, value in self.exception_handlers.items() if key not in (500, Exception)}
        inner: ASGIApp = AsyncExitStackMiddleware(self.router)
        inner = ExceptionMiddleware(inner, handlers=handlers, debug=self.debug)
        lane = FastLane(ObservabilityMiddleware(inner), self.fast_routes)
        return RequestLimits(lane, self.settings.max_request_body_bytes)


def load_job_handlers() -> None:
    for name in JOB_MODULES:
        importlib.import_module(name)


def create_app(settings: Settings | None = None) -> CallerIdApp:
    settings = settings or load_settings()
    load_job_handlers()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.open(settings, run_jobs=settings.run_jobs_in_process)
        app.state.runtime = runtime
        # Everything made so far (modules, routes, schemas, metadata) lives as long as the process: keep it out of
        # the garbage collector's full collections, which otherwise walk it all and paused requests for 100+ ms.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await runtime.close()
            flush_access_log()

    app = CallerIdApp(
        title="callerid",
        version=__version__,
        description=DESCRIPTION,
        default_response_class=JsonResponse,
        # /docs and /redoc are callerid.docs_page's: vendored files, nothing loaded from another host.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # SPEC §2.2: a body that parses is not refused for a missing or unusual Content-Type.
        strict_content_type=False,
        # We export Prometheus metrics and JSON logs ourselves; FastAPI's OpenTelemetry hooks only cost time
        # on every request (checked per request even with no provider configured).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.settings = settings
    set_max_json_depth(settings.max_json_depth)

    from callerid.accounts.routes import router as accounts_router
    from callerid.analytics.app_routes import router as call_signals_router
    from callerid.analytics.routes import router as analytics_router
    from callerid.delivery.routes import router as delivery_router
    from callerid.docs_page.routes import router as docs_router
    from callerid.engagement.routes import router as engagement_router
    from callerid.identity import routes as identity_routes
    from callerid.identity.routes import router as identity_router
    from callerid.labels.routes import router as labels_router
    from callerid.numbers.routes import router as numbers_router
    from callerid.ops import routes as ops_routes
    from callerid.ops.routes import router as ops_router
    from callerid.personalisation import routes as personalisation_routes
    from callerid.personalisation.routes import router as personalisation_router
    from callerid.phone_page.routes import router as phone_router

    # Hot endpoints answered before FastAPI's router (callerid.fastlane), inside the observability layer.
    app.fast_routes = [*ops_routes.fast_routes, *personalisation_routes.fast_routes, *identity_routes.fast_routes]
    _document_fast_routes(
        app, app.fast_routes, {**identity_routes.openapi_schemas, **personalisation_routes.openapi_schemas}
    )

    app.include_router(ops_router)
    app.include_router(accounts_router)
    app.include_router(labels_router)
    app.include_router(personalisation_router)
    app.include_router(numbers_router)
    app.include_router(delivery_router)
    app.include_router(call_signals_router)
    app.include_router(analytics_router)
    app.include_router(engagement_router)
    app.include_router(identity_router)
    app.include_router(phone_router)
    app.include_router(docs_router)
    install_console(app)  # last: it adds a catch-all for unknown /console paths
    return app


def _die_with_parent() -> None:
    """Workers end when the ``callerid serve`` process that supervises them ends, even by SIGKILL: a worker left
    running would keep serving (and processing jobs) behind an operator's back and keep the port taken."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the call above took effect
        os._exit(1)


def _document_fast_routes(app: FastAPI, routes: list[FastRoute], schemas: dict[str, Any]) -> None:
    """FastAPI builds the OpenAPI document from its own routes; the fast routes are added to it, then
    ``callerid.openapi.finish`` adds what every operation of a family shares (error answers, security, ...)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            add_to_openapi(document, routes, schemas)
            app.openapi_schema = finish_openapi(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app_from_env() -> CallerIdApp:
    """Factory run in each worker process of ``callerid serve`` (Granian, ``factory=True``)."""
    from callerid.ops.logging import configure_logging

    _die_with_parent()
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
