"""What the benchmarks share: the CLI, a free port, waiting for ``callerid serve``, percentiles, CPU per process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

CALLERID = Path(sys.executable).parent / "callerid"


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command line, user + system CPU seconds of it and its reaped children)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended meanwhile
        # Fields after the command: state [0], ppid [1], ..., utime [11], stime [12], cutime [13], cstime [14].
        found[int(entry)] = (int(fields[1]), command, sum(int(value) for value in fields[11:15]) / CLOCK_TICKS)
    return found


def cpu_seconds(serve_pid: int, database: str | None) -> tuple[float, float]:
    """CPU seconds so far of ``callerid serve`` with its descendants, and of PostgreSQL's backends of ``database``
    (0 without one). Linux only (``/proc``)."""
    processes = _processes()
    tree, grew = {serve_pid}, True
    while grew:
        before = len(tree)
        tree |= {pid for pid, (parent, _, _) in processes.items() if parent in tree}
        grew = len(tree) > before
    server = sum(processes[pid][2] for pid in tree if pid in processes)
    postgres = sum(
        cpu
        for _, command, cpu in processes.values()
        if database is not None and command.startswith("postgres: ") and f" {database} " in command
    )
    return server, postgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    """``callerid <args> --json`` and its one JSON object; exits the benchmark when the command fails."""
    done = subprocess.run([str(CALLERID), *args, "--json"], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"callerid {' '.join(args)} failed:\n{done.stderr}")
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("callerid serve exited early")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("callerid serve did not become ready")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
