"""The client against ``httpx.MockTransport``: tokens, retries, 429 storms, idempotency keys, error shapes, paging,
pacing and ``personalise_many``'s bookkeeping. No server, no sleeping beyond milliseconds."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from callerid_client import (
    AsyncClient,
    AuthenticationError,
    Client,
    IdempotencyKeyReusedError,
    LocalValidationError,
    NothingFoundError,
    RecordValidationError,
    RetryEvent,
    RetryPolicy,
    ServerError,
    TokenMintLimitError,
    TransportError,
    V1FailureError,
)
from callerid_client._core import Pacer, Window

ACCOUNT = "91c173bb-28d8-4030-9722-8663ff9589f3"
LABEL = "c6d86658-008d-4c08-98fb-2bf2649d59a5"
FAST = RetryPolicy(backoff_initial=0.001, backoff_max=0.01, total_timeout=10)
Handler = Callable[[httpx.Request], httpx.Response]


class FakeApi:
    """Answers like the server: tokens (counted), and whatever a test routes for the other paths."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mints = 0
        self.valid: set[str] = set()
        self.requests: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], Handler] = {}

    def token(self) -> str:
        with self.lock:
            self.mints += 1
            value = f"{self.mints:064d}"
            self.valid.add(value)
            return value

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
        path = request.url.path
        if path == f"/clients/{ACCOUNT}/token":
            assert request.headers["x-public-access"] == "allow"
            assert "idempotency-key" not in request.headers
            return httpx.Response(200, json={"token": self.token(), "created_at": "2025-07-10T06:59:05.72Z"})
        auth = request.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid:
            return httpx.Response(401, json={"slug": "authorization-error", "message": "please login again"})
        handler = self.routes.get((request.method, path))
        if handler is None:
            return httpx.Response(404, json={"slug": "not-found", "message": "not found"})
        return handler(request)

    def client(self, **options: Any) -> Client:
        options.setdefault("retry", FAST)
        return Client("http://api.test", ACCOUNT, "key", "secret", transport=httpx.MockTransport(self), **options)

    def async_client(self, **options: Any) -> AsyncClient:
        options.setdefault("retry", FAST)
        return AsyncClient("http://api.test", ACCOUNT, "key", "secret", transport=httpx.MockTransport(self), **options)


LABELS_PATH = f"/clients/{ACCOUNT}/labels"
B2_PATH = f"/v2/clients/{ACCOUNT}/dynamic_call_records"
R2_PATH = f"/v2/clients/{ACCOUNT}/dynamic_call_record"


def labels_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=[{"id": LABEL, "name": "Acme", "logo_url": "", "label_type": "dynamic"}])


def record(receiver: int = 919000000000, **changes: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "label_id": LABEL,
        "caller_number": "911234567890",
        "receiver_number": str(receiver),
        "dynamic_call_reason": "Flower delivery",
        "starts_at": now,
        "ends_at": now + 3_600_000,
        **changes,
    }


# --- tokens ----------------------------------------------------------------------------------------------------------


