"""The client against a server with tight settings: tokens that live 3 seconds and a low request limit, so that
expiry and 429 storms happen within seconds; and a connection dropped after the server committed a batch."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from callerid_client import AsyncClient, Client, RetryEvent, TokenStore

from conftest import Served, make_server, set_up

TTL_SECONDS = 3


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = make_server(
        tmp_path_factory.mktemp("client-tight"),
        "sqlite",
        CALLERID_TOKEN_TTL_SECONDS=str(TTL_SECONDS),
        CALLERID_TOKEN_CACHE_SECONDS="0",
        CALLERID_RATE_LIMIT_GENERAL="15/second",
        CALLERID_RATE_LIMIT_BATCH_V2="3/2 seconds",
    )
    try:
        set_up(running, tree=False)
        running.start()
        yield running
    finally:
        running.stop()


def record(served: Served, index: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "label_id": served.label_id,
        "caller_number": "911234567890",
        "receiver_number": f"9196{index:08d}",
        "starts_at": now,
        "ends_at": now + 3_600_000,
    }


@pytest.mark.slow
def test_expiring_tokens_and_a_storm_of_429s_are_handled_without_error(tight: Served) -> None:
    events: list[RetryEvent] = []
    lock = threading.Lock()

    def on_retry(event: RetryEvent) -> None:
        with lock:
            events.append(event)

    # No pacing on our side: every limit is met as 429s; the token TTL is not told: found out by 401s.
    api = Client(*tight.client_args(), requests_per_second=None, batches_per_minute=None, on_retry=on_retry,
                 on_mint_limit="raise")  # fmt: skip
    failures: list[BaseException] = []

    def hammer(worker: int) -> None:
        try:
            deadline = time.monotonic() + TTL_SECONDS * 2 + 1
            count = 0
            while time.monotonic() < deadline:
                api.list_labels()
                api.personalise(record(tight, worker * 1000 + count))
                count += 1
        except BaseException as exc:  # reported below
            failures.append(exc)

    with api:
        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        reasons = {event.reason.split(":")[0] for event in events}
        assert "429 rate-limit-exceeded" in reasons
        assert any(reason.startswith("401") for reason in reasons)
        assert 2 <= api.tokens.minted <= 5  # one per expiry, not one per 401

        # Batches over their own limit (3 per 2 s), not paced here: ridden out with Retry-After, tokens renewed on time
        paced = Client(*tight.client_args(), batches_per_minute=None, on_retry=on_retry, token_ttl=TTL_SECONDS,
                       on_mint_limit="raise")  # fmt: skip
        with paced:
            result = paced.personalise_many([record(tight, 90_000 + i) for i in range(8 * 50)], batch_size=50,
                                            concurrency=8, poll_interval=0.2, timeout=60)  # fmt: skip
        assert result.finished and result.counts() == {"not_app_user": 400}


def _supports_idempotency(served: Served, tokens: TokenStore) -> bool:
    """Whether the server replays a POST sent again with the same Idempotency-Key."""
    with Client(*served.client_args(), tokens=tokens) as api:
        token = api.get_token()
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "probe-" + str(time.time_ns())}
    body = {"call_records": [record(served, 1)]}
    path = f"{served.base}/v2/clients/{served.account_id}/dynamic_call_records"
    first = httpx.post(path, json=body, headers=headers)
    second = httpx.post(path, json=body, headers=headers)
    return first.status_code == 200 and second.headers.get("idempotent-replayed", "").lower() == "true"


class DropAfterCommit(httpx.BaseTransport):
    """Sends each request; for the first B2 request, throws the server's answer away and reports a dropped
    connection, as if the network failed after the server committed the batch."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.dropped = 0
        self.keys: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/dynamic_call_records") and request.method == "POST":
            self.keys.append(request.headers.get("idempotency-key", ""))
            if not self.dropped:
                response.read()
                response.close()
                self.dropped += 1
                raise httpx.RemoteProtocolError("connection dropped after the answer was sent", request=request)
        return response


def test_a_batch_retried_after_a_dropped_connection_is_stored_once(served: Served, tokens: TokenStore) -> None:
    if not _supports_idempotency(served, tokens):
        pytest.skip("the server does not replay Idempotency-Key requests yet (no Idempotent-Replayed header)")
    transport = DropAfterCommit()
    with Client(*served.client_args(), tokens=tokens, transport=transport) as api:
        answer = api.personalise_batch([record(served, 7), record(served, 8)])
        assert transport.dropped == 1 and len(transport.keys) == 2 and transport.keys[0] == transport.keys[1]
        status = api.batch_status(answer.batch_id)
        assert len(status.data) == 2
        # and only one batch holds them: the first try's batch is the one answered again
        result = api.personalise_many([record(served, 9)], poll_interval=0.2, timeout=30)
        assert result.finished


def test_concurrent_identical_requests_store_one_batch(served: Served, tokens: TokenStore) -> None:
    if not _supports_idempotency(served, tokens):
        pytest.skip("the server does not replay Idempotency-Key requests yet (no Idempotent-Replayed header)")

    async def twice() -> list[str]:
        async with AsyncClient(*served.client_args(), tokens=tokens) as api:
            call = api.api.batch([record(served, 11), record(served, 12)])  # one logical request, one key
            answers = await asyncio.gather(api._send(call), api._send(call), api._send(call))
            return [answer.batch_id for answer in answers]

    batch_ids = asyncio.run(twice())
    assert len(set(batch_ids)) == 1


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server whose operator raised the batch limit (so 200 batches need not take 3 minutes)."""
    running = make_server(
        tmp_path_factory.mktemp("client-roomy"), "sqlite", CALLERID_RATE_LIMIT_BATCH_V2="100000/minute"
    )
    try:
        set_up(running, tree=False)
        running.start()
        yield running
    finally:
        running.stop()


@pytest.mark.slow
def test_a_100000_row_csv_gets_every_outcome(roomy: Served, tmp_path: Path) -> None:
    from callerid_client.cli.app import app
    from typer.testing import CliRunner

    now = int(time.time() * 1000)
    calls = tmp_path / "calls.csv"
    with calls.open("w") as handle:
        handle.write("caller_number,receiver_number,label_id,dynamic_call_reason,starts_at,ends_at\n")
        for index in range(100_000):
            reason = "Your flower delivery" if index % 1000 else "Bad reason #"  # 100 invalid rows
            handle.write(f"911234567890,9190{index:08d},{roomy.label_id},{reason},{now},{now + 3_600_000}\n")
    env = {
        "CALLERID_CLIENT_BASE_URL": roomy.base,
        "CALLERID_CLIENT_ACCOUNT_ID": roomy.account_id,
        "CALLERID_CLIENT_KEY_ID": roomy.key_id,
        "CALLERID_CLIENT_API_KEY": roomy.api_key,
        "CALLERID_CLIENT_CACHE": str(tmp_path / "cache"),
    }
    args = ["--batches-per-minute", "0", "personalise", "--csv", str(calls), "--wait", "--skip-invalid", "--json"]
    done = CliRunner().invoke(app, args, env=env)
    assert done.exit_code == 0, done.output
    answer = json.loads(done.stdout)
    assert answer["finished"] and answer["total"] == 100_000
    assert answer["outcomes"] == {"not_app_user": 99_900, "invalid_input": 100}
    rows = (tmp_path / "calls.outcomes.csv").read_text().splitlines()
    assert len(rows) == 100_001 and rows[1].startswith("2,911234567890,919000000000,invalid_input")
