# ruff: noqa: E402 - the imports must follow the sys.path fix below
"""Benchmark: call personalisation (R2, B2) and the caller-ID lookup against a real ``callerid serve``.

For each backend (``--backend sqlite`` = the embedded default, ``postgres`` = PostgreSQL + Redis, or ``both``):

1. Sets up ``--accounts`` accounts, each with an API key and a dynamic label (real CLI), starts
   ``callerid serve`` with the default settings (per-token rate limits included) and mints 10 tokens per
   account (the mint limit), so that load is spread over many tokens and the per-token limits are not what
   is measured. Registers ``--phones`` phones and gives each a record from the caller, for the lookup.
   With ``both``, both servers are started and stay up; only one is under load at a time.
2. Warm-up: ``--warmup`` seconds of R2 and of lookups per backend, not measured (statements are prepared, caches
   filled, scripts loaded on first use).
3. ``--rounds`` rounds of: the ceiling ``GET /healthz`` (a trivial endpoint), then R2
   (``POST /v2/clients/{id}/dynamic_call_record`` rotating over the tokens, one new receiver per record), then the
   lookup (``GET /app/v1/caller-id`` rotating over the phones' device tokens), each for ``--seconds`` and each
   against one backend then the other, so that a slower or busier moment of the machine hits both alike. Per
   phase: requests/s, p50/p99, the ratio to the ceiling, and the CPU time per request of the server's processes
   (and of PostgreSQL's backends for the bench database), read from ``/proc``.
4. B2: ``--batches`` batches of 500 records (``--b2-concurrency`` clients, rotating over the tokens): records per
   minute accepted, then polls S2 until every record has a final status: records per minute fully processed.
5. With ``both``: PostgreSQL's figures as a share of SQLite's, the median of the rounds' ratios (issue 15's target:
   at least 60 %), and R2's p99 on PostgreSQL in each round (target: under 50 ms).
6. With ``--before DIR`` (another checkout, e.g. ``git worktree add /tmp/before <commit>``): that checkout's
   embedded default runs as a third backend, in turn with the others, and this checkout's embedded figures are
   printed as a share of it (a regression check in one run).
7. With ``--figures``: each backend runs a second time with ``CALLERID_ANALYTICS_FIGURES=false`` (R2 records not
   counted into the daily figures, issue 13), in turn with the first, and R2 and the lookup with figures are printed
   as a share of without (the cost of keeping the figures, in one run; the issue's bound: at most 5 %).

Load generator: ``wrk`` (C; Debian package ``wrk``) with a generated Lua script for 2-3, because a Python client
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
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from benchkit import CALLERID, cli, cpu_seconds, free_port, percentile, wait_ready
from PIL import Image

BATCH_SIZE = 500
TOKENS_PER_ACCOUNT = 10  # the default mint limit per account and 30 minutes
CALLER = "911234567890"
NO_FIGURES = "-nofigures"  # a backend run with CALLERID_ANALYTICS_FIGURES=false (``--figures``)


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


def report(name: str, unit: str, result: dict[str, Any], ceiling: dict[str, Any] | None) -> dict[str, Any]:
    """Prints a wrk phase's figures (and the CPU per request, when measured); stops on any failed request."""
    share = "" if ceiling is None else f", {result['per_second'] / ceiling['per_second']:.1%} of the ceiling"
    cpu = ""
    if "server_ms" in result:
        cpu = f"; CPU/request: server {result['server_ms']:.3f} ms"
        cpu += f" + PostgreSQL {result['postgres_ms']:.3f} ms" if result["postgres_ms"] else ""
    print(
        f"  {name}: {result['requests']:,} in {result['duration_us'] / 1e6:.1f} s: "
        f"{result['per_second']:,.0f} {unit}/s, "
        f"p50 {result['p50_us'] / 1000:.1f} ms, p99 {result['p99_us'] / 1000:.1f} ms{share}{cpu}"
    )
    if result["non200"] or result["socket_errors"]:
        raise SystemExit(
            f"  {name}: {result['non200']} non-200 answers, {result['socket_errors']} socket errors; "
            f"first: {result['first_bad']}"
        )
    return result


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


@dataclass
class Backend:
    """One running ``callerid serve`` with its tenants and phones, ready for the phases."""

    name: str
    base: str
    server: subprocess.Popen[bytes]
    tenants: list[dict[str, Any]]
    device_tokens: list[str]
    folder: Path
    database: str | None  # PostgreSQL: the bench database (its backends' CPU is counted too)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # phase -> one result per round


