# ruff: noqa: E402 - the imports must follow the sys.path fix below
"""Benchmark: call personalisation (R2, B2) and the caller-ID lookup against a real ``callerid serve``.

For each backend (``--backend sqlite`` = the embedded default, ``postgres`` = PostgreSQL + Redis, or ``both``):

1. Sets up ``--accounts`` accounts, each with an API key and a dynamic label (real CLI), starts
   ``callerid serve`` with the default settings (per-token rate limits included) and mints 10 tokens per
   account (the mint limit), so that load is spread over many tokens and the per-token limits are not what
   is measured. Registers ``--phones`` phones and gives each a record from the caller, for the lookup.
2. Ceiling: ``GET /healthz`` (a trivial endpoint) with the same load generator, connections and duration.
3. R2: ``POST /v2/clients/{id}/dynamic_call_record`` rotating over the tokens, one new receiver per record,
   for ``--seconds``; records/s, p50/p99 and the ratio to the ceiling.
4. Lookup: ``GET /app/v1/caller-id`` rotating over the phones' device tokens; lookups/s, p50/p99, ratio.
5. B2: ``--batches`` batches of 500 records (``--b2-concurrency`` clients, rotating over the tokens): records per
   minute accepted, then polls S2 until every record has a final status: records per minute fully processed.

Load generator: ``wrk`` (C; Debian package ``wrk``) with a generated Lua script for 2-4, because a Python client
needs about as much CPU per request as the server and would measure itself on a 2-core machine. B2 requests are
few and heavy, so a Python client (pre-serialised bodies) is enough there; its own healthz ceiling is printed too.
Client and server share the machine, so every figure is a floor. Receivers are not app users, so R2/B2 records
are delivered to the point of the "not_app_user" outcome.

PostgreSQL: creates a fresh database ``callerid_bench_<pid>`` on ``--postgres`` and drops it afterwards; Redis:
flushes database ``--redis-db`` of ``--redis`` before and after (use a database nothing else uses).

Run: ``.venv/bin/python bench/personalisation.py`` (``--help`` for the knobs; ``--workers 2`` for 2 processes).
"""

from __future__ import annotations

import os.path
import sys

# bench/numbers.py is named like the standard library's ``numbers``; run as a script, this folder comes first on
# sys.path and would shadow it, so drop the folder.
_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
# ... so move it to the end: the standard library wins, and bench/benchkit.py stays importable.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _BENCH_DIR] + [_BENCH_DIR]

import argparse
import asyncio
import base64
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
from benchkit import CALLERID, cli, free_port, percentile, wait_ready
from PIL import Image

BATCH_SIZE = 500
TOKENS_PER_ACCOUNT = 10  # the default mint limit per account and 30 minutes
CALLER = "911234567890"


def record(label_id: str, receiver: str, now_ms: int) -> dict[str, Any]:
    return {
        "label_id": label_id,
        "caller_number": CALLER,
        "receiver_number": receiver,
        "dynamic_call_reason": "Flower Delivery",
        "starts_at": now_ms,
        "ends_at": now_ms + 3_600_000,
    }


# --- wrk -------------------------------------------------------------------------------------------------------

# Shared by every generated script: counts non-200 answers per thread and prints one JSON line at the end.
WRK_COMMON = r"""
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
bad = 0
first_bad = ""
function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    if first_bad == "" then first_bad = status .. " " .. string.sub(body, 1, 300) end
  end
end
function done(summary, latency, requests)
  local bad_total, first = 0, ""
  for _, thread in ipairs(threads) do
    bad_total = bad_total + thread:get("bad")
    if first == "" then first = thread:get("first_bad") end
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"non200": %d, "socket_errors": %d, "first_bad": %q}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    bad_total, errors.connect + errors.read + errors.write + errors.timeout, first))
end
"""


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal without exotic characters is a valid Lua literal


def wrk_script_plain(path: str) -> str:
    return f"wrk.method = 'GET'\nwrk.path = {lua_string(path)}\n" + WRK_COMMON


def wrk_script_r2(targets: list[dict[str, str]], now_ms: int) -> str:
    rows = ",\n".join(
        f"  {{path = {lua_string(t['path'])}, auth = {lua_string(t['auth'])}, label = {lua_string(t['label'])}}}"
        for t in targets
    )
    return (
        f"local targets = {{\n{rows}\n}}\n"
        f"local now_ms = {now_ms}\n"
        r"""
local counter = 0
local base = 9000000000
function init(args)
  base = 9000000000 + id * 100000000
end
function request()
  counter = counter + 1
  local target = targets[(counter % #targets) + 1]
  local body = '{"label_id":"' .. target.label .. '","caller_number":"911234567890","receiver_number":"91' ..
    string.format("%.0f", base + counter) .. '","dynamic_call_reason":"Flower Delivery","starts_at":' ..
    string.format("%.0f", now_ms) .. ',"ends_at":' .. string.format("%.0f", now_ms + 3600000) .. '}'
  return wrk.format("POST", target.path, {["Authorization"] = target.auth, ["Content-Type"] = "application/json"}, body)
end
""" + WRK_COMMON
    )


