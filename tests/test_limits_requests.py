"""Bounded requests: bodies over ``max_request_body_bytes`` are 413 before they are read whole, on fast and ordinary
routes, with or without ``Content-Length``; JSON nested deeper than ``max_json_depth`` is answered like unparsable
JSON by each endpoint; the console's form posts keep their own limit. The phones' WebSocket limit is tested in
tests/delivery/test_stream_limits.py; the same limits through a real ``callerid serve`` at the end of this file."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import websockets
from sqlalchemy import func, select

from callerid import clock
from callerid.accounts.models import AccessToken
from callerid.config import Settings
from callerid.db import Database
from callerid.http import parse_json_object
from callerid.labels.models import Label
from callerid.numbers.models import BusinessNumber, NumberJob
from callerid.personalisation.models import CallBatch, CallRecord
from callerid.personalisation.schemas import V2_BODY_UNPARSABLE
from tests.conftest import Tenant
from tests.e2e.serving import Server
from tests.numbers.conftest import Tree, make_tree
from tests.personalisation.conftest import add_label, record_v1, record_v2

LIMIT = 1_048_576  # the default of max_request_body_bytes
DEPTH = 32  # the default of max_json_depth
TOO_LARGE = {"slug": "request-entity-too-large", "message": f"request body must be at most {LIMIT} bytes"}


def padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` serialised to exactly ``size`` bytes, with an unknown field (which every endpoint ignores)."""
    bare = orjson.dumps({**body, "padding": ""})
    assert len(bare) <= size
    raw = orjson.dumps({**body, "padding": "x" * (size - len(bare))})
    assert len(raw) == size
    return raw


async def chunked(raw: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body httpx sends without ``Content-Length`` (``Transfer-Encoding: chunked``)."""
    for start in range(0, len(raw), size):
        yield raw[start : start + size]


async def post(client: httpx.AsyncClient, path: str, raw: bytes, headers: dict[str, str], *, stream: bool) -> Any:
    if stream:
        response = await client.post(path, content=chunked(raw), headers=headers)
        assert response.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.request.headers
        return response
    return await client.post(path, content=raw, headers=headers)


def with_deep_field(body: dict[str, Any], depth: int) -> bytes:
    """``body`` with a field of arrays nested ``depth`` deep (written by hand: orjson writes 254 levels at most)."""
    return orjson.dumps(body)[:-1] + b',"extra":' + b"[" * depth + b"]" * depth + b"}"


def nested(depth: int) -> Any:
    """Arrays nested ``depth`` deep: ``[[...]]``."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def count(db: Database, model: Any) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
async def label(db: Database, settings: Settings, tenant: Tenant) -> Label:
    return await add_label(db, settings, tenant.account_id)


def r2_path(tenant: Tenant) -> str:
    return f"/v2/clients/{tenant.account_id}/dynamic_call_record"


# --- body size: a fast route (R2) ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["content-length", "chunked"])
async def test_r2_one_byte_over_the_limit_is_413_and_stores_nothing(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], label: Label, stream: bool
) -> None:
    raw = padded(record_v2(label, clock.now_ms()), LIMIT + 1)
    response = await post(client, r2_path(tenant), raw, auth, stream=stream)
    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    assert response.headers["x-request-id"]
    assert await count(db, CallRecord) == 0


@pytest.mark.parametrize("stream", [False, True], ids=["content-length", "chunked"])
async def test_r2_exactly_at_the_limit_is_accepted(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], label: Label, stream: bool
) -> None:
    raw = padded(record_v2(label, clock.now_ms()), LIMIT)
    response = await post(client, r2_path(tenant), raw, auth, stream=stream)
    assert response.status_code == 200, response.text
    assert await count(db, CallRecord) == 1


@pytest.mark.parametrize("path", ["/v2/clients/{id}/dynamic_call_record", "/clients/{id}/token"])
async def test_a_declared_length_over_the_limit_is_refused_before_the_route_runs_or_reads(
    client: httpx.AsyncClient, tenant: Tenant, path: str
) -> None:
    pulled: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        for chunk in (b"{", b" " * LIMIT):
            pulled.append(chunk)
            yield chunk

    # No credentials: the route would answer 401 (or 400) if it ran.
    headers = {"Content-Length": str(LIMIT + 1)}
    response = await client.post(path.format(id=tenant.account_id), content=body(), headers=headers)
    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    assert response.headers["x-request-id"]
    assert pulled == []


