"""B2 / S2 (SPEC §5.3-§5.4) and B1 / S1 (SPEC §5.5): shapes, sizes, per-record outcomes, durability."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.delivery.service import register_device
from callerid.jobs.models import Job
from callerid.jobs.runner import JobRunner
from callerid.labels.models import Label
from callerid.personalisation import delivery as personalisation_delivery
from callerid.personalisation import service
from tests.conftest import Tenant, create_tenant, mint
from tests.personalisation.conftest import (
    CALLER,
    DAY_MS,
    HOUR_MS,
    RECEIVER,
    record_v1,
    record_v2,
    s1,
    s2,
    stored_batches,
    stored_records,
)

PREFIX = "Request body is invalid: "


def b2_path(tenant: Tenant) -> str:
    return f"/v2/clients/{tenant.account_id}/dynamic_call_records"


def b1_path(tenant: Tenant) -> str:
    return f"/clients/{tenant.account_id}/dynamic_call_records"


async def jobs(db: Database) -> list[Job]:
    async with db.session() as session:
        return list((await session.scalars(select(Job).where(Job.kind == service.DELIVER_BATCH_JOB))).all())


def receiver(index: int) -> str:
    return f"9198765{index:05d}"


# --- B2 request shape --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "call_records is required"),
        ({"call_records": None}, "call_records is required"),
        ({"call_records": {"caller_number": CALLER}}, "call_records is required"),
        ({"call_records": [1, 2]}, "call_records is required"),
        ({"call_records": [{}, "x"]}, "call_records is required"),
        ({"call_records": []}, "call_records must contain between 1 and 500 records"),
        ({"call_records": [{}] * 501}, "call_records must contain between 1 and 500 records"),
    ],
)
async def test_b2_bad_call_records_is_400_and_nothing_is_stored(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], body: Any, message: str
) -> None:
    response = await client.post(b2_path(tenant), json=body, headers=auth)
    assert response.status_code == 400
    assert response.json() == {"status_info": {"status": "error", "field": "call_records", "message": PREFIX + message}}
    assert await stored_batches(db) == [] and await stored_records(db) == [] and await jobs(db) == []


async def test_b2_unparsable_body(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str]
) -> None:
    response = await client.post(b2_path(tenant), content=b"{", headers=auth)
    assert response.status_code == 400
    assert response.json() == {"status_info": {"status": "error", "message": "Request body is invalid"}}
    assert await stored_batches(db) == []


@pytest.mark.parametrize("size", [1, 500])
async def test_b2_accepts_1_and_500_records_and_processes_them_on_the_runner(
    client: httpx.AsyncClient,
    db: Database,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
    size: int,
) -> None:
    records = [record_v2(label, now_ms, receiver_number=receiver(i)) for i in range(size)]
    response = await client.post(b2_path(tenant), json={"call_records": records}, headers=auth)
    assert response.status_code == 200
    assert list(response.json()) == ["batch_id"]
    batch_id = response.json()["batch_id"]
    [batch] = await stored_batches(db)
    assert (str(batch.id), batch.version, batch.record_count) == (batch_id, "v2", size)
    [job] = await jobs(db)  # stored with the batch, one job for the whole batch
    assert job.payload == {"batch_id": batch_id}

    body = await s2(client, tenant, auth, batch_id)
    assert [row["receiver_number"] for row in body["data"]] == [receiver(i) for i in range(size)]
    assert {row["status_info"]["status"] for row in body["data"]} == {"pending"}

    assert await runner.run_until_idle() == 1
    body = await s2(client, tenant, auth, batch_id)
    assert len(body["data"]) == size
    expected = {"status": "error", "reason": "not_app_user", "message": "Not an app user"}
    assert all(row["status_info"] == expected for row in body["data"])
    assert await jobs(db) == []


async def test_b2_stores_invalid_records_with_their_error_and_s2_shows_every_form(
    client: httpx.AsyncClient,
    db: Database,
    runtime: Any,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    static_label: Label,
    now_ms: int,
) -> None:
    async with db.transaction() as session:
        connected = await register_device(session, phone_number=receiver(1), platform="android", app_version="3.1")
        await register_device(session, phone_number=receiver(2), platform="android", app_version="3.1")
        await register_device(session, phone_number=receiver(3), platform="ios", app_version="3.1")
        await register_device(session, phone_number=receiver(4), platform="android", app_version="0.1")
    records = [
        record_v2(label, now_ms, receiver_number="+" + receiver(0), dynamic_label_name=..., dynamic_call_reason=...),
        record_v2(label, now_ms, receiver_number=receiver(1)),
        record_v2(label, now_ms, receiver_number=receiver(2)),
        record_v2(label, now_ms, receiver_number=receiver(3)),
        record_v2(label, now_ms, receiver_number=receiver(4)),
        record_v2(label, now_ms, caller_number=911234567890),
        record_v2(label, now_ms, label_id=str(static_label.id).upper(), dynamic_label_name=""),
        record_v2(label, now_ms, starts_at=now_ms, ends_at=now_ms + DAY_MS + 1),
        record_v1(label, now_ms, receiver=receiver(5)),  # v1 names are accepted on v2
    ]
    clock.freeze(clock.now().replace(microsecond=210_000))
    # The spec's literal form (SPEC §2.6): ISO-8601 UTC, "Z", trailing zeros of the fraction dropped.
    created_at = clock.now().strftime("%Y-%m-%dT%H:%M:%S") + ".21Z"
    response = await client.post(b2_path(tenant), json={"call_records": records}, headers=auth)
    assert response.status_code == 200
    batch_id = response.json()["batch_id"]

    body = await s2(client, tenant, auth, batch_id)
    assert body["client_account_id"] == str(tenant.account_id)
    assert body["batch_id"] == batch_id
    data = body["data"]
    assert [row["status_info"] for row in data] == [{"status": "pending"}] * 5 + [
        {
            "status": "error",
            "reason": "invalid_input",
            "field": "caller_number",
            "message": PREFIX + "caller_number is invalid",
        },
        {
            "status": "error",
            "reason": "invalid_input",
            "field": "label_id",
            "message": PREFIX + "label_id is not a dynamic label of this client",
        },
        {
            "status": "error",
            "reason": "invalid_input",
            "field": "ends_at",
            "message": PREFIX + "ends_at cannot be more than 24 hours after starts_at",
        },
        {"status": "pending"},
    ]
    assert data[0] == {
        "id": data[0]["id"],
        "caller_number": CALLER,
        "receiver_number": receiver(0),
        "label_id": str(label.id),
        "dynamic_label_name": "FlowerEra",
        "dynamic_call_reason": None,
        "starts_at": now_ms - 1000,
        "ends_at": now_ms + HOUR_MS,
        "status_info": {"status": "pending"},
        "created_at": created_at,
    }
    assert (data[5]["caller_number"], data[5]["receiver_number"]) == (911234567890, RECEIVER)  # echoed as sent
    assert (data[6]["label_id"], data[6]["dynamic_label_name"]) == (str(static_label.id), "")
    assert (data[7]["starts_at"], data[7]["ends_at"]) == (now_ms, now_ms + DAY_MS + 1)
    assert data[8]["receiver_number"] == receiver(5) and data[8]["dynamic_call_reason"] == "Flower Delivery"
    assert len({row["id"] for row in data}) == len(records)

    async with runtime.hub.attach(connected.device_id) as connection:
        assert await runner.run_until_idle() == 1
        assert connection.queue.qsize() == 1
        pushed = orjson.loads(connection.queue.get_nowait())
    data = (await s2(client, tenant, auth, batch_id))["data"]
    assert pushed == {
        "type": "call_personalisation",
        "record_id": data[1]["id"],
        "caller": CALLER,
        "receiver": receiver(1),
        "label_id": str(label.id),
        "label_name": "Flower rasm",
        "logo_url": f"http://testserver/logos/{label.logo_key}.png",
        "call_reason": "Flower Delivery",
        "starts_at": now_ms - 1000,
        "ends_at": now_ms + HOUR_MS,
    }
    assert [row["status_info"] for row in data[:5]] + [data[8]["status_info"]] == [
        {"status": "error", "reason": "not_app_user", "message": "Not an app user"},
        {"status": "success"},
        {"status": "error", "reason": "failed_to_push", "message": "Failed to push"},
        {"status": "error", "reason": "os_not_supported", "message": "OS not supported"},
        {"status": "error", "reason": "app_version_not_supported", "message": "App version not supported"},
        {"status": "error", "reason": "not_app_user", "message": "Not an app user"},
    ]

    # S1 reads the same batch with v1 names, `failure` and `failure_reason`
    rows = await s1(client, tenant, auth, batch_id)
    assert rows[1] == {
        "id": data[1]["id"],
        "client_account_id": str(tenant.account_id),
        "batch_id": batch_id,
        "caller": CALLER,
        "receiver": receiver(1),
        "label_id": str(label.id),
        "label_name": "Flower rasm",
        "call_reason": "Flower Delivery",
        "starts_at": now_ms - 1000,
        "ends_at": now_ms + HOUR_MS,
        "status": "success",
        "created_at": created_at,
    }
    assert [(row["status"], row.get("failure_reason")) for row in rows] == [
        ("failure", "Not an app user"),
        ("success", None),
        ("failure", "Failed to push"),
        ("failure", "OS not supported"),
        ("failure", "App version not supported"),
        ("failure", "caller_number is invalid"),
        ("failure", "label_id is not a dynamic label of this client"),
        ("failure", "ends_at cannot be more than 24 hours after starts_at"),
        ("failure", "Not an app user"),
    ]


async def test_b2_with_only_invalid_records_queues_no_work(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int
) -> None:
    records = [record_v2(label, now_ms, ends_at=now_ms - 1, starts_at=now_ms - 5)]
    response = await client.post(b2_path(tenant), json={"call_records": records}, headers=auth)
    assert response.status_code == 200
    assert len(await stored_batches(db)) == 1 and await jobs(db) == []
    [row] = (await s2(client, tenant, auth, response.json()["batch_id"]))["data"]
    assert row["status_info"]["message"] == PREFIX + "ends_at cannot be older than current time"


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_batch_v2": "2/minute"}])
async def test_b2_has_its_own_per_token_limit(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int
) -> None:
    body = {"call_records": [record_v2(label, now_ms)]}
    statuses = [(await client.post(b2_path(tenant), json=body, headers=auth)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    # the real-time and status endpoints are not held back by the batch limit
    assert (
        await client.post(
            f"/v2/clients/{tenant.account_id}/dynamic_call_record", json=body["call_records"][0], headers=auth
        )
    ).status_code == 200


async def test_batch_delivery_is_idempotent(
    client: httpx.AsyncClient,
    db: Database,
    runtime: Any,
    settings: Settings,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
) -> None:
    records = [record_v2(label, now_ms, receiver_number=receiver(i)) for i in range(3)]
    response = await client.post(b2_path(tenant), json={"call_records": records}, headers=auth)
    batch_id = uuid.UUID(response.json()["batch_id"])
    assert await service.deliver_batch(runtime, batch_id) == 3
    assert await service.deliver_batch(runtime, batch_id) == 0  # a re-run finds nothing
    assert {r.status for r in await stored_records(db)} == {"error"}


# --- S1 / S2 parameters ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version_path", ["/v2/clients/{}/dynamic_call_records", "/clients/{}/dynamic_call_records"])
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "batchId is required"),
        ("?batchId=", "batchId is required"),
        ("?batchId=abc", "batchId is invalid"),
        ("?batchId=0ca10281-11a0-4f86-bb27-7452da543cb", "batchId is invalid"),
        ("?batchid=0ca10281-11a0-4f86-bb27-7452da543cb6", "batchId is required"),
    ],
)
async def test_status_batch_id_errors(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], version_path: str, query: str, message: str
) -> None:
    response = await client.get(version_path.format(tenant.account_id) + query, headers=auth)
    assert response.status_code == 400
    assert response.json() == {"slug": "invalid-input", "message": message}


async def test_status_of_unknown_or_foreign_batch_is_empty(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
) -> None:
    response = await client.post(b2_path(tenant), json={"call_records": [record_v2(label, now_ms)]}, headers=auth)
    mine = response.json()["batch_id"]
    other = await create_tenant(db, settings, name="Other Co")
    other_auth = {"Authorization": f"Bearer {await mint(client, other)}"}
    unknown = str(uuid.uuid4())
    for batch_id in (unknown, mine):
        viewer, headers = (tenant, auth) if batch_id == unknown else (other, other_auth)
        assert await s2(client, viewer, headers, batch_id) == {
            "client_account_id": str(viewer.account_id),
            "batch_id": batch_id,
            "data": [],
        }
        assert await s1(client, viewer, headers, batch_id) == []
    # ids in any case; emitted lowercase
    body = await s2(client, tenant, auth, mine.upper())
    assert body["batch_id"] == mine and len(body["data"]) == 1


async def test_status_needs_read_and_batches_need_write(
    client: httpx.AsyncClient, db: Database, settings: Settings, label: Label, now_ms: int
) -> None:
    reader = await create_tenant(db, settings, access={"call_personalisation": "read"})
    headers = {"Authorization": f"Bearer {await mint(client, reader)}"}
    batch_id = str(uuid.uuid4())
    assert (
        await client.get(f"/v2/clients/{reader.account_id}/dynamic_call_records?batchId={batch_id}", headers=headers)
    ).status_code == 200
    assert (
        await client.get(f"/clients/{reader.account_id}/dynamic_call_records?batchId={batch_id}", headers=headers)
    ).status_code == 200
    for path in (b2_path(reader), b1_path(reader)):
        response = await client.post(path, json={"call_records": [record_v2(label, now_ms)]}, headers=headers)
        assert response.status_code == 403
    assert await stored_batches(db) == []


# --- B1 -----------------------------------------------------------------------------------------------------


async def test_b1_accepts_a_valid_batch_and_delivers_it_on_the_runner(
    client: httpx.AsyncClient,
    db: Database,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
) -> None:
    records = [record_v1(label, now_ms, receiver=receiver(i)) for i in range(3)]
    response = await client.post(b1_path(tenant), json={"call_records": records}, headers=auth)
    assert response.status_code == 200
    [batch] = await stored_batches(db)
    assert response.json() == {"status": "success", "message": f"Records Uploaded Successfully. BatchID: {batch.id}"}
    assert response.headers["deprecation"] == "true"
    assert [row["status"] for row in await s1(client, tenant, auth, str(batch.id))] == ["pending"] * 3
    assert await runner.run_until_idle() == 1
    rows = await s1(client, tenant, auth, str(batch.id))
    assert [(r["receiver"], r["status"], r["failure_reason"]) for r in rows] == [
        (receiver(i), "failure", "Not an app user") for i in range(3)
    ]


@pytest.mark.parametrize("bad_index", [0, 2])
async def test_b1_is_all_or_nothing_and_still_stores_the_batch(
    client: httpx.AsyncClient,
    db: Database,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
    bad_index: int,
) -> None:
    records = [record_v1(label, now_ms, receiver=receiver(i)) for i in range(4)]
    records[bad_index]["call_reason"] = "Flower@Delivery"
    records[3]["caller"] = "x"  # a later error is not the one reported
    response = await client.post(b1_path(tenant), json={"call_records": records}, headers=auth)
    assert response.status_code == 400
    [batch] = await stored_batches(db)
    first = "call_reason contains unsupported special characters"
    shown = first if bad_index == 0 else f"call_records[{bad_index}]: {first}"
    assert response.json() == {"status": "failure", "message": f"{shown}. BatchID: {batch.id}"}
    assert await jobs(db) == []
    assert await runner.run_until_idle() == 0

    rejected = f"batch rejected, call_records[{bad_index}]: {first}"
    expected_reasons = [rejected] * 4
    expected_reasons[bad_index] = first
    expected_reasons[3] = "caller is invalid"
    rows = await s1(client, tenant, auth, str(batch.id))
    assert [(r["status"], r["failure_reason"]) for r in rows] == [("failure", reason) for reason in expected_reasons]
    assert rows[1 if bad_index != 1 else 0]["receiver"] == receiver(1 if bad_index != 1 else 0)
    data = (await s2(client, tenant, auth, str(batch.id)))["data"]
    sibling = next(i for i in range(3) if i != bad_index)
    assert data[sibling]["status_info"] == {
        "status": "error",
        "reason": "invalid_input",
        "field": "call_records",
        "message": PREFIX + rejected,
    }
    assert data[bad_index]["status_info"]["field"] == "dynamic_call_reason"
    assert data[3]["caller_number"] == "x"
    # a rejected batch's records never identify a caller
    assert await service.active_identity(db, CALLER, receiver(sibling), clock.now()) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "call_records is required"),
        ({"call_records": "x"}, "call_records is required"),
        ({"call_records": []}, "call_records must contain between 1 and 500 records"),
        ({"call_records": [{}] * 501}, "call_records must contain between 1 and 500 records"),
    ],
)
async def test_b1_bad_call_records(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], body: Any, message: str
) -> None:
    response = await client.post(b1_path(tenant), json=body, headers=auth)
    assert response.status_code == 400
    assert response.json() == {"status": "failure", "message": message}
    assert await stored_batches(db) == []


async def test_b1_accepts_500_records(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int
) -> None:
    records = [record_v1(label, now_ms, receiver=receiver(i)) for i in range(500)]
    response = await client.post(b1_path(tenant), json={"call_records": records}, headers=auth)
    assert response.status_code == 200
    [batch] = await stored_batches(db)
    assert batch.record_count == 500 and len(await stored_records(db)) == 500


@pytest.mark.parametrize("settings_overrides", [{"job_max_attempts": 2}])
async def test_delivery_errors_are_retried_then_records_get_a_final_outcome(
    client: httpx.AsyncClient,
    db: Database,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*_: Any) -> list[Any]:
        raise RuntimeError("push backend down")

    monkeypatch.setattr(personalisation_delivery, "push_planned", broken)  # the push step of batch delivery
    response = await client.post(b2_path(tenant), json={"call_records": [record_v2(label, now_ms)]}, headers=auth)
    batch_id = response.json()["batch_id"]
    assert await runner.run_until_idle() == 1  # first attempt fails: retried later, records stay pending
    [job] = await jobs(db)
    assert job.attempts == 1 and "push backend down" in (job.last_error or "")
    assert (await s2(client, tenant, auth, batch_id))["data"][0]["status_info"] == {"status": "pending"}
    clock.advance(600)  # past the retry backoff
    assert await runner.run_until_idle() == 1  # last attempt: gives up with a final outcome
    assert await jobs(db) == []
    assert (await s2(client, tenant, auth, batch_id))["data"][0]["status_info"] == {
        "status": "error",
        "reason": "failed_to_push",
        "message": "Failed to push",
    }


async def test_s2_echoes_odd_invalid_values_exactly_as_sent(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int
) -> None:
    odd: list[dict[str, Any]] = [
        record_v2(label, now_ms, starts_at=2**63),
        record_v2(label, now_ms, caller_number={"nested": [1, "two", None]}),
        record_v2(label, now_ms, ends_at=1.5),
        record_v2(label, now_ms, dynamic_call_reason="ünïcödé / slash", dynamic_label_name="😀😀😀"),
    ]
    response = await client.post(b2_path(tenant), json={"call_records": odd}, headers=auth)
    data = (await s2(client, tenant, auth, response.json()["batch_id"]))["data"]
    assert data[0]["starts_at"] == 2**63
    assert data[1]["caller_number"] == {"nested": [1, "two", None]}
    assert data[2]["ends_at"] == 1.5
    assert (data[3]["dynamic_call_reason"], data[3]["dynamic_label_name"]) == ("ünïcödé / slash", "😀😀😀")
    assert [row["status_info"]["field"] for row in data] == [
        "starts_at",
        "caller_number",
        "ends_at",
        "dynamic_call_reason",
    ]
