"""Migration 0016: call records stored by the layout before it are converted, and read back through the API as they
were (ids, values, statuses, the newest record of a pair), delivered if still pending, and purged; and back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from alembic import command

from callerid import clock
from callerid.accounts import service as accounts
from callerid.app import create_app
from callerid.db import Database
from callerid.db.base import UtcDateTime
from callerid.db.migrate import alembic_config, upgrade
from callerid.delivery.service import register_device
from callerid.jobs.purge import purge
from callerid.jobs.runner import JobRunner
from callerid.jobs.service import enqueue
from callerid.labels import service as labels
from callerid.personalisation import service
from callerid.personalisation.jobs import RECORD_PURGES
from tests.conftest import fresh_postgresql_database, make_settings
from tests.labels.images import image_bytes
from tests.migrations import upgrade_all_but

REVISION, BEFORE = "0016_compact_call_records", "0014_retention_indexes"
NOW = datetime(2027, 1, 10, 9, 0, 0, 123456, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
HOUR_MS = 3_600_000
CALLER, FIRST, SECOND, THIRD = "911234567890", "919000000001", "919000000002", "919000000003"

OLD_BATCHES = sa.table(
    "call_batches",
    sa.column("id", sa.Uuid()),
    sa.column("account_id", sa.Uuid()),
    sa.column("version", sa.String()),
    sa.column("record_count", sa.Integer()),
    sa.column("created_at", UtcDateTime()),
)
OLD_RECORDS = sa.table(
    "call_records",
    *(sa.column(name, sa.Uuid()) for name in ("id", "account_id", "batch_id", "label_id")),
    *(sa.column(name, sa.String()) for name in ("version", "caller", "receiver", "label_name", "call_reason")),
    *(sa.column(name, sa.String()) for name in ("status", "reason", "field", "message")),
    *(sa.column(name, sa.BigInteger()) for name in ("position", "starts_at", "ends_at")),
    sa.column("sent", sa.JSON(none_as_null=True)),
    sa.column("created_at", UtcDateTime()),
)


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    clock.freeze(NOW)
    yield
    clock.reset()


@pytest.fixture(params=["sqlite", "postgresql"])
def url_at_0015(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own with every branch at its newest revision but personalisation before 0016."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'before.db'}"
        _upgrade_but_0016(url)
        yield url
        return
    with fresh_postgresql_database("callerid_records") as url:
        _upgrade_but_0016(url)
        yield url


def _upgrade_but_0016(url: str) -> None:
    upgrade_all_but(url, REVISION, BEFORE)


def _record(**values: Any) -> dict[str, Any]:
    """An old-layout record: valid and pending unless ``values`` say otherwise."""
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "batch_id": None,
        "position": 0,
        "version": "v2",
        "caller": CALLER,
        "receiver": FIRST,
        "label_name": "Flower rasm",
        "call_reason": "Flower Delivery",
        "starts_at": NOW_MS - HOUR_MS,
        "ends_at": NOW_MS + HOUR_MS,
        "status": "pending",
        "reason": None,
        "field": None,
        "message": None,
        "sent": None,
    }
    row.update(values)
    return row


def _invalid(**values: Any) -> dict[str, Any]:
    sent = {"caller": "12", "receiver": FIRST, "label_id": None, "label_name": None, "call_reason": None}
    sent |= {"starts_at": NOW_MS, "ends_at": NOW_MS + HOUR_MS}
    refused = {"caller": None, "receiver": None, "label_id": None, "label_name": None, "call_reason": None}
    refused |= {"starts_at": None, "ends_at": None, "status": "error", "reason": "invalid_input"}
    refused |= {"field": "caller_number", "message": "caller_number is invalid", "sent": sent}
    return _record(**refused | values)


class OldData:
    """What the layout before 0016 held: three batches and two R2 records of one account."""

    def __init__(self, account_id: uuid.UUID, label_id: uuid.UUID, api_key: tuple[str, str]):
        self.account_id = account_id
        self.label_id = label_id
        self.key_id, self.secret = api_key
        self.device_id = ""  # the phone of SECOND, the one app user
        self.pending, self.delivered, self.rejected = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        at = [NOW - timedelta(minutes=10 - i) for i in range(5)]
        self.batches = [
            {"id": self.pending, "version": "v2", "record_count": 3, "created_at": at[0]},
            {"id": self.delivered, "version": "v2", "record_count": 3, "created_at": at[1]},
            {"id": self.rejected, "version": "v1", "record_count": 2, "created_at": at[2]},
        ]
        valid = {"label_id": label_id}
        rejected_values = {"caller": CALLER, "receiver": SECOND, "label_id": str(label_id), "label_name": "Flower rasm"}
        rejected_values |= {"call_reason": None, "starts_at": NOW_MS, "ends_at": NOW_MS + HOUR_MS}
        self.records = [
            _record(**valid, batch_id=self.pending, position=0, created_at=at[0]),
            _invalid(batch_id=self.pending, position=1, created_at=at[0]),
            _record(**valid, batch_id=self.pending, position=2, receiver=SECOND, call_reason=None, created_at=at[0]),
            _record(**valid, batch_id=self.delivered, position=0, status="success", receiver=THIRD, created_at=at[1]),
            _record(
                **valid,
                batch_id=self.delivered,
                position=1,
                receiver=SECOND,
                status="error",
                reason="not_app_user",
                message="Not an app user",
                created_at=at[1],
            ),
            _record(
                **valid,
                batch_id=self.delivered,
                position=2,
                label_name="Other name",
                status="error",
                reason="not_app_user",
                message="Not an app user",
                created_at=at[1],
            ),
            _invalid(
                batch_id=self.rejected,
                version="v1",
                position=0,
                field="call_records",
                message="batch rejected, call_records[1]: caller is invalid",
                sent=rejected_values,
                created_at=at[2],
            ),
            _invalid(batch_id=self.rejected, version="v1", position=1, message="caller is invalid", created_at=at[2]),
            # R2: the newest record of the (CALLER, FIRST) pair, then one refused
            _record(**valid, label_name="Realtime name", status="error", reason="not_app_user", created_at=at[3]),
            _invalid(created_at=at[4]),
        ]
        for record in self.records:
            record["account_id"] = account_id


async def store_old_data(url: str, tmp_path: Path) -> OldData:
    settings = make_settings(url, tmp_path / "data")
    db = Database(url, null_pool=True)
    try:
        async with db.transaction() as session:
            created = await accounts.create_account(session, name="Acme Flowers", admin_email="admin@acme.test")
            account_id = created.account.id
            issued = await accounts.create_api_key(session, settings, account_id=account_id, name="key")
            label = await labels.create_label(
                session, settings, account_id=account_id, name="FlowerEra", logo=image_bytes(), label_type="dynamic"
            )
        data = OldData(account_id, label.id, (str(issued.key.key_id), issued.secret))
        async with db.transaction() as session:
            await session.execute(sa.insert(OLD_BATCHES), [{**b, "account_id": account_id} for b in data.batches])
            await session.execute(sa.insert(OLD_RECORDS), data.records)
            await enqueue(session, service.DELIVER_BATCH_JOB, {"batch_id": str(data.pending)})
            phone = await register_device(session, phone_number=SECOND, platform="android", app_version="9.0.0")
        data.device_id = phone.device_id
    finally:
        await db.dispose()
    return data


async def test_old_records_are_read_delivered_and_purged_after_the_migration(url_at_0015: str, tmp_path: Path) -> None:
    old = await store_old_data(url_at_0015, tmp_path)
    ids = {(r["batch_id"], r["position"]): str(r["id"]) for r in old.records}
    await asyncio.to_thread(upgrade, url_at_0015)

    app = create_app(make_settings(url_at_0015, tmp_path / "data"))
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            minted = await client.post(
                f"/clients/{old.account_id}/token",
                json={"key_id": old.key_id, "api_key": old.secret},
                headers={"X-Public-Access": "allow"},
            )
            auth = {"Authorization": f"Bearer {minted.json()['token']}"}

            async def s2(batch_id: uuid.UUID) -> list[dict[str, Any]]:
                path = f"/v2/clients/{old.account_id}/dynamic_call_records?batchId={batch_id}"
                response = await client.get(path, headers=auth)
                assert response.status_code == 200, response.text
                data: list[dict[str, Any]] = response.json()["data"]
                return data

            pending = await s2(old.pending)
            assert [row["id"] for row in pending] == [ids[(old.pending, p)] for p in range(3)]  # as shown before
            assert [row["status_info"] for row in pending] == [
                {"status": "pending"},
                {
                    "status": "error",
                    "reason": "invalid_input",
                    "field": "caller_number",
                    "message": "Request body is invalid: caller_number is invalid",
                },
                {"status": "pending"},
            ]
            assert pending[0] | {"status_info": None} == {
                "id": ids[(old.pending, 0)],
                "caller_number": CALLER,
                "receiver_number": FIRST,
                "label_id": str(old.label_id),
                "dynamic_label_name": "Flower rasm",
                "dynamic_call_reason": "Flower Delivery",
                "starts_at": NOW_MS - HOUR_MS,
                "ends_at": NOW_MS + HOUR_MS,
                "status_info": None,
                "created_at": "2027-01-10T08:50:00.123456Z",
            }
            assert (pending[1]["caller_number"], pending[1]["label_id"]) == ("12", None)  # echoed as sent
            assert pending[2]["dynamic_call_reason"] is None

            delivered = await s2(old.delivered)
            assert [row["id"] for row in delivered] == [ids[(old.delivered, p)] for p in range(3)]
            not_app_user = {"status": "error", "reason": "not_app_user", "message": "Not an app user"}
            assert [row["status_info"] for row in delivered] == [{"status": "success"}, not_app_user, not_app_user]
            assert [row["dynamic_label_name"] for row in delivered] == ["Flower rasm", "Flower rasm", "Other name"]

            response = await client.get(
                f"/clients/{old.account_id}/dynamic_call_records?batchId={old.rejected}", headers=auth
            )
            rejected = response.json()
            assert [(row["id"], row["status"], row["failure_reason"]) for row in rejected] == [
                (ids[(old.rejected, 0)], "failure", "batch rejected, call_records[1]: caller is invalid"),
                (ids[(old.rejected, 1)], "failure", "caller is invalid"),
            ]
            assert (rejected[0]["receiver"], rejected[0]["batch_id"]) == (SECOND, str(old.rejected))

            # The newest record of a pair is still the R2 one, stored after the pending batch.
            found = await service.active_identity(runtime.db, CALLER, FIRST, NOW)
            assert found is not None and found.name == "Realtime name"

            # The delivery job queued before the upgrade delivers the pending records, with the ids shown before.
            async with runtime.hub.attach(old.device_id) as connection:
                assert await JobRunner(runtime).run_until_idle() == 1
                pushed = [orjson.loads(connection.queue.get_nowait()) for _ in range(connection.queue.qsize())]
            assert [(m["record_id"], m["receiver"], m["call_reason"]) for m in pushed] == [
                (ids[(old.pending, 2)], SECOND, None)
            ]
            assert [row["status_info"]["status"] for row in await s2(old.pending)] == ["error", "error", "success"]

            # New batches come after the converted ones.
            newer = await client.post(
                f"/v2/clients/{old.account_id}/dynamic_call_records",
                json={
                    "call_records": [
                        {
                            "label_id": str(old.label_id),
                            "dynamic_label_name": "Newest name",
                            "caller_number": CALLER,
                            "receiver_number": FIRST,
                            "starts_at": NOW_MS,
                            "ends_at": NOW_MS + HOUR_MS,
                        }
                    ]
                },
                headers=auth,
            )
            assert newer.status_code == 200, newer.text
            found = await service.active_identity(runtime.db, CALLER, FIRST, NOW)
            assert found is not None and found.name == "Newest name"

        # Retention: every converted record goes 30 days after its window ended (a refused one: after it arrived),
        # with its group; the new batch is still to be delivered (its job has not run): it stays.
        run = await purge(runtime.db, runtime.settings, RECORD_PURGES, now=NOW + timedelta(days=31))
        assert run.deleted == {"call_records": 10, "call_batches": 5}


async def test_the_migration_goes_back(url_at_0015: str, tmp_path: Path) -> None:
    """Downgraded, records are as they were (but an R2 record's outcome message, and R2 records refused as invalid,
    which the new layout does not keep); a batch stored since gets the ids it was shown with."""
    old = await store_old_data(url_at_0015, tmp_path)
    await asyncio.to_thread(upgrade, url_at_0015)
    db = Database(url_at_0015, null_pool=True)
    try:
        batch_id = await service.submit_v2_batch(
            db,
            old.account_id,
            [
                {
                    "label_id": str(old.label_id),
                    "caller_number": CALLER,
                    "receiver_number": THIRD,
                    "starts_at": NOW_MS,
                    "ends_at": NOW_MS + HOUR_MS,
                }
            ],
        )
        async with db.session() as session:
            [shown] = await service.batch_records(session, old.account_id, batch_id)
    finally:
        await db.dispose()

    await asyncio.to_thread(command.downgrade, alembic_config(url_at_0015), BEFORE)
    db = Database(url_at_0015, null_pool=True)
    try:
        async with db.session() as session:
            rows = {row.id: row._asdict() for row in (await session.execute(sa.select(OLD_RECORDS))).all()}
            batches = (await session.execute(sa.select(sa.func.count()).select_from(OLD_BATCHES))).scalar_one()
    finally:
        await db.dispose()
    assert batches == 4
    r2_valid, r2_invalid = old.records[-2:]
    expected = {record["id"]: dict(record) for record in old.records if record is not r2_invalid}
    expected[r2_valid["id"]]["message"] = None
    assert {record_id: rows[record_id] for record_id in expected} == expected
    since = rows[uuid.UUID(shown.id)]
    assert (since["batch_id"], since["position"], since["receiver"], since["status"]) == (batch_id, 0, THIRD, "pending")
    assert since["label_name"] == "FlowerEra" and since["created_at"] == NOW
    assert len(rows) == len(expected) + 1
