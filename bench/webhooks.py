"""Webhook delivery throughput on the embedded default (SQLite, in-process job runner).

Webhooks point at a local receiver (uvicorn, separate process, answers 200). Two phases:
1. backlog: N events (default 10,000) are queued, then the job runner starts; time until all are
   delivered -> events/s (the issue's target: 10,000 in under 30 s).
2. stream: events are emitted at a steady rate (default 200/s, batches of 10); delivery latency
   (event created -> attempt finished) p50/p99.

    .venv/bin/python bench/webhooks.py                 # 10,000 events, SQLite, default settings
    .venv/bin/python bench/webhooks.py --events 2000 --database-url postgresql+asyncpg://...
"""

# ruff: noqa: E402  (sys.path is fixed before the imports)
from __future__ import annotations

import sys
from pathlib import Path

# Running this file puts bench/ first on sys.path, where other benchmarks' names (numbers.py) would
# shadow standard-library modules; drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import json
import os
import socket
import subprocess
import tempfile
import time
import uuid
from typing import Any

BATCH = 100


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A minimal ASGI receiver: read the body, answer 200."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    code = (
        "import importlib.util, sys, uvicorn; "
        "spec = importlib.util.spec_from_file_location('bench_webhooks', sys.argv[2]); "
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
        "uvicorn.run(module.receiver_app, host='127.0.0.1', port=int(sys.argv[1]), log_level='warning', "
        "access_log=False)"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(port), str(Path(__file__).resolve())])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("receiver did not start")


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import func, select

    import callerid.webhooks.jobs  # noqa: F401  (registers the handlers)
    from callerid import clock
    from callerid.accounts import service as accounts
    from callerid.config import Settings
    from callerid.db import Database
    from callerid.db.migrate import upgrade_async
    from callerid.db.write import wake_local_runners
    from callerid.jobs.runner import JobRunner
    from callerid.webhooks import service
    from callerid.webhooks.delivery import close_deliverer
    from callerid.webhooks.models import WebhookAttempt, WebhookEvent
    from callerid.webhooks.payloads import envelope

    folder = Path(tempfile.mkdtemp(prefix="callerid-bench-"))
    url = args.database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
    overrides: dict[str, Any] = {"database_url": url, "data_dir": folder, "webhook_allow_private": True}
    if args.concurrency_per_webhook:
        overrides["webhook_max_concurrency_per_webhook"] = args.concurrency_per_webhook
    settings = Settings(**overrides)
    await upgrade_async(url)
    db = Database(url)
    port = free_port()
    receiver = start_receiver(port)
    services: dict[str, Any] = {}
    try:
        async with db.transaction() as session:
            created = await accounts.create_account(
                session, name=f"bench {uuid.uuid4().hex[:6]}", admin_email="a@b.test"
            )
            account_id = created.account.id
            for n in range(args.webhooks):
                await service.create_webhook(
                    session, settings, account_id=account_id, name=f"bench {n}",
                    url=f"http://127.0.0.1:{port}/hook?key=bench", events="cmb",
                )  # fmt: skip

        def build(event_id: str) -> dict[str, Any]:
            body = {"business_number": "910987654321", "client_number": "911234567890", "is_interested": True}
            return envelope(
                event_id=event_id, account_id=account_id, event_type="cmb", created_at=clock.now(), body=body
            )

        async def emit_batch(size: int) -> None:
            async with db.transaction() as session:
                for _ in range(size):
                    await service.emit_event(session, account_id=account_id, event_type="cmb", payload_for=build)
            wake_local_runners()

        async def delivered() -> int:
            async with db.session() as session:
                query = (
                    select(func.count())
                    .select_from(WebhookEvent)
                    .where(WebhookEvent.account_id == account_id, WebhookEvent.state == "success")
                )
                return int(await session.scalar(query) or 0)

        async def wait_for(count: int, began: float) -> float:
            while await delivered() < count:
                if time.perf_counter() - began > args.timeout:
                    raise RuntimeError(f"only {await delivered()} of {count} delivered in {args.timeout} s")
                # The count is a table scan (ms of SQLite time under the writer's nose): polling it
                # every 20 ms skewed the figure; 0.25 s adds at most that to the measured time.
                await asyncio.sleep(0.25)
            return time.perf_counter() - began

        async def latencies_since(since: Any) -> list[float]:
            async with db.session() as session:
                rows = (
                    await session.execute(
                        select(WebhookEvent.created_at, WebhookAttempt.started_at, WebhookAttempt.duration_ms)
                        .join(WebhookAttempt, WebhookAttempt.event_id == WebhookEvent.id)
                        .where(WebhookEvent.account_id == account_id, WebhookEvent.created_at >= since)
                    )
                ).all()
            return [(started - created).total_seconds() * 1000 + duration for created, started, duration in rows]

        # Phase 1, backlog: N events already queued when the runner starts; time until all are delivered.
        for _ in range(args.events // BATCH):
            await emit_batch(BATCH)
        backlog = (args.events // BATCH) * BATCH
        runner = JobRunner(db, settings, services=services)
        began = time.perf_counter()
        await runner.start()
        backlog_seconds = await wait_for(backlog, began)

        # Phase 2, stream: events arrive at a steady rate; latency from creation to the end of the delivery.
        stream_start = clock.now()
        began = time.perf_counter()
        step = 10 / args.rate
        for n in range(args.stream_events // 10):
            await emit_batch(10)
            pause = began + (n + 1) * step - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
        streamed = (args.stream_events // 10) * 10
        await wait_for(backlog + streamed, began)
        latencies = await latencies_since(stream_start)
        await runner.stop()
        return {
            "database": url.split(":", 1)[0],
            "webhooks": args.webhooks,
            "job_concurrency": settings.job_concurrency,
            "concurrency_per_webhook": settings.webhook_max_concurrency_per_webhook,
            "backlog_events": backlog,
            "backlog_seconds": round(backlog_seconds, 2),
            "backlog_events_per_second": round(backlog / backlog_seconds, 1),
            "backlog_under_30_s": backlog_seconds < 30,
            "stream_events": streamed,
            "stream_rate_per_second": args.rate,
            "stream_latency_ms_p50": rounded(percentile(latencies, 50)),
            "stream_latency_ms_p99": rounded(percentile(latencies, 99)),
        }
    finally:
        await close_deliverer(services)
        await db.dispose()
        receiver.terminate()
        receiver.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--webhooks", type=int, default=1, help="spread events over this many webhooks (max 5)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--concurrency-per-webhook", type=int, default=0, help="0: the setting's default")
    parser.add_argument("--stream-events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200, help="stream phase: events per second")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
