# ruff: noqa: E402 - the imports must follow the sys.path fix below
"""Benchmark: scale-out on PostgreSQL + Redis: 1, 2 and 4 ``callerid serve`` processes, jobs in separate workers.

For each process count (``--processes``, default ``1,2,4``) on one fresh PostgreSQL database and one Redis database:
starts ``callerid serve`` with ``CALLERID_WORKERS=N`` and ``CALLERID_RUN_JOBS_IN_PROCESS=false`` plus one
``callerid worker``, then drives R2 (``POST /v2/clients/{id}/dynamic_call_record``) and the caller-ID lookup
(``GET /app/v1/caller-id``) with ``wrk`` for ``--seconds`` each (the load and set-up of bench/personalisation.py).
For each phase it prints the throughput and the CPU time the server used per request, read from ``/proc``: the
``callerid`` processes (serve and its workers) and PostgreSQL's processes, in milliseconds per request.

How to read it: throughput cannot grow on a 2-core machine (the load generator, the server processes and
PostgreSQL share the same two cores), but CPU per request shows whether processes get in each other's way. If it
stays flat from 1 to 4 processes, nothing is shared that costs more with more processes (locks, contended rows,
cache invalidation); on a machine with more cores, throughput then grows with the processes until PostgreSQL's
own CPU is the limit. The last line compares CPU per request at the largest count with one process (the target:
at most 15 % more).

The load is paced (``--rate``, default 200 requests/s for each process, so 800 in all at 4 processes; N in all with
``--fixed-load``): each process sees the same load as the single one did and has spare time, so even on a machine
with fewer cores than processes CPU per request compares the code paths, not how full each process's groups are when
it gets only a share of a core (choose N so that N x the largest count fits the cores). ``--rate 0`` saturates
instead: on 2 cores, 4 busy processes then share two cores with PostgreSQL and the load generator, and CPU per
request rises with the oversubscription (README).

Run: ``.venv/bin/python bench/scale.py`` (``--help`` for the knobs). Needs ``wrk`` (Debian package) and Linux.
"""

from __future__ import annotations

import os.path
import sys

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _BENCH_DIR] + [_BENCH_DIR]

import argparse
import base64
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import CALLERID, cpu_seconds, free_port, wait_ready

from personalisation import make_tenants, prepare, r2_targets, run_wrk, wrk_script_lookup, wrk_script_r2


def measure(name: str, serve_pid: int, database: str, run: Any) -> dict[str, float]:
    server_before, postgres_before = cpu_seconds(serve_pid, database)
    result = run()
    server_after, postgres_after = cpu_seconds(serve_pid, database)
    requests = result["requests"]
    figures = {
        "per_second": result["per_second"],
        "p99_ms": result["p99_us"] / 1000,
        "server_ms": (server_after - server_before) * 1000 / requests,
        "postgres_ms": (postgres_after - postgres_before) * 1000 / requests,
    }
    print(
        f"  {name}: {figures['per_second']:,.0f}/s, p99 {figures['p99_ms']:.1f} ms; CPU per request: "
        f"callerid {figures['server_ms']:.3f} ms, PostgreSQL {figures['postgres_ms']:.3f} ms"
    )
    return figures


def paced_script(script: str, args: argparse.Namespace) -> str:
    """``script`` with each connection pausing between requests so that all of them send about ``--rate`` requests
    a second (wrk's ``delay()``; the answer's own latency comes on top, so the rate reached is a little lower)."""
    if not args.rate:
        return script
    return script + f"\nfunction delay()\n  return {args.connections_each * 1000 / args.rate:.3f}\nend\n"


