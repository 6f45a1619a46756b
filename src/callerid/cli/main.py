"""``callerid``: the operator's command. Every command takes ``--json`` and then prints one JSON object."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile

import typer

from callerid.cli.accounts import accounts_app, keys_app
from callerid.cli.analytics import analytics_app
from callerid.cli.catalogue import catalogue_app
from callerid.cli.common import JSON_OPTION, display_url, emit, run_with_db, settings_and_schema
from callerid.cli.demo import demo_summary, demo_title, ensure_demo
from callerid.cli.engagement import cmb_configs_app, surveys_app
from callerid.cli.labels import labels_app
from callerid.cli.mail import mail_app
from callerid.cli.numbers import departments_app, feature_sets_app, operations_app, processes_app
from callerid.cli.phones import app_credentials_app, devices_app, signing_keys_app, sms_app
from callerid.cli.secret_key import secret_key_app
from callerid.cli.webhooks import webhooks_app
from callerid.config import Settings, load_settings
from callerid.db import Database

# Granian's own messages (worker start/stop, errors) go to the root logger, which configure_logging() set up.
GRANIAN_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {},
    "handlers": {},
    "loggers": {
        "_granian": {"handlers": [], "level": "INFO", "propagate": True},
        "granian.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}

app = typer.Typer(
    name="callerid",
    help="Verified-business caller ID: serve the API, run workers, manage accounts and keys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="api-keys")
app.add_typer(labels_app, name="labels")
app.add_typer(catalogue_app, name="catalogue")
app.add_typer(departments_app, name="departments")
app.add_typer(operations_app, name="operations")
app.add_typer(processes_app, name="processes")
app.add_typer(feature_sets_app, name="feature-sets")
app.add_typer(devices_app, name="devices")
app.add_typer(app_credentials_app, name="app-credentials")
app.add_typer(sms_app, name="sms")
app.add_typer(signing_keys_app, name="signing-keys")
app.add_typer(secret_key_app, name="secret-key")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(mail_app, name="mail")
app.add_typer(surveys_app, name="surveys")
app.add_typer(cmb_configs_app, name="cmb-configs")
app.add_typer(analytics_app, name="analytics")


@app.command()
def migrate(as_json: bool = JSON_OPTION) -> None:
    """Create or upgrade the database schema."""
    settings = settings_and_schema()
    emit({"migrated": True, "database": display_url(settings.database_url)}, as_json)


@app.command()
def demo(as_json: bool = JSON_OPTION) -> None:
    """Create (or reuse) a demo account with a console admin, an API key and a label; print how to use them."""

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        return demo_summary(settings, await ensure_demo(settings, db))

    summary = run_with_db(run)
    emit(summary, as_json, title=demo_title(summary))


@app.command()
def serve(
    host: str | None = typer.Option(None, "--host", help="default: CALLERID_HOST or 127.0.0.1"),
    port: int | None = typer.Option(None, "--port", help="default: CALLERID_PORT or 8000"),
    workers: int | None = typer.Option(None, "--workers", help="processes (default: CALLERID_WORKERS or 1)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Serve the API (migrating first). Runs the job runner in-process unless CALLERID_RUN_JOBS_IN_PROCESS=false."""
    # Flags become environment so that every worker process builds the same settings.
    if host is not None:
        os.environ["CALLERID_HOST"] = host
    if port is not None:
        os.environ["CALLERID_PORT"] = str(port)
    if workers is not None:
        os.environ["CALLERID_WORKERS"] = str(workers)
    settings = settings_and_schema(phones=True)
    metrics_dir: str | None = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its counts here and /metrics sums them (prometheus-client multiprocess mode).
        metrics_dir = tempfile.mkdtemp(prefix="callerid-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    emit(
        {
            "listening": f"http://{settings.host}:{settings.port}",
            "docs": f"http://{settings.host}:{settings.port}/docs",
            "workers": settings.workers,
            "database": display_url(settings.database_url),
            "redis": bool(settings.redis_url),
        },
        as_json,
        title="callerid is starting",
    )
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    # Granian: the HTTP/WebSocket protocol work (parsing, socket reads and writes) runs in Rust threads outside
    # the GIL, and a response goes out in one write. On 2 cores this doubled the requests/s a process serves
    # compared to uvicorn, whose per-request socket work runs on the Python event loop (bench/personalisation.py).
    server = Server(
        "callerid.app:create_app_from_env",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        # uvloop, pinned: Granian's "auto" would pick rloop when it happens to be installed (not production-ready).
        loop=Loops.uvloop if sys.platform != "win32" else Loops.asyncio,
        workers=settings.workers,
        factory=True,
        websockets=True,
        # Our own access log (request ids, route templates, never raw query strings) replaces Granian's.
        log_access=False,
        log_dictconfig=GRANIAN_LOGGING,
    )
    # Workers start as fresh interpreters rather than forks of this process: this one has migrated the database
    # (a forked SQLite connection must never be used again), and prometheus-client picks its multiprocess
    # storage when it is first imported, before PROMETHEUS_MULTIPROC_DIR was set above.
    multiprocessing.set_start_method("spawn", force=True)
    try:
        server.serve()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@app.command()
def worker(as_json: bool = JSON_OPTION) -> None:
    """Run only the durable job runner (batches, list/delist, webhooks) until SIGTERM/SIGINT."""
    from callerid.app import load_job_handlers
    from callerid.ops.logging import configure_logging
    from callerid.runtime import Runtime

    settings = settings_and_schema()
    configure_logging(settings.log_level, settings.log_json)
    load_job_handlers()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # The same objects as a serving process (batch jobs push to phones through the hub, which Redis fans out to
        # the serving processes), opened and closed the same way.
        runtime = await Runtime.open(settings, run_jobs=True)
        try:
            assert runtime.job_runner is not None
            emit({"worker": runtime.job_runner.owner, "status": "running"}, as_json, title="callerid worker")
            await stop.wait()
        finally:
            await runtime.close()

    asyncio.run(main())


def main() -> None:
    app()


if __name__ == "__main__":
    main()


__all__ = ["app", "load_settings", "main"]