def test_a_token_is_minted_lazily_and_reused_across_threads() -> None:
    api = FakeApi()
    api.routes[("GET", LABELS_PATH)] = labels_answer
    with api.client() as client:
        assert api.mints == 0
        threads = [threading.Thread(target=client.list_labels) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert api.mints == 1
        assert len(api.requests) == 17


async def test_a_token_is_minted_once_for_concurrent_tasks() -> None:
    api = FakeApi()
    api.routes[("GET", LABELS_PATH)] = labels_answer
    async with api.async_client() as client:
        await asyncio.gather(*(client.list_labels() for _ in range(50)))
    assert api.mints == 1


def test_a_token_is_renewed_before_its_ttl_runs_out() -> None:
    api = FakeApi()
    api.routes[("GET", LABELS_PATH)] = labels_answer
    with api.client(token_ttl=0.3, token_refresh_margin=0.1) as client:
        client.list_labels()
        client.list_labels()
        assert api.mints == 1
        time.sleep(0.3)  # the margin is at most a tenth of the TTL
        client.list_labels()
        assert api.mints == 2
        assert [r.headers["authorization"] for r in api.requests if r.url.path == LABELS_PATH][-1].endswith("2")


def test_a_401_mints_once_and_retries_and_a_second_401_raises() -> None:
    api = FakeApi()
    api.routes[("GET", LABELS_PATH)] = labels_answer
    events: list[RetryEvent] = []
    with api.client(on_retry=events.append) as client:
        client.list_labels()
        api.valid.clear()  # the server forgot every token (expired, revoked)
        client.list_labels()
        assert api.mints == 2
        assert events[-1].reason.startswith("401")

        api.routes[("GET", LABELS_PATH)] = lambda request: httpx.Response(
            401, json={"slug": "authorization-error", "message": "please login again"}
        )
        with pytest.raises(AuthenticationError) as raised:
            client.list_labels()
        assert raised.value.status == 401 and raised.value.slug == "authorization-error"
        assert api.mints == 3  # one more mint, then it gives up


def test_a_burst_of_401s_for_one_expired_token_mints_one_new_token() -> None:
    api = FakeApi()
    api.routes[("GET", LABELS_PATH)] = labels_answer
    with api.client() as client:
        client.list_labels()
        api.valid.clear()
        threads = [threading.Thread(target=client.list_labels) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert api.mints == 2


def test_the_mint_limit_fails_clearly_or_waits() -> None:
    api = FakeApi()
    api.routes[("GET", LABELS_PATH)] = labels_answer
    refusals = {"left": 1}
    original = api.token

    def limited() -> str:
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise _Refuse()
        return original()

    class _Refuse(Exception):
        pass

    def handler(request: httpx.Request) -> httpx.Response:
        try:
            return FakeApi.__call__(api, request)
        except _Refuse:
            return httpx.Response(
                429,
                headers={"Retry-After": "0.05"},
                json={"slug": "rate-limit-exceeded", "message": "maximum of 10 tokens can be created every 30 minutes"},
            )

    api.token = limited  # type: ignore[method-assign]
    transport = httpx.MockTransport(handler)
    with Client("http://api.test", ACCOUNT, "k", "s", transport=transport, retry=FAST, on_mint_limit="raise") as c:
        with pytest.raises(TokenMintLimitError, match="maximum of 10 tokens") as raised:
            c.list_labels()
        assert raised.value.retry_after == pytest.approx(0.05)
    refusals["left"] = 1
    with Client("http://api.test", ACCOUNT, "k", "s", transport=transport, retry=FAST, on_mint_limit="wait") as c:
        assert c.list_labels()[0].id == LABEL
    refusals["left"] = 1
    patient = Client("http://api.test", ACCOUNT, "k", "s", transport=transport, retry=FAST, mint_wait_max=0.01)
    with patient, pytest.raises(TokenMintLimitError):
        patient.list_labels()


# --- retries -------------------------------------------------------------------------------------------------------


def test_a_storm_of_429s_is_ridden_out_with_retry_after() -> None:
    api = FakeApi()
    answers = iter([429] * 12 + [200])

    def storm(request: httpx.Request) -> httpx.Response:
        if next(answers) == 429:
            return httpx.Response(
                429, headers={"Retry-After": "0"}, json={"slug": "rate-limit-exceeded", "message": "too many requests"}
            )
        return labels_answer(request)

    api.routes[("GET", LABELS_PATH)] = storm
    events: list[RetryEvent] = []
    with api.client(on_retry=events.append) as client:
        assert client.list_labels()[0].name == "Acme"
    assert [event.reason for event in events] == ["429 rate-limit-exceeded"] * 12


def test_429s_beyond_the_bound_raise() -> None:
    api = FakeApi()
    api.routes[("GET", LABELS_PATH)] = lambda request: httpx.Response(
        429, headers={"Retry-After": "0"}, json={"slug": "rate-limit-exceeded", "message": "too many requests"}
    )
    client = api.client(retry=RetryPolicy(max_rate_limit_waits=3, backoff_initial=0.001))
    with client, pytest.raises(Exception) as raised:
        client.list_labels()
    assert getattr(raised.value, "status", None) == 429
    assert len([r for r in api.requests if r.url.path == LABELS_PATH]) == 4


def test_5xx_and_connection_errors_back_off_within_the_attempt_bound() -> None:
    api = FakeApi()
    failures = iter(["connect", 503, 502])

    def flaky(request: httpx.Request) -> httpx.Response:
        failure = next(failures, None)
        if failure == "connect":
            raise httpx.ConnectError("refused", request=request)
        if failure is not None:
            return httpx.Response(failure, json={"slug": "internal-server-error", "message": "internal server error"})
        return labels_answer(request)

    api.routes[("GET", LABELS_PATH)] = flaky
    events: list[RetryEvent] = []
    with api.client(on_retry=events.append) as client:
        assert client.list_labels()
    assert [e.reason for e in events] == ["ConnectError", "503 internal-server-error", "502 internal-server-error"]
    assert [e.attempt for e in events] == [1, 2, 3]

    api.routes[("GET", LABELS_PATH)] = lambda request: httpx.Response(503, json={"slug": "x", "message": "down"})
    with api.client(retry=RetryPolicy(max_attempts=3, backoff_initial=0.001)) as client, pytest.raises(ServerError):
        client.list_labels()
    assert len([r for r in api.requests if r.url.path == LABELS_PATH]) == 4 + 3


def test_the_total_time_bounds_the_retries() -> None:
    api = FakeApi()
    api.routes[("GET", LABELS_PATH)] = lambda request: httpx.Response(503, json={"slug": "x", "message": "down"})
    policy = RetryPolicy(max_attempts=100, backoff_initial=0.05, backoff_multiplier=1, total_timeout=0.3)
    with api.client(retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(ServerError):
            client.list_labels()
    assert time.monotonic() - started < 0.5


def test_the_token_parse_error_is_not_retried() -> None:
    api = FakeApi()
    api.routes[("GET", LABELS_PATH)] = lambda request: httpx.Response(
        500, json={"slug": "internal-server-error", "message": "500/50011 - Failed to parse token"}
    )
    with api.client() as client, pytest.raises(ServerError, match="50011"):
        client.list_labels()
    assert len([r for r in api.requests if r.url.path == LABELS_PATH]) == 1


def test_posts_are_retried_with_the_same_idempotency_key() -> None:
    api = FakeApi()
    answers = iter([503, "read", 409, 200, 200])

    def flaky(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if answer == "read":
            raise httpx.ReadError("connection reset", request=request)
        if answer == 409:
            return httpx.Response(
                409,
                headers={"Retry-After": "0"},
                json={"slug": "idempotency-key-in-progress", "message": "a request with this key is in progress"},
            )
        if answer == 503:
            return httpx.Response(503, json={"slug": "unavailable", "message": "busy"})
        return httpx.Response(200, json={"batch_id": "b72f7a40-ec3a-462f-b528-da0e8dc87e79"})

    api.routes[("POST", B2_PATH)] = flaky
    with api.client() as client:
        assert client.personalise_batch([record()]).batch_id.startswith("b72f")
        second = client.personalise_batch([record()])
        assert second.batch_id
    sent = [r for r in api.requests if r.url.path == B2_PATH]
    keys = [r.headers["idempotency-key"] for r in sent]
    assert len(set(keys[:4])) == 1  # one logical request, one key on every try
    assert keys[4] != keys[0]  # the next logical request has its own
    assert json.loads(sent[0].content) == json.loads(sent[3].content)


def test_posts_without_idempotency_keys_are_not_retried_after_they_may_have_arrived() -> None:
    api = FakeApi()
    calls = {"n": 0}

    def once_down(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused", request=request)  # never arrived: safe to send again
        if calls["n"] == 2:
            raise httpx.ReadError("reset", request=request)  # may have arrived
        return httpx.Response(200, json={"batch_id": "b72f7a40-ec3a-462f-b528-da0e8dc87e79"})

    api.routes[("POST", B2_PATH)] = once_down
    client = api.client(retry=RetryPolicy(idempotency_keys=False, backoff_initial=0.001))
    with client, pytest.raises(TransportError, match="ReadError"):
        client.personalise_batch([record()])
    sent = [r for r in api.requests if r.url.path == B2_PATH]
    assert len(sent) == 2 and "idempotency-key" not in sent[0].headers

    api.routes[("POST", B2_PATH)] = lambda request: httpx.Response(503, json={"slug": "x", "message": "busy"})
    with api.client(retry=RetryPolicy(idempotency_keys=False)) as client, pytest.raises(ServerError):
        client.personalise_batch([record()])
    assert len([r for r in api.requests if r.url.path == B2_PATH]) == 3


def test_a_reused_idempotency_key_raises() -> None:
    api = FakeApi()
    api.routes[("POST", B2_PATH)] = lambda request: httpx.Response(
        422, json={"slug": "idempotency-key-reused", "message": "this key was used with another body"}
    )
    with api.client() as client, pytest.raises(IdempotencyKeyReusedError) as raised:
        client.personalise_batch([record()])
    assert raised.value.status == 422 and raised.value.slug == "idempotency-key-reused"


# --- error shapes --------------------------------------------------------------------------------------------------


def test_every_error_shape_becomes_an_exception_with_status_slug_and_message() -> None:
    api = FakeApi()
    api.routes[("POST", R2_PATH)] = lambda request: httpx.Response(
        400,
        json={
            "status_info": {
                "status": "error",
                "field": "ends_at",
                "message": "Request body is invalid: ends_at cannot be older than current time",
            }
        },
    )
    api.routes[("POST", f"/clients/{ACCOUNT}/dynamic_call_records")] = lambda request: httpx.Response(
        400,
        json={
            "status": "failure",
            "message": "ends_at cannot be older than current time. BatchID: d30ca8f7-ae64-4c30-8700-d63f6b2f1dd6",
        },
    )
    api.routes[("GET", f"/clients/{ACCOUNT}/openapi/callback-logs/summary")] = lambda request: httpx.Response(
        404, json={"message": "No CMB found for client Id"}
    )
    api.routes[("POST", f"/v2/clients/{ACCOUNT}/dynamic_call_record")]
    with api.client() as client:
        with pytest.raises(RecordValidationError) as invalid:
            client.personalise(record())
        assert invalid.value.status == 400 and invalid.value.field == "ends_at"
        assert invalid.value.status_info["status"] == "error"
        assert invalid.value.message.endswith("older than current time")
        with pytest.raises(V1FailureError) as failure:
            client.personalise_batch_v1([{"caller": "911234567890"}])
        assert failure.value.batch_id == "d30ca8f7-ae64-4c30-8700-d63f6b2f1dd6"
        with pytest.raises(NothingFoundError) as nothing:
            client.cmb_export(1, 2)
        assert nothing.value.status == 404 and nothing.value.slug is None
        assert nothing.value.message == "No CMB found for client Id"


def test_a_realtime_record_not_delivered_is_an_answer_not_an_exception() -> None:
    api = FakeApi()
    api.routes[("POST", R2_PATH)] = lambda request: httpx.Response(
        200, json={"status_info": {"status": "error", "reason": "not_app_user", "message": "Not an app user"}}
    )
    with api.client() as client:
        result = client.personalise(record())
    assert not result.delivered and result.status_info.outcome == "not_app_user"


# --- paging, pacing ------------------------------------------------------------------------------------------------


def test_iterators_keep_every_filter_on_every_page() -> None:
    api = FakeApi()
    seen: list[dict[str, str]] = []

    def numbers(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen.append(params)
        page = int(params["page"])
        items = [{"phone_number": f"91900000{page:04d}", "status": "listed"}] if page <= 3 else []
        return httpx.Response(200, json={"numbers": items, "pagination_information": {"total_page_count": 3}})

    api.routes[("GET", f"/clients/{ACCOUNT}/number_management/numbers")] = numbers
    with api.client() as client:
        found = list(client.iter_numbers(feature_set_id="fs-1", process_id="p-1", limit=1))
    assert [n.phone_number for n in found] == ["919000000001", "919000000002", "919000000003"]
    assert [s["page"] for s in seen] == ["1", "2", "3"]
    assert all(s["feature_set_id"] == "fs-1" and s["process_id"] == "p-1" and s["limit"] == "1" for s in seen)
    assert all("department_id" not in s for s in seen)


def test_the_pacer_keeps_each_token_under_its_window() -> None:
    pacer = Pacer(Window(100, 1.0), Window(3, 0.2))
    assert [pacer.reserve("t", "batch") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = pacer.reserve("t", "batch")
    assert 0.1 < wait <= 0.2
    assert pacer.reserve("other", "batch") == 0.0  # per token
    assert pacer.reserve("t", "plain") == 0.0  # only batches have the minute window
    time.sleep(wait)
    assert pacer.reserve("t", "batch") == 0.0


# --- personalise_many ------------------------------------------------------------------------------------------------


class Batches:
    """B2 and S2 in memory: each batch answers pending on its first poll, then final outcomes."""

    def __init__(self, api: FakeApi):
        self.stored: dict[str, list[dict[str, Any]]] = {}
        self.polls: dict[str, int] = {}
        api.routes[("GET", LABELS_PATH)] = labels_answer
        api.routes[("POST", B2_PATH)] = self.submit
        api.routes[("GET", B2_PATH)] = self.status

    def submit(self, request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)["call_records"]
        assert 1 <= len(records) <= 500
        batch_id = f"00000000-0000-4000-8000-{len(self.stored):012d}"
        self.stored[batch_id] = records
        return httpx.Response(200, json={"batch_id": batch_id})

    def status(self, request: httpx.Request) -> httpx.Response:
        batch_id = request.url.params["batchId"]
        self.polls[batch_id] = self.polls.get(batch_id, 0) + 1
        data = []
        for index, item in enumerate(self.stored[batch_id]):
            if self.polls[batch_id] == 1:
                info = {"status": "pending"}
            elif int(item["receiver_number"]) % 2:
                info = {"status": "error", "reason": "not_app_user", "message": "Not an app user"}
            else:
                info = {"status": "success"}
            data.append({"id": f"{batch_id[:-4]}{index:04d}", **item, "status_info": info})
        return httpx.Response(200, json={"client_account_id": ACCOUNT, "batch_id": batch_id, "data": data})


def test_personalise_many_chunks_validates_reports_and_returns_every_outcome() -> None:
    api = FakeApi()
    batches = Batches(api)
    records = [record(919000000000 + i) for i in range(1203)]
    records[7]["dynamic_call_reason"] = "Call #7 about your order"  # unsupported character
    records[8]["label_id"] = "255297eb-7f13-44f9-967a-f287ff0f5025"  # not a label of the account
    seen: list[tuple[int, int, int]] = []
    with api.client() as client:
        with pytest.raises(LocalValidationError) as raised:
            client.personalise_many(records)
        assert [(p[0], p[1]) for p in raised.value.problems] == [(7, "dynamic_call_reason"), (8, "label_id")]
        assert not batches.stored  # nothing sent

        result = client.personalise_many(
            records,
            on_invalid="skip",
            poll_interval=0.001,
            on_progress=lambda p: seen.append((p.sent, p.accepted, p.finished)),
        )
    assert [len(records) for records in batches.stored.values()] == [500, 500, 201]
    assert len(result.outcomes) == 1203 and [o.index for o in result.outcomes] == list(range(1203))
    assert result.outcomes[7].outcome == "invalid_input" and result.outcomes[7].local
    assert (
        result.outcomes[7].message
        == "Request body is invalid: dynamic_call_reason contains unsupported special characters"
    )
    assert result.outcomes[8].message.endswith("label_id is not a dynamic label of this client")  # type: ignore[union-attr]
    assert result.outcomes[10].outcome == "success" and result.outcomes[11].outcome == "not_app_user"
    assert result.outcomes[10].batch_id in batches.stored and result.outcomes[10].record_id
    assert result.counts() == {"invalid_input": 2, "success": 601, "not_app_user": 600}
    assert result.finished and len(result.batch_ids) == 3
    assert seen[-1] == (1201, 1201, 1203)


async def test_personalise_many_without_waiting_leaves_records_pending() -> None:
    api = FakeApi()
    batches = Batches(api)
    async with api.async_client() as client:
        result = await client.personalise_many([record(919000000000 + i) for i in range(10)], wait=False)
    assert result.counts() == {"pending": 10}
    assert not batches.polls and result.outcomes[0].batch_id == result.batch_ids[0]