def run_count(processes: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    folder = Path(tempfile.mkdtemp(prefix=f"callerid-scale-{processes}-"))
    port = free_port()
    database = f"callerid_scale_{os.getpid()}_{processes}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERID_")}
    env.update(
        CALLERID_DATA_DIR=str(folder / "data"),
        CALLERID_PORT=str(port),
        CALLERID_WORKERS=str(processes),
        CALLERID_RUN_JOBS_IN_PROCESS="false",
        CALLERID_LOG_LEVEL="WARNING",
        CALLERID_DEVICE_VERIFIER="none",
        CALLERID_DATABASE_URL=f"{args.postgres}/{database}",
        CALLERID_REDIS_URL=f"{args.redis}/{args.redis_db}",
        CALLERID_SECRET_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    subprocess.run(["psql", args.postgres_admin, "-qc", f"CREATE DATABASE {database}"], check=True)
    subprocess.run(["redis-cli", "-u", env["CALLERID_REDIS_URL"], "flushdb"], check=True, capture_output=True)
    children: list[subprocess.Popen[bytes]] = []
    try:
        tenants = make_tenants(env, folder, args.accounts)
        log = open(folder / "serve.log", "wb")  # noqa: SIM115 - closed with the folder
        children.append(subprocess.Popen([str(CALLERID), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT))
        children.append(subprocess.Popen([str(CALLERID), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, children[0])
        device_tokens = prepare(base, tenants, args.phones)
        # Weak scaling: every process gets the same load (connections) as the only one did. With a fixed number of
        # connections split over more processes, each process's group commits and grouped Redis calls and reads get
        # smaller, and CPU per request rises for that reason alone, which is not what this bench looks for.
        # With --rate, every connection pauses so that the connections of one process send --rate requests/s in all.
        connections = args.connections * processes if args.per_process else args.connections
        args = argparse.Namespace(**{**vars(args), "connections": connections, "connections_each": args.connections})
        offered = args.rate * processes if args.per_process else args.rate
        paced = f", about {offered:,} requests/s in all" if args.rate else ""
        print(
            f"{processes} serve process(es) + 1 worker, wrk -t{args.threads} -c{connections} -d{args.seconds}s{paced}"
        )
        targets = r2_targets(tenants)
        serve = children[0].pid

        def r2_script() -> str:
            return paced_script(wrk_script_r2(targets, int(time.time() * 1000)), args)

        lookup_script = paced_script(wrk_script_lookup(device_tokens), args)
        # Not measured: each process prepares its statements and fills its caches on its first requests.
        warmup = argparse.Namespace(**{**vars(args), "seconds": args.warmup})
        run_wrk(base, r2_script(), warmup, folder, "warmup-r2")
        run_wrk(base, lookup_script, warmup, folder, "warmup-lookup")
        r2 = measure("R2", serve, database, lambda: run_wrk(base, r2_script(), args, folder, "r2"))
        lookup = measure("lookup", serve, database, lambda: run_wrk(base, lookup_script, args, folder, "lookup"))
        return {"r2": r2, "lookup": lookup}
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=60)
        subprocess.run(["psql", args.postgres_admin, "-qc", f"DROP DATABASE IF EXISTS {database}"], check=False)
        subprocess.run(["redis-cli", "-u", env["CALLERID_REDIS_URL"], "flushdb"], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", default="1,2,4", help="comma-separated serve process counts")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk phase")
    parser.add_argument("--warmup", type=int, default=10, help="seconds of each phase run first, not measured")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (per serve process, see below)")
    parser.add_argument(
        "--rate",
        type=int,
        default=200,
        help="a paced load in requests/s per process (in all with --fixed-load); 0: as fast as the server answers",
    )
    parser.add_argument(
        "--fixed-load",
        dest="per_process",
        action="store_false",
        help="the same --connections whatever the process count (default: --connections per process)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=8, help="accounts, 10 tokens each")
    parser.add_argument("--phones", type=int, default=8)
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432")
    parser.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=12)
    args = parser.parse_args()
    if not shutil.which(args.wrk):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    counts = [int(n) for n in args.processes.split(",")]
    results = {count: run_count(count, args) for count in counts}
    print("\nprocesses | R2/s | R2 CPU ms/req (callerid + PostgreSQL) | lookups/s | lookup CPU ms/req")
    for count, phases in results.items():
        r2, lookup = phases["r2"], phases["lookup"]
        print(
            f"{count} | {r2['per_second']:,.0f} | {r2['server_ms']:.3f} + {r2['postgres_ms']:.3f} | "
            f"{lookup['per_second']:,.0f} | {lookup['server_ms']:.3f} + {lookup['postgres_ms']:.3f}"
        )
    first, last = results[counts[0]], results[counts[-1]]
    for phase in ("r2", "lookup"):
        before = first[phase]["server_ms"] + first[phase]["postgres_ms"]
        after = last[phase]["server_ms"] + last[phase]["postgres_ms"]
        print(f"{phase}: CPU per request at {counts[-1]} processes is {after / before - 1:+.0%} of that at {counts[0]}")


if __name__ == "__main__":
    main()
