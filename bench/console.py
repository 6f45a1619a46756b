"""Console pages: server time per page for lists of 50 rows, and page weight (CONSOLE.md budgets: under 50 ms on the
embedded default, under 100 KB transferred).

    .venv/bin/python bench/console.py [--database-url URL] [--requests 200]

Builds one account with 60 labels, 5 webhooks, 300 webhook events and 30 members, signs in, then asks each page
``--requests`` times through the ASGI app in this process (the server's own time: routing, session check, queries,
template rendering; no network) and prints p50/p95/max and the page's size. The static files are counted once,
as a browser caches them (they are served with a content hash and ``immutable``); sizes are as sent (gzip).
"""

# ruff: noqa: E402  (sys.path is fixed before the imports)
from __future__ import annotations

import sys
from pathlib import Path

# Running this file puts bench/ first on sys.path, where other benchmarks' names (numbers.py) would shadow
# standard-library modules: move it to the end (benchkit is still found there).
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

import argparse
import asyncio
import re
import tempfile
import time
import uuid

import httpx
from benchkit import percentile

from callerid import clock
from callerid.accounts import service as accounts
from callerid.accounts.models import Member
from callerid.accounts.secrets import hash_password
from callerid.app import create_app
from callerid.config import Settings
from callerid.db.migrate import upgrade
from callerid.labels import service as labels
from callerid.webhooks import service as webhooks
from callerid.webhooks.payloads import envelope

PAGES = (
    "/console",
    "/console/caller-id",
    "/console/api-keys",
    "/console/webhooks",
    "/console/webhooks/events",
    "/console/members",
    "/console/settings",
)


def logo() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (200, 200), "teal").save(out, format="PNG")
    return out.getvalue()


async def populate(app: object, settings: Settings) -> tuple[str, str]:
    db = app.state.runtime.db  # type: ignore[attr-defined]
    password = "benchmark password"
    async with db.transaction() as session:
        created = await accounts.create_account(session, name="Bench Flowers", admin_email="admin@bench.test")
        account_id = created.account.id
        admin = await session.get(Member, (await session.execute(Member.__table__.select())).first().id)
        admin.password_hash = hash_password(password)
        for number in range(3):
            await accounts.create_api_key(session, settings, account_id=account_id, name=f"key {number}")
        image = logo()
        for number in range(60):
            await labels.create_label(session, settings, account_id=account_id, name=f"Label {number:02d}", logo=image)
        for number in range(5):
            await webhooks.create_webhook(
                session,
                settings,
                account_id=account_id,
                name=f"Hook {number}",
                url=f"http://127.0.0.1:9/hook{number}",
                events="cmb,user_feedback",
            )
        for number in range(29):
            session.add(
                Member(
                    id=uuid.uuid4(),
                    account_id=account_id,
                    email=f"member{number}@bench.test",
                    role="admin",
                    password_hash="",
                    status="invited",
                    created_at=clock.now(),
                )
            )

        def payload(event_id: str) -> dict[str, object]:
            return envelope(event_id=event_id, account_id=account_id, event_type="cmb", created_at=clock.now(), body={})

        for _ in range(60):  # 5 webhooks each: 300 events
            await webhooks.emit_event(session, account_id=account_id, event_type="cmb", payload_for=payload)
    return "admin@bench.test", password


async def run(database_url: str, requests: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="callerid-bench-console-"))
    settings = Settings(
        database_url=database_url,
        data_dir=data_dir,
        run_jobs_in_process=False,
        webhook_allow_private=True,
        public_base_url="http://bench",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        email, password = await populate(app, settings)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            form = await http.get("/console/sign-in")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert csrf is not None
            signed = await http.post(
                "/console/sign-in", data={"email": email, "password": password, "csrf_token": csrf.group(1)}
            )
            assert signed.status_code == 303, signed.text
            home = await http.get("/console")
            static = 0
            for path in re.findall(r'(?:href|src)="(/console/static/[^"]+)"', home.text):
                static += (await http.get(path)).num_bytes_downloaded
            print(
                f"database: {database_url.split('://')[0]}; {requests} requests per page; static files {static:,} bytes"
            )
            print(f"{'page':36} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'HTML':>8} {'gzipped':>8} {'+ static':>9}")
            for path in PAGES:
                timings = []
                size = 0
                for _ in range(requests):
                    started = time.perf_counter()
                    response = await http.get(path)
                    timings.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, (path, response.status_code)
                    size, sent = len(response.content), response.num_bytes_downloaded
                rows = response.text.count("<tr>")
                print(
                    f"{path + f' ({rows} rows)':36} {percentile(timings, 0.5):7.1f} {percentile(timings, 0.95):7.1f} "
                    f"{max(timings):7.1f} {size:8,} {sent:8,} {sent + static:9,}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    url = args.database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='callerid-bench-')}/bench.db"
    upgrade(url)
    asyncio.run(run(url, args.requests))


if __name__ == "__main__":
    main()