def wrk_script_lookup(device_tokens: list[str]) -> str:
    rows = ",\n".join(f"  {lua_string('Bearer ' + t)}" for t in device_tokens)
    return (
        f"local auths = {{\n{rows}\n}}\n"
        r"""
local counter = 0
function request()
  counter = counter + 1
  return wrk.format("GET", "/app/v1/caller-id?caller=911234567890", {["Authorization"] = auths[(counter % #auths) + 1]})
end
""" + WRK_COMMON
    )


def run_wrk(base: str, script: str, args: argparse.Namespace, folder: Path, name: str) -> dict[str, Any]:
    script_path = folder / f"{name}.lua"
    script_path.write_text(script)
    command = [
        args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "10s",
        "-s", str(script_path), base,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 120)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
            result["per_second"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise SystemExit(f"wrk gave no result:\n{done.stdout}\n{done.stderr}")


def report(name: str, unit: str, result: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, Any]:
    ratio = result["per_second"] / ceiling["per_second"]
    print(
        f"  {name}: {result['requests']:,} in {result['duration_us'] / 1e6:.1f} s: "
        f"{result['per_second']:,.0f} {unit}/s, "
        f"p50 {result['p50_us'] / 1000:.1f} ms, p99 {result['p99_us'] / 1000:.1f} ms, "
        f"{ratio:.1%} of the ceiling"
    )
    return result
    if result["non200"] or result["socket_errors"]:
        raise SystemExit(
            f"  {name}: {result['non200']} non-200 answers, {result['socket_errors']} socket errors; "
            f"first: {result['first_bad']}"
        )


# --- B2 (Python client) ----------------------------------------------------------------------------------------


async def python_ceiling(base: str, concurrency: int, seconds: float) -> float:
    count = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:

        async def loop() -> None:
            nonlocal count
            while time.perf_counter() < stop_at:
                (await http.get("/healthz")).raise_for_status()
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


async def bench_b2(base: str, tenants: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, float]:
    now_ms = int(time.time() * 1000)
    # (account, auth, body) per batch, rotating over every token; bodies serialised before the clock starts.
    pairs = [(t["account_id"], auth, t["label_id"]) for t in tenants for auth in t["auths"]]
    jobs = []
    for b in range(args.batches):
        account, auth, label_id = pairs[b % len(pairs)]
        body = {
            "call_records": [
                record(label_id, f"91{8_000_000_000 + b * BATCH_SIZE + i}", now_ms) for i in range(BATCH_SIZE)
            ]
        }
        jobs.append((account, auth, orjson.dumps(body)))
    accepted: list[tuple[str, dict[str, str], str]] = []
    latencies: list[float] = []
    queue = iter(jobs)

    async def client_loop(http: httpx.AsyncClient) -> None:
        for account, auth, body in queue:
            started = time.perf_counter()
            response = await http.post(
                f"/v2/clients/{account}/dynamic_call_records",
                content=body,
                headers={**auth, "Content-Type": "application/json"},
            )
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"B2 answered {response.status_code}: {response.text[:300]}")
            accepted.append((account, auth, response.json()["batch_id"]))

    ceiling = await python_ceiling(base, args.b2_concurrency, 3)
    limits = httpx.Limits(max_connections=args.b2_concurrency, max_keepalive_connections=args.b2_concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=300) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(args.b2_concurrency)))
        accept_seconds = time.perf_counter() - started
        records = args.batches * BATCH_SIZE
        print(
            f"  B2 accepted: {records:,} records ({args.batches} batches, {args.b2_concurrency} clients) in "
            f"{accept_seconds:.2f} s: {records / accept_seconds * 60:,.0f} records/min "
            f"({records / accept_seconds:,.0f} records/s), per batch p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms; {args.batches / accept_seconds / ceiling:.1%} of the "
            f"Python client's healthz ceiling ({ceiling:,.0f}/s) in requests"
        )
        # The last accepted batch is about the last to finish: wait for it (polling S2 of 500 records is not
        # free, so not too often), then confirm every other batch is finished too.
        finished_at = time.perf_counter()
        for index, (account, auth, batch_id) in enumerate([accepted[-1], *accepted[:-1]]):
            waited = index == 0
            while True:
                response = await http.get(
                    f"/v2/clients/{account}/dynamic_call_records?batchId={batch_id}", headers=auth
                )
                response.raise_for_status()
                rows = response.json()["data"]
                if len(rows) == BATCH_SIZE and all(row["status_info"]["status"] != "pending" for row in rows):
                    break
                waited = True
                await asyncio.sleep(0.25)
            if waited:  # checking an already finished batch is not processing time
                finished_at = time.perf_counter()
        processed = finished_at - started
    print(
        f"  B2 fully processed: all {records:,} records in {processed:.2f} s: "
        f"{records / processed * 60:,.0f} records/min"
    )
    return {"accepted_per_minute": records / accept_seconds * 60, "processed_per_minute": records / processed * 60}


