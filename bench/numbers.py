# ruff: noqa: E402 - the imports must follow the sys.path fix below
"""Benchmark: one 10,000-number publish (NL) on the embedded default (SQLite, jobs inside ``callerid serve``).

Sets up an account, tree, static label and feature set with the real CLI, starts ``callerid serve`` on a
temporary SQLite database, mints a token, POSTs 10,000 numbers and prints how long the answer took; then polls
NN until every number is listed and prints how long processing took (this includes the job delay setting,
``CALLERID_NUMBER_JOB_DELAY_SECONDS``, default 2 s, which the figure also reports separately).

Run: ``.venv/bin/python bench/numbers.py`` (add ``--numbers N`` to change the size).
"""

from __future__ import annotations

import os.path
import sys

# This file is named like the standard library's ``numbers`` module; run as a script, its folder comes first
# on sys.path and would shadow it for every later import, so drop the folder.
_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
# ... so move it to the end: the standard library wins, and bench/benchkit.py stays importable.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _BENCH_DIR] + [_BENCH_DIR]

import argparse
import io
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from benchkit import CALLERID, cli, free_port, wait_ready
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=10_000)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="callerid-bench-numbers-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERID_")}
    env.update(
        CALLERID_DATABASE_URL=f"sqlite+aiosqlite:///{folder}/bench.db",
        CALLERID_DATA_DIR=str(folder / "data"),
        CALLERID_PORT=str(port),
        CALLERID_LOG_LEVEL="WARNING",
    )
    delay = float(env.get("CALLERID_NUMBER_JOB_DELAY_SECONDS", "2"))

    account = cli(env, "accounts", "create", "--name", "Bench Co", "--admin-email", "bench@bench.test")
    account_id = account["client_account_id"]
    key = cli(env, "api-keys", "create", "--account", account_id, "--name", "bench")
    department = cli(env, "departments", "create", "--account", account_id, "--name", "Logistics")
    operation = cli(
        env, "operations", "create", "--account", account_id, "--department", department["id"],
        "--name", "Last mile", "--calling-operation", "Delivery",
    )  # fmt: skip
    process = cli(env, "processes", "create", "--account", account_id, "--operation", operation["id"], "--name", "Door")
    logo = folder / "logo.png"
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), (20, 90, 200)).save(buffer, format="PNG")
    logo.write_bytes(buffer.getvalue())
    label = cli(
        env, "labels", "create", "--account", account_id, "--name", "Bench Parcels", "--logo", str(logo),
        "--type", "static",
    )  # fmt: skip
    feature_set = cli(
        env, "feature-sets", "create", "--account", account_id, "--process", process["id"], "--name", "Bench set",
        "--label", label["id"], "--call-reason", "Your parcel is on its way",
    )  # fmt: skip

    server = subprocess.Popen([str(CALLERID), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        with httpx.Client(base_url=base, timeout=60) as http:
            minted = http.post(
                f"/clients/{account_id}/token",
                json={"key_id": key["key_id"], "api_key": key["api_key"]},
                headers={"X-Public-Access": "allow"},
            )
            minted.raise_for_status()
            auth = {"Authorization": f"Bearer {minted.json()['token']}"}
            numbers = [f"91{7000000000 + i}" for i in range(args.numbers)]
            # One small request first so the timed one does not pay for first-use warm-up (imports, pools).
            http.post(
                f"/clients/{account_id}/number_management/feature_sets/{feature_set['id']}/numbers/delist",
                json={"phone_numbers": ["919999999999"]},
                headers=auth,
            ).raise_for_status()

            started = time.perf_counter()
            answer = http.post(
                f"/clients/{account_id}/number_management/feature_sets/{feature_set['id']}/numbers/publish",
                json={"phone_numbers": numbers},
                headers=auth,
            )
            answered = time.perf_counter()
            answer.raise_for_status()
            body = answer.json()
            assert body["status"] == "pending" and len(body["new_numbers"]) == args.numbers, body["status"]

            limit = 1000
            pages = (args.numbers + limit - 1) // limit

            def listed_on(page: int) -> int:
                response = http.get(
                    f"/clients/{account_id}/number_management/numbers",
                    params={"feature_set_id": feature_set["id"], "limit": limit, "page": page},
                    headers=auth,
                )
                response.raise_for_status()
                return sum(1 for item in response.json()["numbers"] if item["status"] == "listed")

            # A job moves all its numbers in one transaction, so poll the first page cheaply and confirm every
            # page once it is listed (polling all pages each time would measure the polling, not the job).
            while True:
                if listed_on(1) == min(limit, args.numbers):
                    seen = time.perf_counter()
                    listed = sum(listed_on(page) for page in range(1, pages + 1))
                    if listed == args.numbers:
                        break
                if time.perf_counter() - answered > 120:
                    raise SystemExit(f"not all {args.numbers} listed after 120 s")
                time.sleep(0.02)
            processed = time.perf_counter()
    finally:
        server.terminate()
        server.wait(timeout=30)

    answer_ms = (answered - started) * 1000
    processing_s = seen - answered
    print(f"numbers published:        {args.numbers}")
    print(f"answer time (NL 200):     {answer_ms:.0f} ms")
    print(f"all listed after answer:  {processing_s:.2f} s (includes the {delay:g} s job delay setting)")
    print(f"processing beyond delay:  {max(0.0, processing_s - delay):.2f} s")
    print(f"all {pages} NN pages confirmed listed {processed - answered:.2f} s after the answer")


if __name__ == "__main__":
    main()
