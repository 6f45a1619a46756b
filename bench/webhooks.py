"""Webhook delivery throughput on SQLite (the embedded default) and PostgreSQL, against the ceiling of the
HTTP client alone, in one run.

The webhooks point at a local receiver: a raw asyncio HTTP/1.1 server (uvloop when installed) in a separate
process that answers every POST with 200. For each database:

1. ceiling: a plain aiohttp client (the client the deliverer uses) posts the same body to the same receiver
   over as many connections as one webhook may use (``webhook_max_concurrency_per_webhook``), with no
   database and no job runner: the most events/s the delivery path could reach here. Measured again right
   after the backlog (other work on the machine changes what this process gets); the ratio uses the mean.
   A plain httpx client (the one used before) is measured the same way, for reference.
2. backlog: N events (default 10,000) are queued, then the job runner starts; time until all are delivered
   -> events/s, and its ratio to the ceiling. The target is 1,000 events/s on each database.
3. stream: events arrive at a steady rate (default 200/s, batches of 10); delivery latency (event created ->
   attempt finished) p50/p99.

Log lines that say a job lease was lost (``job_lease_lost``, ``job_completed_after_lease_lost``) are counted:
there must be none. Needs only the runtime install (``python3 dev.py start``); PostgreSQL: a fresh database
``callerid_bench_<pid>`` is made through ``--postgres-admin`` and dropped afterwards.

    .venv/bin/python bench/webhooks.py                        # SQLite and PostgreSQL, 10,000 events each
    .venv/bin/python bench/webhooks.py --backend sqlite --events 2000
    .venv/bin/python bench/webhooks.py --postgres-admin postgresql://postgres@db.example:5432/postgres
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
import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

BATCH = 100
TARGET_EVENTS_PER_SECOND = 1000
LEASE_LOST_EVENTS = ("job_lease_lost", "job_completed_after_lease_lost")
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


# --- the receiver (its own process) ------------------------------------------------------------------------


class ReceiverProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and Content-Length bodies (what both clients send): read a request, answer 200."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        answers = 0
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(buffer[:end]).lower()
            length = 0
            if (at := head.find(b"\ncontent-length:")) >= 0:
                stop = head.find(b"\r\n", at + 1)
                length = int(head[at + 16 : stop if stop >= 0 else len(head)])
            if len(buffer) < end + 4 + length:
                break
            del buffer[: end + 4 + length]
            answers += 1
        if answers and self.transport is not None:
            self.transport.write(RESPONSE * answers)


def runner_of(loop: str) -> Callable[[Any], Any]:
    """``asyncio.run``, or ``uvloop.run`` when asked for and installed (as ``callerid serve`` runs)."""
    if loop == "uvloop":
        with contextlib.suppress(ImportError):
            import uvloop

            return uvloop.run  # type: ignore[no-any-return]
    return asyncio.run


def serve_receiver(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(ReceiverProtocol, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        runner_of("uvloop")(main())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-receiver", str(port)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("receiver did not start")


# --- measurements ------------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def posts_per_second(post: Callable[[], Awaitable[None]], *, connections: int, posts: int) -> float:
    """``posts`` POSTs from ``connections`` concurrent senders (after a warm-up that opens the connections)."""
    await asyncio.gather(*(post() for _ in range(connections)))
    remaining = posts

    async def sender() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await post()

    began = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(connections)))
    return posts / (time.perf_counter() - began)


async def plain_aiohttp(url: str, body: bytes, *, connections: int, posts: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as client:

        async def post() -> None:
            async with client.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                await response.read()
                assert response.status == 200

        return await posts_per_second(post, connections=connections, posts=posts)


async def plain_httpx(url: str, body: bytes, *, connections: int, posts: int) -> float:
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits) as client:

        async def post() -> None:
            response = await client.post(url, content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 200

        return await posts_per_second(post, connections=connections, posts=posts)


async def run_backend(backend: str, url: str, args: argparse.Namespace, counts: Counter[str]) -> dict[str, Any]:
    from sqlalchemy import exists, func, select

    import callerid.webhooks.jobs  # noqa: F401  (registers the handlers)
    from callerid import clock
    from callerid.accounts import service as accounts
    from callerid.config import Settings
    from callerid.db import Database
    from callerid.db.migrate import upgrade_async
    from callerid.jobs.models import QUEUED, RUNNING, Job
    from callerid.jobs.runner import JobRunner
    from callerid.runtime import Runtime
    from callerid.webhooks import service
    from callerid.webhooks.models import WebhookAttempt, WebhookEvent
    from callerid.webhooks.payloads import envelope

    folder = Path(tempfile.mkdtemp(prefix="callerid-bench-"))
    overrides: dict[str, Any] = {
        "database_url": url,
        "data_dir": folder,
        "webhook_allow_private": True,  # the receiver is on loopback
        "secret_key": base64.b64encode(secrets.token_bytes(32)).decode(),  # required with PostgreSQL
    }
    if args.concurrency_per_webhook:
        overrides["webhook_max_concurrency_per_webhook"] = args.concurrency_per_webhook
    if args.job_concurrency:
        overrides["job_concurrency"] = args.job_concurrency
    settings = Settings(**overrides)
    connections = settings.webhook_max_concurrency_per_webhook * args.webhooks
    await upgrade_async(url)
    db = Database(url, pool_size=settings.database_pool_size)
    port = free_port()
    receiver = start_receiver(port)
    target = f"http://127.0.0.1:{port}/hook?key=bench"
    runtime = Runtime.build(settings, db)
    try:
        async with db.transaction() as session:
            created = await accounts.create_account(
                session, name=f"bench {uuid.uuid4().hex[:6]}", admin_email="a@b.test"
            )
            account_id = created.account.id
            for n in range(args.webhooks):
                await service.create_webhook(
                    session, settings, account_id=account_id, name=f"bench {n}", url=target, events="cmb"
                )

        body = {"business_number": "910987654321", "client_number": "911234567890", "is_interested": True}

        def build(event_id: str) -> dict[str, Any]:  # what a delivery posts: the event in its envelope
            return envelope(
                event_id=event_id, account_id=account_id, event_type="cmb", created_at=clock.now(), body=body
            )

        # Phase 1, the ceiling: the HTTP client alone, same receiver, same body size, same connection count;
        # measured again right after the backlog, as other work on the machine changes what this process gets.
        sample_body = json.dumps(build(str(uuid.uuid4()))).encode()

        async def ceiling() -> float:
            return await plain_aiohttp(target, sample_body, connections=connections, posts=args.ceiling_posts)

        say(f"{backend}: ceiling (plain clients)")
        ceiling_before = await ceiling()
        httpx_rate = await plain_httpx(target, sample_body, connections=connections, posts=args.ceiling_posts // 4)

        async def emit_batch(size: int) -> None:
            async with db.transaction() as session:
                for _ in range(size):
                    await service.emit_event(
                        session, account_id=account_id, event_type="cmb", created_at=clock.now(), body=body
                    )

        async def delivered() -> int:
            async with db.session() as session:
                query = (
                    select(func.count())
                    .select_from(WebhookEvent)
                    .where(WebhookEvent.account_id == account_id, WebhookEvent.state == "success")
                )
                return int(await session.scalar(query) or 0)

        async def deliveries_left() -> bool:
            # Cheap to ask (one index probe) so that polling it often neither slows the runner nor the database: the
            # success count below scans the account's events, asked only once the queue is empty.
            async with db.session() as session:
                query = select(exists().where(Job.kind == service.DELIVER_JOB, Job.status.in_((QUEUED, RUNNING))))
                return bool(await session.scalar(query))

        async def wait_for(count: int, began: float) -> float:
            while await deliveries_left():
                if time.perf_counter() - began > args.timeout:
                    raise RuntimeError(f"only {await delivered()} of {count} delivered in {args.timeout} s")
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - began
            if (done := await delivered()) != count:
                raise RuntimeError(f"{done} of {count} events delivered; the others failed (see the log above)")
            return elapsed

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

        # Phase 2, backlog: N events already queued when the runner starts; time until all are delivered.
        say(f"{backend}: queueing {args.events} events")
        for _ in range(args.events // BATCH):
            await emit_batch(BATCH)
        backlog = (args.events // BATCH) * BATCH
        say(f"{backend}: backlog, the job runner starts")
        lost_before = sum(counts[e] for e in LEASE_LOST_EVENTS)
        runner = JobRunner(runtime)
        began, cpu_began = time.perf_counter(), time.process_time()
        await runner.start()
        backlog_seconds = await wait_for(backlog, began)
        backlog_cpu = time.process_time() - cpu_began
        ceiling_after = await ceiling()  # the runner idles: the backlog is delivered

        # Phase 3, stream: events arrive at a steady rate; latency from creation to the end of the delivery.
        say(f"{backend}: backlog delivered in {backlog_seconds:.2f} s; stream")
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
        events_per_second = backlog / backlog_seconds
        ceiling_mean = (ceiling_before + ceiling_after) / 2
        return {
            "database": backend,
            "webhooks": args.webhooks,
            "job_concurrency": settings.job_concurrency,
            "concurrency_per_webhook": settings.webhook_max_concurrency_per_webhook,
            "ceiling_client": "aiohttp",
            "ceiling_connections": connections,
            "ceiling_posts_per_second": round(ceiling_mean, 1),  # the mean of the two below
            "ceiling_before_after": [round(ceiling_before, 1), round(ceiling_after, 1)],
            "httpx_posts_per_second": round(httpx_rate, 1),
            "backlog_events": backlog,
            "backlog_seconds": round(backlog_seconds, 2),
            "backlog_events_per_second": round(events_per_second, 1),
            "ratio_to_ceiling": round(events_per_second / ceiling_mean, 3),
            # CPU time of this process (runner, client, database driver) per event, and its share of the wall time:
            # near 1, the process is CPU-bound (on a busy machine it gets less than a core).
            "backlog_cpu_ms_per_event": round(backlog_cpu * 1000 / backlog, 3),
            "backlog_cpu_share": round(backlog_cpu / backlog_seconds, 2),
            "meets_target": events_per_second >= TARGET_EVENTS_PER_SECOND,
            "lease_lost_log_lines": sum(counts[e] for e in LEASE_LOST_EVENTS) - lost_before,
            "stream_events": streamed,
            "stream_rate_per_second": args.rate,
            "stream_latency_ms_p50": rounded(percentile(latencies, 50)),
            "stream_latency_ms_p99": rounded(percentile(latencies, 99)),
        }
    finally:
        await runtime.close()  # the deliverer's connections; the database below
        await db.dispose()
        receiver.terminate()
        receiver.wait()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def fresh_postgres(admin_url: str) -> Any:
    """A new database on the admin URL's server, as a SQLAlchemy asyncpg URL; dropped afterwards."""
    import asyncpg

    name = f"callerid_bench_{os.getpid()}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def count_log_events(counts: Counter[str]) -> None:
    """Log to stderr as usual, counting every event by name (the lease-lost lines are reported)."""
    import structlog

    def count(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        counts[str(event_dict.get("event"))] += 1
        return event_dict

    structlog.configure(
        processors=[
            count,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    count_log_events(counts)
    results: dict[str, Any] = {}
    if args.backend in ("sqlite", "both"):
        folder = Path(tempfile.mkdtemp(prefix="callerid-bench-sqlite-"))
        try:
            results["sqlite"] = await run_backend("sqlite", f"sqlite+aiosqlite:///{folder}/bench.db", args, counts)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if args.backend in ("postgres", "both"):
        async with fresh_postgres(args.postgres_admin) as url:
            results["postgresql"] = await run_backend("postgresql", url, args, counts)
    return {
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "target_events_per_second": TARGET_EVENTS_PER_SECOND,
        **results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--webhooks", type=int, default=1, help="spread events over this many webhooks (max 5)")
    parser.add_argument(
        "--postgres-admin",
        default=os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a database on the server where the bench may create and drop its own",
    )
    parser.add_argument("--concurrency-per-webhook", type=int, default=0, help="0: the setting's default")
    parser.add_argument("--job-concurrency", type=int, default=0, help="0: the setting's default")
    parser.add_argument("--ceiling-posts", type=int, default=10_000, help="POSTs of the plain client (ceiling)")
    parser.add_argument("--stream-events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200, help="stream phase: events per second")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="the event loop: uvloop as `callerid serve` runs the embedded job runner (asyncio's own where absent)",
    )
    parser.add_argument("--serve-receiver", type=int, help=argparse.SUPPRESS)  # the receiver process
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver(args.serve_receiver)
        return
    print(json.dumps(runner_of(args.loop)(run(args)), indent=2))


if __name__ == "__main__":
    main()
