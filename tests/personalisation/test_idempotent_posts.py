"""Idempotent POSTs (extension): ``Idempotency-Key`` on R2, B2, R1 and B1 gives the first answer again and stores
the work once, also when identical requests race; another body with the same key is refused; a request that died
holding its key lets a retry do the work after the lease; a key is kept ``idempotency_key_hours``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.db.write import WriteConflict
from callerid.idempotency import service as idempotency
from callerid.idempotency.jobs import IDEMPOTENCY_PURGES
from callerid.idempotency.models import IdempotencyKey
from callerid.jobs.purge import purge
from callerid.labels.models import Label
from callerid.personalisation import service
from tests.conftest import Tenant, create_tenant, mint
from tests.personalisation.conftest import record_v1, record_v2, stored_batches, stored_records


def b2_path(tenant: Tenant) -> str:
    return f"/v2/clients/{tenant.account_id}/dynamic_call_records"


def r2_path(tenant: Tenant) -> str:
    return f"/v2/clients/{tenant.account_id}/dynamic_call_record"


def keyed(auth: dict[str, str], key: str) -> dict[str, str]:
    return {**auth, "Idempotency-Key": key}


async def key_rows(db: Database) -> list[IdempotencyKey]:
    async with db.session() as session:
        return list((await session.scalars(select(IdempotencyKey))).all())


async def test_b2_with_the_same_key_and_body_answers_the_first_answer_and_stores_one_batch(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int, db: Database
) -> None:
    body = {"call_records": [record_v2(label, now_ms), record_v2(label, now_ms, receiver_number="12")]}
    first = await client.post(b2_path(tenant), json=body, headers=keyed(auth, "order-42"))
    assert first.status_code == 200, first.text
    assert idempotency.REPLAYED_HEADER.lower() not in first.headers
    again = await client.post(b2_path(tenant), json=body, headers=keyed(auth, "order-42"))
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers[idempotency.REPLAYED_HEADER] == "true"
    assert [str(b.id) for b in await stored_batches(db)] == [first.json()["batch_id"]]
    assert len(await stored_records(db)) == 2
    # Without a key nothing changes: a second batch.
    plain = await client.post(b2_path(tenant), json=body, headers=auth)
    assert plain.json()["batch_id"] != first.json()["batch_id"]
    assert len(await stored_batches(db)) == 2


async def test_the_same_key_with_another_body_is_422_and_does_nothing(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int, db: Database
) -> None:
    first = await client.post(
        b2_path(tenant), json={"call_records": [record_v2(label, now_ms)]}, headers=keyed(auth, "k1")
    )
    assert first.status_code == 200
    other = {"call_records": [record_v2(label, now_ms, receiver_number="919999999999")]}
    refused = await client.post(b2_path(tenant), json=other, headers=keyed(auth, "k1"))
    assert refused.status_code == 422
    assert refused.json()["slug"] == "idempotency-key-reused"
    assert "Idempotency-Key 'k1' was already used with another request" in refused.json()["message"]
    # Another endpoint with the same key is another request too.
    r2 = await client.post(r2_path(tenant), json=record_v2(label, now_ms), headers=keyed(auth, "k1"))
    assert r2.status_code == 422
    assert len(await stored_batches(db)) == 1 and len(await stored_records(db)) == 1


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, "clé", "tab\there"])
async def test_an_unusable_key_is_400_naming_the_header(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int, db: Database, key: str
) -> None:
    # In the v2 error shape, which R2/B2 clients read every 400 as (their documented answer; schemathesis sent one).
    for path, body in (
        (b2_path(tenant), {"call_records": [record_v2(label, now_ms)]}),
        (r2_path(tenant), record_v2(label, now_ms)),
    ):
        response = await client.post(path, json=body, headers={**auth, "Idempotency-Key": key.encode()})
        assert response.status_code == 400
        assert response.json() == {
            "status_info": {
                "status": "error",
                "field": "Idempotency-Key",
                "message": "Idempotency-Key must be 1-255 printable ASCII characters",
            }
        }
    assert await stored_batches(db) == [] and await key_rows(db) == []


async def test_v1_answers_an_unusable_key_as_a_v1_failure(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int, db: Database
) -> None:
    # v1 clients read every 400 as {status, message} (the documented v1 answer); nothing is stored.
    for path in ("dynamic_call_record", "dynamic_call_records"):
        body = record_v1(label, now_ms) if path.endswith("record") else {"call_records": [record_v1(label, now_ms)]}
        response = await client.post(
            f"/clients/{tenant.account_id}/{path}", json=body, headers={**auth, "Idempotency-Key": "k" * 256}
        )
        assert response.status_code == 400
        assert response.json() == {
            "status": "failure",
            "message": "Idempotency-Key must be 1-255 printable ASCII characters",
        }
        assert response.headers["deprecation"] == "true"
    assert await stored_batches(db) == [] and await key_rows(db) == []


async def test_keys_belong_to_their_account(
    client: httpx.AsyncClient,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
    db: Database,
    settings: Settings,
) -> None:
    other = await create_tenant(db, settings, name="Other Co")
    other_auth = {"Authorization": f"Bearer {await mint(client, other)}"}
    from tests.personalisation.conftest import add_label

    other_label = await add_label(db, settings, other.account_id)
    mine = await client.post(
        b2_path(tenant), json={"call_records": [record_v2(label, now_ms)]}, headers=keyed(auth, "same")
    )
    theirs = await client.post(
        b2_path(other), json={"call_records": [record_v2(other_label, now_ms)]}, headers=keyed(other_auth, "same")
    )
    assert mine.status_code == theirs.status_code == 200
    assert idempotency.REPLAYED_HEADER.lower() not in theirs.headers
    assert mine.json()["batch_id"] != theirs.json()["batch_id"]


async def test_r2_replays_its_answer_and_stores_and_pushes_once(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int, db: Database
) -> None:
    record = record_v2(label, now_ms)
    first = await client.post(r2_path(tenant), json=record, headers=keyed(auth, "call-1"))
    assert first.status_code == 200, first.text
    again = await client.post(r2_path(tenant), json=record, headers=keyed(auth, "call-1"))
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers[idempotency.REPLAYED_HEADER] == "true"
    assert len(await stored_records(db)) == 1
    # An invalid record is stored too (SPEC §5.2): its 400 is the answer given again.
    bad = record_v2(label, now_ms, ends_at=now_ms - 1)
    refused = await client.post(r2_path(tenant), json=bad, headers=keyed(auth, "call-2"))
    assert refused.status_code == 400
    replayed = await client.post(r2_path(tenant), json=bad, headers=keyed(auth, "call-2"))
    assert (replayed.status_code, replayed.json()) == (400, refused.json())
    assert len(await stored_records(db)) == 2


async def test_v1_failure_and_success_are_replayed_with_their_batch_ids(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int, db: Database
) -> None:
    path = f"/clients/{tenant.account_id}/dynamic_call_records"
    bad = {"call_records": [record_v1(label, now_ms), record_v1(label, now_ms, ends_at=now_ms - 1)]}
    failed = await client.post(path, json=bad, headers=keyed(auth, "v1-bad"))
    assert failed.status_code == 400 and failed.json()["status"] == "failure"
    again = await client.post(path, json=bad, headers=keyed(auth, "v1-bad"))
    assert (again.status_code, again.json()) == (400, failed.json())
    assert again.headers["deprecation"] == "true" and again.headers[idempotency.REPLAYED_HEADER] == "true"
    single = f"/clients/{tenant.account_id}/dynamic_call_record"
    accepted = await client.post(single, json=record_v1(label, now_ms), headers=keyed(auth, "v1-good"))
    assert accepted.status_code == 200
    assert (await client.post(single, json=record_v1(label, now_ms), headers=keyed(auth, "v1-good"))).json() == (
        accepted.json()
    )
    assert len(await stored_batches(db)) == 2


async def test_a_request_refused_before_any_work_gives_its_key_back(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], db: Database
) -> None:
    # Not a JSON object: answered before the key is looked at; nothing kept.
    response = await client.post(b2_path(tenant), content=b"[1]", headers=keyed(auth, "early"))
    assert response.status_code == 400
    assert await key_rows(db) == []


async def test_identical_requests_racing_do_the_work_once(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int, db: Database
) -> None:
    body = {"call_records": [record_v2(label, now_ms, receiver_number=f"91987650{i:04d}") for i in range(50)]}
    answers = await asyncio.gather(
        *(client.post(b2_path(tenant), json=body, headers=keyed(auth, "race")) for _ in range(8))
    )
    done = [a for a in answers if a.status_code == 200]
    busy = [a for a in answers if a.status_code == 409]
    assert len(done) + len(busy) == 8 and done, [a.text for a in answers]
    assert {a.json()["batch_id"] for a in done} == {done[0].json()["batch_id"]}
    for answer in busy:
        assert answer.json()["slug"] == "idempotency-key-in-progress"
        assert answer.headers["retry-after"] == "1"
    assert len(await stored_batches(db)) == 1 and len(await stored_records(db)) == 50
    # Once the work is done every retry gets its answer.
    again = await client.post(b2_path(tenant), json=body, headers=keyed(auth, "race"))
    assert again.json() == done[0].json()


async def _claim(db: Database, settings: Settings, tenant: Tenant, key: str, body: bytes = b"{}") -> Any:
    return await idempotency.begin(db, settings, tenant.account_id, key, idempotency.fingerprint("POST", "/x", body))


async def test_a_key_held_by_a_request_that_died_is_taken_over_after_the_lease(
    db: Database, settings: Settings, tenant: Tenant, label: Label, now: datetime
) -> None:
    dead = await _claim(db, settings, tenant, "crash")
    assert isinstance(dead, idempotency.Claim)
    with pytest.raises(idempotency.Busy) as busy:
        await _claim(db, settings, tenant, "crash")
    assert busy.value.retry_after == 1
    clock.freeze(now + timedelta(seconds=settings.idempotency_lease_seconds + 1))
    retry = await _claim(db, settings, tenant, "crash")
    assert isinstance(retry, idempotency.Claim) and retry.token != dead.token
    # The first request was only slow: its work's write finds the key taken over and rolls back, nothing stored.
    records = [record_v2(label, service.epoch_ms(clock.now()))]
    with pytest.raises(WriteConflict):
        await service.submit_v2_batch(
            db, tenant.account_id, records, answer=idempotency.answering(dead, lambda b: (200, {"batch_id": str(b)}))
        )
    assert await stored_batches(db) == []
    batch_id = await service.submit_v2_batch(
        db, tenant.account_id, records, answer=idempotency.answering(retry, lambda b: (200, {"batch_id": str(b)}))
    )
    assert [b.id for b in await stored_batches(db)] == [batch_id]
    answer = await _claim(db, settings, tenant, "crash")
    assert answer == idempotency.Answer(200, {"batch_id": str(batch_id)})


async def test_keys_expire_after_their_hours_and_are_purged(
    db: Database, settings: Settings, tenant: Tenant, now: datetime
) -> None:
    first = await _claim(db, settings, tenant, "old", b"one")
    assert isinstance(first, idempotency.Claim)
    await db.write([first.answer_step(200, {"ok": 1})])
    assert await _claim(db, settings, tenant, "old", b"one") == idempotency.Answer(200, {"ok": 1})
    later = now + timedelta(hours=settings.idempotency_key_hours, seconds=1)
    clock.freeze(later)
    # Expired: the key may be used again, even for another request.
    reused = await _claim(db, settings, tenant, "old", b"two")
    assert isinstance(reused, idempotency.Claim)
    other = await _claim(db, settings, tenant, "other", b"x")
    assert isinstance(other, idempotency.Claim)
    clock.freeze(later + timedelta(hours=settings.idempotency_key_hours, seconds=1))
    run = await purge(db, settings, IDEMPOTENCY_PURGES)
    assert run.deleted == {"idempotency_keys": 2}
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


async def test_a_service_error_gives_the_key_back(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], db: Database
) -> None:
    path = f"/clients/{tenant.account_id}/number_management/feature_sets/{uuid.uuid4()}/numbers/publish"
    body = {"phone_numbers": ["919876543210"]}
    for _ in range(2):  # the same 404 each time, not a 409: the key was given back
        response = await client.post(path, json=body, headers=keyed(auth, "nl"))
        assert response.status_code == 404, response.text
    assert await key_rows(db) == []


async def test_two_processes_racing_with_one_key_do_the_work_once(
    app: Any, settings: Settings, tenant: Tenant, auth: dict[str, str], label: Label, now_ms: int, db: Database
) -> None:
    """A second app on the same database (its own pool, its own SQLite writer) stands for a second process."""
    from callerid.app import create_app

    other = create_app(settings)
    body = {"call_records": [record_v2(label, now_ms, receiver_number=f"91987651{i:04d}") for i in range(20)]}
    async with other.router.lifespan_context(other):
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://testserver")
            for served in (app, other)
        ]
        try:
            answers = await asyncio.gather(
                *(clients[i % 2].post(b2_path(tenant), json=body, headers=keyed(auth, "two")) for i in range(6))
            )
            settled = await clients[1].post(b2_path(tenant), json=body, headers=keyed(auth, "two"))
        finally:
            for http in clients:
                await http.aclose()
    assert {a.status_code for a in answers} <= {200, 409} and settled.status_code == 200
    assert {a.json()["batch_id"] for a in answers if a.status_code == 200} <= {settled.json()["batch_id"]}
    assert len(await stored_batches(db)) == 1 and len(await stored_records(db)) == 20
