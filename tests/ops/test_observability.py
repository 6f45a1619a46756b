"""Request ids, Prometheus metrics and structured logs without secrets (issue point 10)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog

from callerid.accounts import service as accounts
from callerid.config import Settings
from callerid.db import Database
from callerid.ops.logging import configure_logging, flush_access_log, scrub_secrets
from tests.conftest import mint
from tests.ops.probes import CRASH_PATH, SECURE_PATH, add_probe_routes

PUBLIC = {"X-Public-Access": "allow"}
WHSEC = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw=="


# --- X-Request-ID ----------------------------------------------------------------------------------------


SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
async def test_request_id_is_echoed_when_safe_and_generated_otherwise(client: httpx.AsyncClient) -> None:
    for incoming in ["abc-123", "req.2024_01", "A" * 64, str(uuid.uuid4())]:
        response = await client.get("/healthz", headers={"X-Request-ID": incoming})
        assert response.headers["x-request-id"] == incoming
    unsafe: list[bytes | None] = [
        None,
        b"",
        b"A" * 65,
        b"has space",
        b"semi;colon",
        b"<script>",
        "ü-nicode".encode(),
        b"new\tline",
        b"x\r\nSet-Cookie: a=b",
    ]
    for incoming in unsafe:
        headers = {} if incoming is None else {"X-Request-ID": incoming}
        try:
            first = await client.get("/healthz", headers=headers)
        except httpx.LocalProtocolError:
            continue  # the client itself refuses to send it (CR/LF); nothing to check server-side
        second = await client.get("/healthz", headers=headers)
        for response in (first, second):
            assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), incoming
        assert first.headers["x-request-id"] != second.headers["x-request-id"]
    error_response = await client.get("/nowhere", headers={"X-Request-ID": "lost-1"})
    assert (error_response.status_code, error_response.headers["x-request-id"]) == (404, "lost-1")


# --- metrics ---------------------------------------------------------------------------------------------


def sample(metrics_text: str, name: str, labels: dict[str, str]) -> float:
    """The value of one sample (0 when absent), found by name and exact label set."""
    for line in metrics_text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)", line)
        if match and match.group(1) == name:
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2)))
            if found == labels:
                return float(match.group(3))
    return 0.0


@SQLITE_ONLY
async def test_metrics_count_requests_by_route_template_and_status(client: httpx.AsyncClient) -> None:
    account = "8a1e0ada-d53b-4304-8562-54895462e100"
    token_route = {"method": "POST", "route": "/clients/{clientAccountId}/token", "status": "401"}
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    latency = {"method": "GET", "route": "/healthz", "le": "+Inf"}
    before = (await client.get("/metrics")).text

    await client.post(f"/clients/{account}/token", json={})
    await client.post(f"/clients/{account.upper()}/token", json={})
    await client.get("/no/such/path")
    await client.get("/healthz")

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    name = "callerid_http_requests_total"
    assert sample(after, name, token_route) - sample(before, name, token_route) == 2
    assert sample(after, name, unmatched) - sample(before, name, unmatched) == 1
    histogram = "callerid_http_request_duration_seconds_bucket"
    assert sample(after, histogram, latency) - sample(before, histogram, latency) == 1
    assert "# TYPE callerid_http_request_duration_seconds histogram" in after
    # The raw path never becomes a label (unbounded cardinality, and it could hold a token).
    assert account not in after
    assert "/no/such/path" not in after


# --- logs ------------------------------------------------------------------------------------------------


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[str]]]:
    """configure_logging() as ``serve`` does, writing into a buffer instead of stderr."""
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging("INFO", json_output=True)
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)

    def lines() -> list[str]:
        flush_access_log()  # access lines are written in batches
        return buffer.getvalue().splitlines()

    yield lines
    root.handlers, level = saved
    root.setLevel(level)
    structlog.reset_defaults()


async def test_logs_are_json_with_request_ids_and_never_hold_a_secret(
    app: Any, client: httpx.AsyncClient, db: Database, settings: Settings, captured_logs: Callable[[], list[str]]
) -> None:
    async with db.transaction() as session:
        created = await accounts.create_account(session, name="Leaky Ltd", admin_email="admin@leaky.example")
        issued = await accounts.create_api_key(session, settings, account_id=created.account.id, name="k")
    account_id = str(created.account.id)
    from tests.conftest import Tenant

    tenant = Tenant(created.account.id, created.admin_email, issued.key.key_id, issued.secret)
    token = await mint(client, tenant)
    secrets = {
        "token": token,
        "api_key": issued.secret,
        "admin_password": created.admin_password,
        "whsec": WHSEC,
    }
    add_probe_routes(
        app,
        crash_message=(
            f"failed with Bearer {token}, api_key={issued.secret}, password: {created.admin_password}, "
            f"signing {WHSEC}, body {{'api_key': '{issued.secret}'}}"
        ),
    )
    secure = SECURE_PATH.format(clientAccountId=account_id)

    ok = await client.get(secure, headers={"Authorization": f"Bearer {token}", "X-Request-ID": "secure-1"})
    assert ok.status_code == 200
    query = await client.get(f"{secure}?token={token}&api_key={issued.secret}", headers={"X-Request-ID": "query-1"})
    assert query.status_code == 401  # a query-string token is not a credential
    lowercase = await client.get(secure, headers={"Authorization": f"bearer {token}"})
    assert lowercase.status_code == 200
    wrong = await client.get(secure, headers={"Authorization": f"Token {token}"})
    assert wrong.status_code == 500  # unparsable (SPEC §3.4 #2)
    crash = await client.get(CRASH_PATH, headers={"X-Request-ID": "crash-2"})
    assert crash.status_code == 500
    await client.post(f"/clients/{account_id}/token", json=tenant.credentials, headers=PUBLIC)
    # Code that carelessly logs a secret under a telling name, or inside free text.
    structlog.get_logger("callerid.test").warning(
        "careless",
        admin_password=created.admin_password,
        webhook_secret=WHSEC,
        headers={"Authorization": f"Bearer {token}", "X-Api-Key": issued.secret},
        note=f"minted {token} for ?token={token}",
    )

    # Outbound request lines (full URLs) are not logged at INFO.
    logging.getLogger("httpx").info("HTTP Request: GET https://hooks.example/in?key=%s", issued.secret)

    lines = captured_logs()
    assert lines, "nothing was logged"
    assert not any("HTTP Request" in line for line in lines)
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    requests = [e for e in events if e.get("event") == "request"]
    assert len(requests) >= 6
    for entry in requests:
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", entry["request_id"])
        assert {"method", "route", "status", "duration_ms", "timestamp", "level"} <= set(entry)
    by_request_id = {e["request_id"]: e for e in requests}
    assert by_request_id["secure-1"]["route"] == SECURE_PATH
    assert by_request_id["secure-1"]["status"] == "200"
    assert by_request_id["query-1"]["route"] == SECURE_PATH
    assert by_request_id["crash-2"]["status"] == "500"
    crash_lines = [e for e in events if e.get("event") == "unhandled_error"]
    assert len(crash_lines) == 1
    assert crash_lines[0]["request_id"] == "crash-2"
    assert crash_lines[0]["route"] == CRASH_PATH
    assert "RuntimeError: failed with Bearer [redacted]" in crash_lines[0]["exception"]
    careless = next(e for e in events if e.get("event") == "careless")
    assert careless["admin_password"] == careless["webhook_secret"] == "[redacted]"

    output = "\n".join(lines)
    for name, secret in secrets.items():
        assert secret not in output, f"{name} leaked into the logs"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("event", "Authorization: Basic dXNlcjpwYXNz", "Authorization: [redacted] [redacted]"),
        ("event", "url /dl?token=abc123&x=1", "url /dl?token=[redacted]&x=1"),
        ("event", 'json {"password": "p@ss w"}', 'json {"password": "[redacted]"}'),
        ("event", "id 8a1e0ada-d53b-4304-8562-54895462e100 stays", "id 8a1e0ada-d53b-4304-8562-54895462e100 stays"),
        (
            "event",
            "connect postgresql+asyncpg://app:s3cr%40t@db:5432/x failed",
            "connect postgresql+asyncpg://[redacted]@db:5432/x failed",
        ),
        ("event", "POST https://hooks.example/in?sig=1 200", "POST https://hooks.example/in?sig=1 200"),
        ("count", 3, 3),
        ("device_token", "abc", "[redacted]"),
        ("items", [{"secret": "s"}, "Bearer xyz"], [{"secret": "[redacted]"}, "Bearer [redacted]"]),
    ],
)
def test_scrubber(field: str, value: Any, expected: Any) -> None:
    assert scrub_secrets(None, "info", {field: value})[field] == expected


async def test_access_lines_are_written_in_batches_within_the_flush_interval(
    client: httpx.AsyncClient, captured_logs: Callable[[], list[str]]
) -> None:
    import callerid.ops.logging as ops_logging

    for index in range(3):
        await client.get("/healthz", headers={"X-Request-ID": f"batched-{index}"})
    buffered = [json.loads(line) for line in ops_logging._pending_access]
    assert [line["request_id"] for line in buffered] == ["batched-0", "batched-1", "batched-2"]
    await asyncio.sleep(ops_logging.ACCESS_FLUSH_SECONDS * 3)  # the timer writes them, without a flush call
    assert ops_logging._pending_access == []
    written = [json.loads(line) for line in captured_logs() if "batched-" in line]
    assert [line["request_id"] for line in written] == ["batched-0", "batched-1", "batched-2"]
    for line in written:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["timestamp"])
        assert (line["event"], line["logger"], line["route"], line["status"]) == (
            "request",
            "callerid.access",
            "/healthz",
            "200",
        )
