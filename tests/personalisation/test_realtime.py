"""R2 (real-time v2, SPEC §5.2) and R1 (real-time v1, SPEC §5.5): responses, stored state, delivery."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from callerid.config import Settings
from callerid.db import Database
from callerid.delivery.service import register_device
from callerid.jobs.models import Job
from callerid.jobs.runner import JobRunner
from callerid.labels.models import Label
from callerid.personalisation import storing
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


def r2_path(tenant: Tenant) -> str:
    return f"/v2/clients/{tenant.account_id}/dynamic_call_record"


def r1_path(tenant: Tenant) -> str:
    return f"/clients/{tenant.account_id}/dynamic_call_record"


async def job_count(db: Database) -> int:
    async with db.session() as session:
        return int(
            await session.scalar(select(func.count()).select_from(Job).where(Job.kind.like("personalisation.%"))) or 0
        )


# --- R2 ------------------------------------------------------------------------------------------------


async def test_r2_invalid_records_answer_400_naming_the_v2_field_and_are_stored(
    client: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    static_label: Label,
    foreign_label: Label,
    now_ms: int,
) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"caller_number": ...}, "caller_number", "caller_number is required"),
        ({"caller_number": 911234567890}, "caller_number", "caller_number is invalid"),
        ({"receiver_number": "0919876543210"}, "receiver_number", "receiver_number is invalid"),
        ({"label_id": ...}, "label_id", "label_id is required"),
        ({"label_id": "nope"}, "label_id", "label_id is invalid"),
        ({"label_id": str(static_label.id)}, "label_id", "label_id is not a dynamic label of this client"),
        ({"label_id": str(foreign_label.id)}, "label_id", "label_id is not a dynamic label of this client"),
        ({"label_id": str(uuid.uuid4())}, "label_id", "label_id is not a dynamic label of this client"),
        ({"dynamic_label_name": "ab"}, "dynamic_label_name", "dynamic_label_name must be between 3 and 40 characters"),
        (
            {"dynamic_call_reason": "Flower/Delivery"},
            "dynamic_call_reason",
            "dynamic_call_reason contains unsupported special characters",
        ),
        (
            {"dynamic_call_reason": "Flower Delivery "},
            "dynamic_call_reason",
            "dynamic_call_reason cannot start or end with a space, '.', ',' or '-'",
        ),
        ({"starts_at": True}, "starts_at", "starts_at is invalid"),
        ({"ends_at": ...}, "ends_at", "ends_at is required"),
        (
            {"starts_at": now_ms - HOUR_MS, "ends_at": now_ms - 1},
            "ends_at",
            "ends_at cannot be older than current time",
        ),
        ({"starts_at": now_ms + 10, "ends_at": now_ms + 10}, "ends_at", "ends_at cannot be before starts_at"),
        (
            {"starts_at": now_ms, "ends_at": now_ms + DAY_MS + 1},
            "ends_at",
            "ends_at cannot be more than 24 hours after starts_at",
        ),
    ]
    for index, (changes, field, message) in enumerate(cases):
        body = record_v2(label, now_ms, **changes)
        response = await client.post(r2_path(tenant), json=body, headers=auth)
        assert response.status_code == 400, (changes, response.text)
        assert response.json() == {"status_info": {"status": "error", "field": field, "message": PREFIX + message}}
        records = await stored_records(db)
        assert len(records) == index + 1
        stored = records[-1]
        assert (stored.status, stored.reason, stored.field, stored.message) == (
            "error",
            "invalid_input",
            field,
            message,
        )
        assert (stored.batch_id, stored.version, stored.caller, stored.label_id) == (None, "v2", None, None)
        assert stored.sent is not None and stored.sent["starts_at"] == body.get("starts_at")
    assert await stored_batches(db) == []
    assert await job_count(db) == 0


async def test_r2_valid_record_without_app_user_is_200_with_reason_and_stored(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int
) -> None:
    body = record_v2(label, now_ms, caller_number="+" + CALLER, dynamic_label_name=..., label_id=str(label.id).upper())
    response = await client.post(r2_path(tenant), json=body, headers=auth)
    assert response.status_code == 200
    assert response.json() == {
        "status_info": {"status": "error", "reason": "not_app_user", "message": "Not an app user"}
    }
    [stored] = await stored_records(db)
    assert (stored.caller, stored.receiver, stored.label_id, stored.label_name) == (
        CALLER,
        RECEIVER,
        label.id,
        "FlowerEra",
    )
    assert (stored.call_reason, stored.starts_at, stored.ends_at) == (
        "Flower Delivery",
        body["starts_at"],
        body["ends_at"],
    )
    # The outcome's code is stored, not its message: nothing shows an R2 record again.
    assert (stored.status, stored.reason, stored.message, stored.batch_id, stored.sent) == (
        "error",
        "not_app_user",
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("platform", "version", "connected", "expected"),
    [
        ("android", "2.0.0", True, {"status": "success", "message": "Record processed successfully"}),
        ("android", "2.0.0", False, {"status": "error", "reason": "failed_to_push", "message": "Failed to push"}),
        ("ios", "2.0.0", True, {"status": "error", "reason": "os_not_supported", "message": "OS not supported"}),
        (
            "android",
            "0.9",
            True,
            {"status": "error", "reason": "app_version_not_supported", "message": "App version not supported"},
        ),
    ],
)
async def test_r2_pushes_synchronously_and_answers_the_outcome(
    client: httpx.AsyncClient,
    db: Database,
    runtime: Any,
    settings: Settings,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
    platform: str,
    version: str,
    connected: bool,
    expected: dict[str, str],
) -> None:
    async with db.transaction() as session:
        device = await register_device(session, phone_number=RECEIVER, platform=platform, app_version=version)
    hub = runtime.hub
    body = record_v2(label, now_ms, receiver_number="+" + RECEIVER)
    if connected:
        async with hub.attach(device.device_id) as connection:
            response = await client.post(r2_path(tenant), json=body, headers=auth)
            pushed = [orjson.loads(connection.queue.get_nowait()) for _ in range(connection.queue.qsize())]
    else:
        response = await client.post(r2_path(tenant), json=body, headers=auth)
        pushed = []
    assert response.status_code == 200
    assert response.json() == {"status_info": expected}
    [stored] = await stored_records(db)
    assert stored.status == ("success" if expected["status"] == "success" else "error")
    assert stored.reason == expected.get("reason")
    if expected["status"] == "success":
        record_id = pushed[0]["record_id"] if pushed else ""
        assert uuid.UUID(record_id).version == 7  # an R2 record's id is its push message's alone (not stored)
        assert pushed == [
            {
                "type": "call_personalisation",
                "record_id": record_id,
                "caller": CALLER,
                "receiver": RECEIVER,
                "label_id": str(label.id),
                "label_name": "Flower rasm",
                "logo_url": f"http://testserver/logos/{label.logo_key}.png",
                "call_reason": "Flower Delivery",
                "starts_at": body["starts_at"],
                "ends_at": body["ends_at"],
            }
        ]
    else:
        assert pushed == []


async def test_r2_accepts_v1_field_names(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int
) -> None:
    response = await client.post(r2_path(tenant), json=record_v1(label, now_ms), headers=auth)
    assert response.status_code == 200
    assert response.json()["status_info"]["reason"] == "not_app_user"
    [stored] = await stored_records(db)
    assert (stored.caller, stored.label_name, stored.call_reason) == (CALLER, "Flower rasm", "Flower Delivery")
    bad = record_v1(label, now_ms, caller="12")
    response = await client.post(r2_path(tenant), json=bad, headers=auth)
    assert response.json() == {
        "status_info": {"status": "error", "field": "caller_number", "message": PREFIX + "caller_number is invalid"}
    }


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"text"', b""])
async def test_r2_unparsable_body_is_400_and_nothing_is_stored(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], content: bytes
) -> None:
    response = await client.post(r2_path(tenant), content=content, headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"status_info": {"status": "error", "message": "Request body is invalid"}}
    assert await stored_records(db) == []


async def test_r2_needs_write_access_and_stores_nothing_otherwise(
    client: httpx.AsyncClient, db: Database, settings: Settings, label: Label, now_ms: int
) -> None:
    reader = await create_tenant(db, settings, access={"call_personalisation": "read"})
    headers = {"Authorization": f"Bearer {await mint(client, reader)}"}
    response = await client.post(r2_path(reader), json=record_v2(label, now_ms), headers=headers)
    assert response.status_code == 403
    assert response.json() == {"slug": "forbidden-error", "message": "not authorized. please contact your admin."}
    response = await client.post(r2_path(reader), json=record_v2(label, now_ms))
    assert response.status_code == 401
    assert await stored_records(db) == []


# --- R1 ------------------------------------------------------------------------------------------------


async def test_r1_valid_record_becomes_a_one_record_batch_delivered_by_a_job(
    client: httpx.AsyncClient,
    db: Database,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
) -> None:
    response = await client.post(r1_path(tenant), json=record_v1(label, now_ms, label_name=...), headers=auth)
    assert response.status_code == 200
    assert response.headers["deprecation"] == "true"
    body = response.json()
    assert body["status"] == "success"
    prefix = "Records Uploaded Successfully. BatchID: "
    assert body["message"].startswith(prefix)
    batch_id = body["message"].removeprefix(prefix)
    assert str(uuid.UUID(batch_id)) == batch_id
    [batch] = await stored_batches(db)
    assert (str(batch.id), batch.version, batch.record_count) == (batch_id, "v1", 1)
    assert await job_count(db) == 1
    [row] = await s1(client, tenant, auth, batch_id)
    assert row["status"] == "pending" and "failure_reason" not in row
    assert row["label_name"] == "FlowerEra"  # defaulted from the label

    assert await runner.run_until_idle() == 1
    [row] = await s1(client, tenant, auth, batch_id)
    assert (row["status"], row["failure_reason"]) == ("failure", "Not an app user")
    assert await job_count(db) == 0


async def test_r1_invalid_record_is_400_with_batch_id_and_stored_as_failure(
    client: httpx.AsyncClient,
    db: Database,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    foreign_label: Label,
    label: Label,
    now_ms: int,
) -> None:
    cases = [
        ({"caller": ...}, "caller is required"),
        ({"label_id": str(foreign_label.id)}, "label_id is not a dynamic label of this client"),
        ({"label_name": "x" * 41}, "label_name must be between 3 and 40 characters"),
        ({"call_reason": "-Flower Delivery"}, "call_reason cannot start or end with a space, '.', ',' or '-'"),
        ({"ends_at": now_ms - 1, "starts_at": now_ms - 10}, "ends_at cannot be older than current time"),
    ]
    for changes, message in cases:
        response = await client.post(r1_path(tenant), json=record_v1(label, now_ms, **changes), headers=auth)
        assert response.status_code == 400
        body = response.json()
        assert body["status"] == "failure"
        assert body["message"].startswith(f"{message}. BatchID: "), body
        batch_id = body["message"].rsplit("BatchID: ", 1)[1]
        [row] = await s1(client, tenant, auth, batch_id)
        assert (row["status"], row["failure_reason"]) == ("failure", message)
    assert len(await stored_batches(db)) == len(cases)
    assert await job_count(db) == 0
    assert await runner.run_until_idle() == 0


@pytest.mark.parametrize("content", [b"{not json", b"[]"])
async def test_r1_unparsable_body(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], content: bytes
) -> None:
    response = await client.post(r1_path(tenant), content=content, headers=auth)
    assert response.status_code == 400
    assert response.json() == {"status": "failure", "message": "Request body is invalid"}
    assert await stored_batches(db) == []


async def test_r1_missing_authorization_is_the_reference_401(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(r1_path(tenant), json={})
    assert response.status_code == 401
    assert response.json() == {"slug": "authorization-error", "message": "Missing authorization header"}


async def test_r2_s2_reads_r1_batch_with_v2_names(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int
) -> None:
    response = await client.post(r1_path(tenant), json=record_v1(label, now_ms), headers=auth)
    batch_id = response.json()["message"].rsplit("BatchID: ", 1)[1]
    body = await s2(client, tenant, auth, batch_id)
    [row] = body["data"]
    assert row["caller_number"] == CALLER and row["status_info"] == {"status": "pending"}


async def test_r2_push_error_is_a_failed_to_push_outcome_not_a_500(
    client: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*_: Any) -> list[Any]:
        raise RuntimeError("push backend down")

    monkeypatch.setattr(storing, "deliver_many", broken)
    response = await client.post(r2_path(tenant), json=record_v2(label, now_ms), headers=auth)
    assert response.status_code == 200
    assert response.json() == {
        "status_info": {"status": "error", "reason": "failed_to_push", "message": "Failed to push"}
    }
    [stored] = await stored_records(db)
    assert (stored.status, stored.reason, stored.caller) == ("error", "failed_to_push", CALLER)