# --- body size: ordinary routes (T, NL) and B2 ------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["content-length", "chunked"])
async def test_token_over_the_limit_is_413_and_mints_nothing(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, stream: bool
) -> None:
    headers = {"X-Public-Access": "allow"}
    path = f"/clients/{tenant.account_id}/token"
    response = await post(client, path, padded(tenant.credentials, LIMIT + 1), headers, stream=stream)
    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    assert await count(db, AccessToken) == 0
    at_limit = await post(client, path, padded(tenant.credentials, LIMIT), headers, stream=stream)
    assert at_limit.status_code == 200, at_limit.text
    assert await count(db, AccessToken) == 1


@pytest.fixture
async def tree(db: Database, tenant: Tenant) -> Tree:
    return await make_tree(db, tenant.account_id)


@pytest.mark.parametrize("stream", [False, True], ids=["content-length", "chunked"])
async def test_number_publish_over_the_limit_is_413_and_stores_nothing(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], tree: Tree, stream: bool
) -> None:
    path = f"/clients/{tenant.account_id}/number_management/feature_sets/{tree.fs}/numbers/publish"
    body = {"phone_numbers": ["911234567891"]}
    response = await post(client, path, padded(body, LIMIT + 1), auth, stream=stream)
    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    assert await count(db, BusinessNumber) == 0
    assert await count(db, NumberJob) == 0
    at_limit = await post(client, path, padded(body, LIMIT), auth, stream=stream)
    assert at_limit.status_code == 200, at_limit.text
    assert at_limit.json()["new_numbers"] == ["911234567891"]


async def test_a_full_b2_batch_is_far_below_the_limit_and_accepted(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], label: Label
) -> None:
    now_ms = clock.now_ms()
    records = [record_v2(label, now_ms, receiver_number=f"9198{index:08d}") for index in range(500)]
    raw = orjson.dumps({"call_records": records})
    assert len(raw) < LIMIT // 4
    response = await client.post(f"/v2/clients/{tenant.account_id}/dynamic_call_records", content=raw, headers=auth)
    assert response.status_code == 200, response.text
    assert await count(db, CallBatch) == 1
    assert await count(db, CallRecord) == 500


# --- JSON depth --------------------------------------------------------------------------------------------


def test_orjson_reads_1024_levels_and_refuses_deeper_with_a_decode_error() -> None:
    # What the depth check relies on: orjson's own limit is far above ours and is a JSONDecodeError.
    assert isinstance(orjson.loads(b"[" * 1024 + b"]" * 1024), list)
    with pytest.raises(orjson.JSONDecodeError, match="depth limit exceeded"):
        orjson.loads(b"[" * 1025 + b"]" * 1025)


async def test_parse_json_object_bounds_nesting_at_the_setting(app: Any) -> None:
    # app: create_app set the process's limit from the (default) settings.
    assert parse_json_object(orjson.dumps({"a": nested(DEPTH - 1)})) == {"a": nested(DEPTH - 1)}
    assert parse_json_object(orjson.dumps({"a": nested(DEPTH)})) is None
    assert parse_json_object(orjson.dumps({"a": [1, {"b": "[[[["}], "c": {"d": [nested(DEPTH - 3)]}})) is not None
    assert parse_json_object(orjson.dumps({"a": [1, {"b": "x"}], "c": {"d": [nested(DEPTH - 2)]}})) is None
    assert parse_json_object(with_deep_field({}, 5000)) is None  # beyond orjson's own limit
    assert parse_json_object(b"{}") == {}


def _endpoints(tenant: Tenant, tree: Tree) -> dict[str, str]:
    account = tenant.account_id
    return {
        "R2": f"/v2/clients/{account}/dynamic_call_record",
        "B2": f"/v2/clients/{account}/dynamic_call_records",
        "R1": f"/clients/{account}/dynamic_call_record",
        "B1": f"/clients/{account}/dynamic_call_records",
        "T": f"/clients/{account}/token",
        "NL": f"/clients/{account}/number_management/feature_sets/{tree.fs}/numbers/publish",
        "devices": "/app/v1/devices",
    }


@pytest.mark.parametrize("endpoint", ["R2", "B2", "R1", "B1", "T", "NL", "devices"])
async def test_too_deep_json_gets_each_endpoints_unparsable_body_answer(
    client: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    tree: Tree,
    endpoint: str,
) -> None:
    path = _endpoints(tenant, tree)[endpoint]
    headers = {**auth, "X-Public-Access": "allow"}
    unparsable = await client.post(path, content=b'{"call_records": [', headers=headers)
    assert unparsable.status_code == 400, unparsable.text
    now_ms = clock.now_ms()
    shapes: dict[str, dict[str, Any]] = {
        "R2": record_v2(label, now_ms),
        "B2": {"call_records": [record_v2(label, now_ms)]},
        "R1": record_v1(label, now_ms),
        "B1": {"call_records": [record_v1(label, now_ms)]},
        "T": tenant.credentials,
        "NL": {"phone_numbers": ["911234567891"]},
        "devices": {"phone_number": "919234567898", "platform": "android", "app_version": "2.0.0"},
    }
    for depth in (DEPTH, 2000):  # one level too deep (the body is a level); past orjson's own limit
        response = await client.post(path, content=with_deep_field(shapes[endpoint], depth), headers=headers)
        assert (response.status_code, response.json()) == (400, unparsable.json())
    if endpoint == "R2":
        assert unparsable.json() == V2_BODY_UNPARSABLE
    for model in (CallRecord, CallBatch, BusinessNumber, NumberJob):
        assert await count(db, model) == 0
    assert await count(db, AccessToken) == 1  # the one ``auth`` minted