# --- setup -----------------------------------------------------------------------------------------------------


def make_tenant(env: dict[str, str], index: int, logo: Path) -> dict[str, Any]:
    account = cli(env, "accounts", "create", "--name", f"Bench Co {index}", "--admin-email", f"admin{index}@bench.test")
    account_id = account["client_account_id"]
    key = cli(env, "api-keys", "create", "--account", account_id, "--name", "bench")
    label = cli(env, "labels", "create", "--account", account_id, "--name", f"Bench {index}", "--logo", str(logo))
    return {"account_id": account_id, "key": key, "label_id": label["id"]}


def make_tenants(env: dict[str, str], folder: Path, count: int) -> list[dict[str, Any]]:
    """``count`` accounts with a key and a label each (real CLI); the first migrates the database."""
    logo = folder / "logo.png"
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), "teal").save(buffer, format="PNG")
    logo.write_bytes(buffer.getvalue())
    tenants = [make_tenant(env, 0, logo)]
    # The others in parallel (each CLI call is a Python start-up).
    with ThreadPoolExecutor(max_workers=4) as pool:
        tenants += list(pool.map(lambda i: make_tenant(env, i, logo), range(1, count)))
    return tenants


def prepare(base: str, tenants: list[dict[str, Any]], phones: int) -> list[str]:
    """Mints every tenant's tokens; registers the phones and gives each a live record from CALLER."""
    with httpx.Client(base_url=base, timeout=60) as http:
        for tenant in tenants:
            tenant["auths"] = []
            for _ in range(TOKENS_PER_ACCOUNT):
                minted = http.post(
                    f"/clients/{tenant['account_id']}/token",
                    json={"key_id": tenant["key"]["key_id"], "api_key": tenant["key"]["api_key"]},
                    headers={"X-Public-Access": "allow"},
                )
                minted.raise_for_status()
                tenant["auths"].append({"Authorization": f"Bearer {minted.json()['token']}"})
        device_tokens = []
        now_ms = int(time.time() * 1000)
        for index in range(phones):
            receiver = f"91{9_300_000_000 + index}"
            device = http.post(
                "/app/v1/devices", json={"phone_number": receiver, "platform": "android", "app_version": "99.0.0"}
            )
            device.raise_for_status()
            device_tokens.append(device.json()["device_token"])
            tenant = tenants[index % len(tenants)]
            pushed = http.post(
                f"/v2/clients/{tenant['account_id']}/dynamic_call_record",
                json=record(tenant["label_id"], receiver, now_ms),
                headers=tenant["auths"][0],
            )
            pushed.raise_for_status()
        probe = http.get(
            "/app/v1/caller-id", params={"caller": CALLER}, headers={"Authorization": f"Bearer {device_tokens[0]}"}
        )
        if probe.status_code != 200 or probe.json().get("verified") is not True:
            raise SystemExit(f"lookup set-up failed: {probe.status_code} {probe.text}")
    return device_tokens


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs the phases against one backend; their figures by phase name."""
    figures: dict[str, Any] = {}
    folder = Path(tempfile.mkdtemp(prefix=f"callerid-bench-{backend}-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERID_")}
    env.update(
        CALLERID_DATA_DIR=str(folder / "data"),
        CALLERID_PORT=str(port),
        CALLERID_WORKERS=str(args.workers),
        CALLERID_LOG_LEVEL=args.log_level,
        # Registering thousands of phones measures lookups, not SMS codes: phones register without proof here.
        CALLERID_DEVICE_VERIFIER="none",
    )
    database = f"callerid_bench_{os.getpid()}"
    if backend == "sqlite":
        env["CALLERID_DATABASE_URL"] = f"sqlite+aiosqlite:///{folder / 'callerid.db'}"
    else:
        subprocess.run(["psql", args.postgres_admin, "-qc", f"CREATE DATABASE {database}"], check=True)
        env["CALLERID_DATABASE_URL"] = f"{args.postgres}/{database}"
        env["CALLERID_REDIS_URL"] = f"{args.redis}/{args.redis_db}"
        env["CALLERID_SECRET_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()  # required with PostgreSQL
        subprocess.run(["redis-cli", "-u", env["CALLERID_REDIS_URL"], "flushdb"], check=True, capture_output=True)
    server: subprocess.Popen[bytes] | None = None
    try:
        tenants = make_tenants(env, folder, args.accounts)

        server_log = open(folder / "serve.log", "wb")  # noqa: SIM115 - closed with the folder
        server = subprocess.Popen([str(CALLERID), "serve"], env=env, stdout=server_log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, server)
        device_tokens = prepare(base, tenants, args.phones)
        with open("/proc/loadavg") as loadavg:
            load = loadavg.read().split()[:3]
        print(
            f"{backend}: callerid serve, {args.workers} process(es), {os.cpu_count()} CPUs, load {' '.join(load)}; "
            f"{len(tenants)} accounts x {TOKENS_PER_ACCOUNT} tokens, {len(device_tokens)} phones; "
            f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s"
        )
        profiler = None
        if args.profile:  # samples every phase in the worker process(es), only while they hold the GIL
            spy = Path(sys.executable).parent / "py-spy"
            profiler = subprocess.Popen(
                [str(spy), "record", "--gil", "--subprocesses", "--format", "raw", "-r", "200", "-o", args.profile,
                 "--pid", str(server.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        ceiling = run_wrk(base, wrk_script_plain("/healthz"), args, folder, "healthz")
        print(
            f"  ceiling GET /healthz: {ceiling['per_second']:,.0f} requests/s, "
            f"p50 {ceiling['p50_us'] / 1000:.1f} ms, p99 {ceiling['p99_us'] / 1000:.1f} ms"
        )
        if "r2" in args.only:
            targets = [
                {
                    "path": f"/v2/clients/{t['account_id']}/dynamic_call_record",
                    "auth": a["Authorization"],
                    "label": t["label_id"],
                }
                for t in tenants
                for a in t["auths"]
            ]
            result = run_wrk(base, wrk_script_r2(targets, int(time.time() * 1000)), args, folder, "r2")
            figures["r2"] = report("R2", "records", result, ceiling)
        if "lookup" in args.only:
            result = run_wrk(base, wrk_script_lookup(device_tokens), args, folder, "lookup")
            figures["lookup"] = report("lookup", "lookups", result, ceiling)
        if "b2" in args.only and args.batches:
            figures["b2"] = asyncio.run(bench_b2(base, tenants, args))
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
            profiler.wait(timeout=120)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        if backend == "postgres":
            subprocess.run(["psql", args.postgres_admin, "-qc", f"DROP DATABASE IF EXISTS {database}"], check=False)
            subprocess.run(["redis-cli", "-u", env["CALLERID_REDIS_URL"], "flushdb"], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    return figures


def compare(embedded: dict[str, Any], production: dict[str, Any]) -> None:
    """Production (PostgreSQL + Redis) as a share of the embedded default, same run (issue 15: at least 60 %)."""
    print("postgres / sqlite, one serve process each:")
    rows = [
        ("R2 records/s", "r2", lambda f: f["per_second"]),
        ("lookups/s", "lookup", lambda f: f["per_second"]),
        ("B2 records/min accepted", "b2", lambda f: f["accepted_per_minute"]),
        ("B2 records/min processed", "b2", lambda f: f["processed_per_minute"]),
    ]
    for label, phase, value in rows:
        if phase in embedded and phase in production:
            ratio = value(production[phase]) / value(embedded[phase])
            print(f"  {label}: {value(production[phase]):,.0f} / {value(embedded[phase]):,.0f} = {ratio:.0%}")
    if "r2" in production:
        print(f"  R2 p99 on postgres: {production['r2']['p99_us'] / 1000:.1f} ms (target < 50 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--only", default="r2,lookup,b2", help="comma-separated subset of r2,lookup,b2")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk phase")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (each takes CPU from the server)")
    parser.add_argument("--accounts", type=int, default=8, help="accounts, 10 tokens each")
    parser.add_argument("--phones", type=int, default=8)
    parser.add_argument("--batches", type=int, default=200, help="B2 batches of 500 records (0 to skip)")
    parser.add_argument("--b2-concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="callerid serve processes")
    parser.add_argument("--log-level", default="INFO", help="CALLERID_LOG_LEVEL of the server")
    parser.add_argument("--profile", help="run the server under py-spy, collapsed stacks to this file")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432")
    parser.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=12)
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    if not shutil.which(args.wrk):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    figures = {}
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        figures[backend] = run_backend(backend, args)
    if len(figures) == 2:
        compare(figures["sqlite"], figures["postgres"])


if __name__ == "__main__":
    main()