@contextmanager
def started(backend: str, args: argparse.Namespace) -> Iterator[Backend]:
    """Sets up a fresh database and tenants for ``backend``, starts ``callerid serve``; tears everything down after."""
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
    if backend == "sqlite-before":  # the other checkout's code, with this virtualenv's packages
        env["PYTHONPATH"] = str(Path(args.before).resolve() / "src")
    if backend.endswith(NO_FIGURES):  # the same code, counting nothing into the daily figures
        env["CALLERID_ANALYTICS_FIGURES"] = "false"
    database = None
    if backend.startswith("sqlite"):
        env["CALLERID_DATABASE_URL"] = f"sqlite+aiosqlite:///{folder / 'callerid.db'}"
    else:
        database = f"callerid_bench_{os.getpid()}{'_nofigures' if backend.endswith(NO_FIGURES) else ''}"
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
        yield Backend(backend, base, server, tenants, device_tokens, folder, database)
    except BaseException:
        log_path = folder / "serve.log"
        if log_path.exists():  # what the server said, before its folder goes
            print(f"--- last lines of {backend}'s serve.log:\n" + "\n".join(log_path.read_text().splitlines()[-60:]))
        raise
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        if database is not None:
            subprocess.run(["psql", args.postgres_admin, "-qc", f"DROP DATABASE IF EXISTS {database}"], check=False)
            subprocess.run(["redis-cli", "-u", env["CALLERID_REDIS_URL"], "flushdb"], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def measured(backend: Backend, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s wrk result plus the CPU the server (and PostgreSQL's backends) spent per request meanwhile."""
    server_before, postgres_before = cpu_seconds(backend.server.pid, backend.database)
    result = run()
    server_after, postgres_after = cpu_seconds(backend.server.pid, backend.database)
    result["server_ms"] = (server_after - server_before) * 1000 / max(result["requests"], 1)
    result["postgres_ms"] = (postgres_after - postgres_before) * 1000 / max(result["requests"], 1)
    return result


def r2_targets(tenants: list[dict[str, Any]]) -> list[dict[str, str]]:
    """R2's path, token and label for every token of every tenant (the R2 script rotates over them)."""
    return [
        {
            "path": f"/v2/clients/{t['account_id']}/dynamic_call_record",
            "auth": a["Authorization"],
            "label": t["label_id"],
        }
        for t in tenants
        for a in t["auths"]
    ]


def phase_script(backend: Backend, phase: str) -> tuple[str, str, str]:
    """The wrk script of a phase, its unit and its title."""
    tenants = backend.tenants
    if phase == "ceiling":
        script, unit, title = wrk_script_plain("/healthz"), "requests", "ceiling GET /healthz"
    elif phase == "r2":
        targets = r2_targets(tenants)
        script, unit, title = wrk_script_r2(targets, int(time.time() * 1000)), "records", "R2"
    else:
        script, unit, title = wrk_script_lookup(backend.device_tokens), "lookups", "lookup"
    return script, unit, title


def run_phase(backend: Backend, phase: str, args: argparse.Namespace) -> None:
    """One wrk phase against one backend; prints and keeps its figures."""
    script, unit, title = phase_script(backend, phase)
    result = measured(backend, lambda: run_wrk(backend.base, script, args, backend.folder, phase))
    ceiling = backend.results.get("ceiling", [None])[-1]
    report(f"{backend.name} {title}", unit, result, ceiling)
    backend.results.setdefault(phase, []).append(result)


def profiled(backend: Backend, path: str) -> subprocess.Popen[bytes]:
    """py-spy sampling the server's process(es) while they hold the GIL, until sent SIGINT."""
    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(spy), "record", "--gil", "--subprocesses", "--format", "raw", "-r", "200", "-o", path,
         "--pid", str(backend.server.pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def median(values: list[float]) -> float:
    return statistics.median(values)


def compare(base: Backend, other: Backend, target: str) -> None:
    """``other``'s figures as a share of ``base``'s, same run: the median over rounds of each round's ratio (the two
    ran one after the other, so the machine's drift cancels)."""
    print(f"{other.name} / {base.name}, one serve process each (median over rounds; {target}):")
    for label, phase in (("R2 records/s", "r2"), ("lookups/s", "lookup")):
        pairs = list(zip(base.results.get(phase, []), other.results.get(phase, []), strict=False))
        if not pairs:
            continue
        ratios = [theirs["per_second"] / ours["per_second"] for ours, theirs in pairs]
        postgres = median([theirs["postgres_ms"] for _, theirs in pairs])
        # CPU per request (server + PostgreSQL) is steadier than requests/s on a shared machine: its ratio too.
        cpu = [
            (theirs["server_ms"] + theirs["postgres_ms"]) / (ours["server_ms"] + ours["postgres_ms"])
            for ours, theirs in pairs
        ]
        print(
            f"  {label}: {median([theirs['per_second'] for _, theirs in pairs]):,.0f} / "
            f"{median([ours['per_second'] for ours, _ in pairs]):,.0f} = {median(ratios):.0%} "
            f"(rounds: {', '.join(f'{r:.0%}' for r in ratios)}); CPU per request "
            f"{median([theirs['server_ms'] for _, theirs in pairs]):.3f} ms"
            + (f" + PostgreSQL {postgres:.3f} ms" if postgres else "")
            + f" against {median([ours['server_ms'] for ours, _ in pairs]):.3f} ms"
            + (f" + PostgreSQL {median([ours['postgres_ms'] for ours, _ in pairs]):.3f} ms" if postgres else "")
            + f"; CPU per request {median(cpu):.0%} (rounds: {', '.join(f'{r:.0%}' for r in cpu)})"
        )
    for label, key in (
        ("B2 records/min accepted", "accepted_per_minute"),
        ("B2 records/min processed", "processed_per_minute"),
    ):
        if base.results.get("b2") and other.results.get("b2"):
            ours, theirs = base.results["b2"][-1][key], other.results["b2"][-1][key]
            print(f"  {label}: {theirs:,.0f} / {ours:,.0f} = {theirs / ours:.0%}")
    if other.results.get("r2"):
        p99s = sorted(result["p99_us"] / 1000 for result in other.results["r2"])
        print(f"  R2 p99 on {other.name}: {', '.join(f'{p:.1f}' for p in p99s)} ms (the rounds; target < 50 ms)")


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
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the wrk phases, the backends in turn")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of each phase run first, not measured")
    parser.add_argument(
        "--before",
        help="another checkout of callerid (its folder): its embedded default is run too, in turn with the others, "
        "and this checkout's compared with it (run with this virtualenv, its src/ first on the path)",
    )
    parser.add_argument(
        "--figures",
        action="store_true",
        help="also run each backend with CALLERID_ANALYTICS_FIGURES=false, in turn, and print the cost of the figures",
    )
    parser.add_argument("--profile", help="sample the servers with py-spy: collapsed stacks to PROFILE.<backend>")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432")
    parser.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=12)
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    if not shutil.which(args.wrk):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    names = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if args.before:
        names.insert(0, "sqlite-before")
    if args.figures:  # each without figures just before itself, so that the two meet the same moment of the machine
        names = [variant for name in names for variant in (name + NO_FIGURES, name)]
    with ExitStack() as stack:
        backends = [stack.enter_context(started(name, args)) for name in names]
        with open("/proc/loadavg") as loadavg:
            load = loadavg.read().split()[:3]
        print(
            f"{' and '.join(names)}: callerid serve, {args.workers} process(es) each, {os.cpu_count()} CPUs, "
            f"load {' '.join(load)}; {args.accounts} accounts x {TOKENS_PER_ACCOUNT} tokens, {args.phones} phones; "
            f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s; {args.rounds} round(s), backends in turn"
        )
        profilers = [profiled(b, f"{args.profile}.{b.name}") for b in backends] if args.profile else []
        phases = ["ceiling"] + [phase for phase in ("r2", "lookup") if phase in args.only]
        if args.warmup:  # first requests prepare statements, fill caches, load scripts: not the steady state
            warmup = argparse.Namespace(**{**vars(args), "seconds": args.warmup})
            for phase in phases[1:]:
                for backend in backends:
                    run_wrk(backend.base, phase_script(backend, phase)[0], warmup, backend.folder, f"warmup-{phase}")
        for round_number in range(1, args.rounds + 1):
            print(f"round {round_number}:")
            for phase in phases:
                for backend in backends:
                    run_phase(backend, phase, args)
        if "b2" in args.only and args.batches:
            for backend in backends:
                print(f"{backend.name}:")
                backend.results["b2"] = [asyncio.run(bench_b2(backend.base, backend.tenants, args))]
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
            profiler.wait(timeout=120)
        by_name = {backend.name: backend for backend in backends}
        if "sqlite" in by_name and "postgres" in by_name:
            compare(by_name["sqlite"], by_name["postgres"], "issue 15's target: at least 60 %")
        if "sqlite" in by_name and "sqlite-before" in by_name:
            compare(by_name["sqlite-before"], by_name["sqlite"], f"this checkout against {args.before}")
        for name in list(by_name):
            if name + NO_FIGURES in by_name:
                compare(by_name[name + NO_FIGURES], by_name[name], "the cost of the daily figures; bound: at most 5 %")


if __name__ == "__main__":
    main()