async def test_json_at_the_depth_limit_is_accepted(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], label: Label
) -> None:
    body = {**record_v2(label, clock.now_ms()), "extra": nested(DEPTH - 1)}  # the record itself is a level
    response = await client.post(r2_path(tenant), content=orjson.dumps(body), headers=auth)
    assert response.status_code == 200, response.text
    assert await count(db, CallRecord) == 1


@pytest.mark.parametrize("settings_overrides", [{"max_json_depth": 3}])
async def test_the_depth_is_a_setting_and_a_b2_batch_nests_3_deep(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], label: Label
) -> None:
    now_ms = clock.now_ms()
    batch = await client.post(
        f"/v2/clients/{tenant.account_id}/dynamic_call_records",
        content=orjson.dumps({"call_records": [record_v2(label, now_ms)]}),
        headers=auth,
    )
    assert batch.status_code == 200, batch.text
    deep = {**record_v2(label, now_ms), "extra": {"a": [[1]]}}  # 4 deep
    response = await client.post(r2_path(tenant), content=orjson.dumps(deep), headers=auth)
    assert (response.status_code, response.json()) == (400, V2_BODY_UNPARSABLE)


# --- the console keeps its own limit -----------------------------------------------------------------------


async def test_console_form_posts_have_their_own_larger_limit(client: httpx.AsyncClient) -> None:
    # Over the API's limit, under the console's 3 MiB: the console reads the form (and answers for its content:
    # here the missing CSRF token), with its HTML page, not the API's 413.
    form = {"email": "someone@example.com", "padding": "x" * (2 * LIMIT)}
    response = await client.post("/console/sign-in", data=form)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    # Over the console's own limit: the console's 413 page.
    form["padding"] = "x" * (4 * LIMIT)
    response = await client.post("/console/sign-in", data=form)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")


# --- through a real `callerid serve` (Granian) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("limits-serve"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_a_real_server_refuses_large_bodies_before_reading_them(served: Server) -> None:
    path = f"{served.base}/clients/{uuid.uuid4()}/token"
    headers = {"X-Public-Access": "allow"}
    sent: list[int] = []

    def huge() -> Iterator[bytes]:  # 256 MiB, never all sent: the answer comes first
        for _ in range(4096):
            sent.append(1)
            yield b" " * (64 * 1024)

    declared = httpx.post(path, content=huge(), headers={**headers, "Content-Length": str(256 * 2**20)}, timeout=30)
    assert (declared.status_code, declared.json()) == (413, TOO_LARGE)
    sent.clear()
    streamed = httpx.post(path, content=huge(), headers=headers, timeout=30)
    assert (streamed.status_code, streamed.json()) == (413, TOO_LARGE)
    assert len(sent) < 4096
    at_limit = httpx.post(path, content=b" " * LIMIT, headers=headers, timeout=30)
    assert (at_limit.status_code, at_limit.json()["slug"]) == (400, "invalid-input")


@pytest.mark.slow
def test_a_real_server_closes_a_phone_stream_with_1009_on_a_message_over_the_limit(served: Server) -> None:
    started = httpx.post(
        f"{served.base}/app/v1/devices",
        json={"phone_number": "919234567898", "platform": "android", "app_version": "2.0.0"},
    )
    assert started.status_code == 202, started.text  # the embedded default: an SMS code, shown as demo_code
    code = {"registration_id": started.json()["registration_id"], "code": started.json()["demo_code"]}
    registered = httpx.post(f"{served.base}/app/v1/devices/verify", json=code)
    assert registered.status_code == 201, registered.text
    url = served.base.replace("http://", "ws://") + "/app/v1/stream"
    headers = {"Authorization": f"Bearer {registered.json()['device_token']}"}

    async def phone() -> None:
        async with websockets.connect(url, additional_headers=headers, max_size=None) as stream:
            assert orjson.loads(await stream.recv())["type"] == "connected"
            await stream.send(b"x" * (64 * 1024))  # at the limit: ignored like any message
            await stream.send("é" * (32 * 1024 + 1))  # 65538 bytes of UTF-8 text
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(stream.recv(), timeout=10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009

    asyncio.run(phone())
