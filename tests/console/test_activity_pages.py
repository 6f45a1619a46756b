"""Call activity pages (issue 11 §6): batches and their records, one record, real-time records, search by number,
Call Me Back requests and survey answers with CSVs equal to the CMB / UF exports, who sees what, hostile input.

Everything is made through the API and the phones' endpoints, as a business and its customers would: records of
every outcome (delivered, pending, each delivery failure, refused), Call Me Back requests and survey answers for a
feature set inside the owners' subtree and one outside it.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from callerid import clock
from callerid.accounts import service as accounts
from callerid.accounts.models import ClientAccount
from callerid.config import Settings
from callerid.db import Database
from callerid.delivery.service import register_device
from callerid.jobs.runner import JobRunner
from callerid.numbers import service as numbers
from callerid.personalisation.models import CallBatch, first_id
from callerid.personalisation.service import epoch_ms
from callerid.runtime import Runtime
from tests.conftest import Tenant, mint
from tests.console.conftest import World, browser, build_world, sign_in
from tests.engagement.conftest import Org, make_feature_set, publish, register_phone
from tests.engagement.test_surveys import QUESTIONS, make_survey

HOUR_MS = 3_600_000
CALLER = "911234567890"
DELIVERED_TO = "919800000001"  # android, connected
IOS = "919800000002"
OLD_APP = "919800000003"  # android 0.9
OFFLINE = "919800000004"  # android, not connected
NO_APP = "919800000005"  # never installed the app
MY_SET_NUMBER = "910000000001"
OTHER_SET_NUMBER = "910000000002"
CLIENT = "919700000001"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Console tests test webhooks on loopback; list jobs run at once (the Call Me Back numbers get listed).
    return {"webhook_allow_private": True, "number_job_delay_seconds": 0}


@dataclass
class Activity:
    world: World
    auth: dict[str, str]
    label_id: uuid.UUID
    mixed_batch: str  # B2: one record of each outcome but pending, then a refused one
    pending_batch: str  # B2, not delivered yet
    big_batch: str  # B2 of 60 records
    rejected_batch: str  # B1, refused as a whole
    r1_batch: str  # R1: a batch of one
    other_batch: str  # another account's batch, to the same receivers
    my_set: uuid.UUID  # feature set in every owner's subtree, with Call Me Back and a survey
    other_set: uuid.UUID  # feature set under Support (outside the owners' subtree but the outsider's)
    my_survey: str
    other_survey: str


def record(label_id: uuid.UUID, receiver: str, **changes: Any) -> dict[str, Any]:
    now_ms = epoch_ms(clock.now())
    body: dict[str, Any] = {
        "label_id": str(label_id),
        "dynamic_label_name": "Acme Deliveries",
        "dynamic_call_reason": "Your parcel is on its way",
        "caller_number": CALLER,
        "receiver_number": receiver,
        "starts_at": now_ms - 1000,
        "ends_at": now_ms + HOUR_MS,
    }
    body.update(changes)
    return body


async def token_for(client: httpx.AsyncClient, db: Database, settings: Settings, account_id: uuid.UUID) -> str:
    async with db.transaction() as session:
        issued = await accounts.create_api_key(
            session, settings, account_id=account_id, name=f"k{uuid.uuid4().hex[:6]}"
        )
    return await mint(client, Tenant(account_id, "", issued.key.key_id, issued.secret))


async def b2(client: httpx.AsyncClient, world: World, auth: dict[str, str], records: list[dict[str, Any]]) -> str:
    response = await client.post(
        f"/v2/clients/{world.account_id}/dynamic_call_records", json={"call_records": records}, headers=auth
    )
    assert response.status_code == 200, response.text
    batch_id: str = response.json()["batch_id"]
    return batch_id


async def r2(client: httpx.AsyncClient, world: World, auth: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/v2/clients/{world.account_id}/dynamic_call_record", json=body, headers=auth)
    assert response.status_code in (200, 400), response.text
    answer: dict[str, Any] = response.json()["status_info"]
    return answer


async def populate(
    client: httpx.AsyncClient, db: Database, settings: Settings, runtime: Runtime, runner: JobRunner
) -> Activity:
    world = await build_world(db, settings, "Acme Flowers")
    other = await build_world(db, settings, "Other Co")
    auth = {"Authorization": f"Bearer {await token_for(client, db, settings, world.account_id)}"}
    other_auth = {"Authorization": f"Bearer {await token_for(client, db, settings, other.account_id)}"}
    label_id = uuid.UUID(world.objects["label_id"])
    devices = {}
    async with db.transaction() as session:
        for number, platform, version in (
            (DELIVERED_TO, "android", "2.0.0"),
            (IOS, "ios", "2.0.0"),
            (OLD_APP, "android", "0.9"),
            (OFFLINE, "android", "2.0.0"),
        ):
            device = await register_device(session, phone_number=number, platform=platform, app_version=version)
            devices[number] = device.device_id
    receivers = [DELIVERED_TO, IOS, OLD_APP, OFFLINE, NO_APP]
    mixed = await b2(
        client,
        world,
        auth,
        [record(label_id, r) for r in receivers] + [record(label_id, NO_APP, ends_at=1)],
    )
    big = await b2(client, world, auth, [record(label_id, f"9196000{i:05d}") for i in range(60)])
    other_batch = await b2(
        client, other, other_auth, [record(uuid.UUID(other.objects["label_id"]), r) for r in receivers]
    )
    async with runtime.hub.attach(devices[DELIVERED_TO]):
        await runner.run_until_idle()
        # Real-time records: pushed at once, one of each outcome; one refused (not listed: no trusted account).
        for receiver, expected in zip(
            receivers,
            ("success", "os_not_supported", "app_version_not_supported", "failed_to_push", "not_app_user"),
            strict=True,
        ):
            answer = await r2(
                client, world, auth, record(label_id, receiver, dynamic_call_reason="Calling in real time")
            )
            assert answer.get("reason", answer["status"]) == expected, answer
        assert (await r2(client, world, auth, record(label_id, NO_APP, ends_at=1)))["status"] == "error"
        await r2(client, other, other_auth, record(uuid.UUID(other.objects["label_id"]), NO_APP))
    v1 = {"caller": CALLER, "receiver": NO_APP, "label_id": str(label_id), "starts_at": 1, "ends_at": 2}
    rejected = await client.post(
        f"/clients/{world.account_id}/dynamic_call_records", json={"call_records": [v1]}, headers=auth
    )
    assert rejected.status_code == 400, rejected.text
    r1 = await client.post(
        f"/clients/{world.account_id}/dynamic_call_record",
        json={**v1, "starts_at": epoch_ms(clock.now()), "ends_at": epoch_ms(clock.now()) + HOUR_MS},
        headers=auth,
    )
    assert r1.status_code == 200, r1.text

    # Call Me Back and surveys: a feature set in Sales > Delivery > Returns (every owner's), one under Support.
    async with db.transaction() as session:
        operation, _ = await numbers.create_operation(
            session,
            account_id=world.account_id,
            department_id=world.nodes["support"],
            name="Help desk",
            calling_operation_name="Delivery",
        )
        process = await numbers.create_process(
            session, account_id=world.account_id, operation_id=operation.id, name="Desk"
        )
    mine = Org(world.account_id, world.nodes["returns"], label_id)
    theirs = Org(world.account_id, process.id, label_id)
    my_set = await make_feature_set(db, mine, "Returns desk", call_me_back=True, survey=True, cmb_name="Returns CMB")
    other_set = await make_feature_set(
        db, theirs, "Support desk", call_me_back=True, survey=True, cmb_name="Support CMB"
    )
    await publish(client, runner, world.account_id, auth, my_set, MY_SET_NUMBER)
    await publish(client, runner, world.account_id, auth, other_set, OTHER_SET_NUMBER)
    my_survey = await make_survey(db, mine, my_set, "Returns survey")
    other_survey = await make_survey(db, theirs, other_set, "Support survey")
    phone = await register_phone(client, CLIENT)
    for business_number in (MY_SET_NUMBER, OTHER_SET_NUMBER, MY_SET_NUMBER):
        made = await client.post(
            "/app/v1/call-me-back", json={"business_number": business_number, "is_interested": False}, headers=phone
        )
        assert made.status_code == 201, made.text
    for survey_id, business_number in ((my_survey, MY_SET_NUMBER), (other_survey, OTHER_SET_NUMBER)):
        answered = await client.post(
            f"/app/v1/surveys/{survey_id}/responses",
            json={
                "business_number": business_number,
                "answers": [
                    {"question": QUESTIONS[0], "response": "Great"},
                    {"question": QUESTIONS[2], "response": "No, thanks"},
                ],
            },
            headers=phone,
        )
        assert answered.status_code == 201, answered.text
    # Last, so that no job runner run above delivers it.
    pending = await b2(client, world, auth, [record(label_id, NO_APP, dynamic_call_reason="Waiting to be pushed")])
    return Activity(
        world=world,
        auth=auth,
        label_id=label_id,
        mixed_batch=mixed,
        pending_batch=pending,
        big_batch=big,
        rejected_batch=re.search(r"BatchID: ([0-9a-f-]{36})", rejected.json()["message"]).group(1),  # type: ignore[union-attr]
        r1_batch=re.search(r"BatchID: ([0-9a-f-]{36})", r1.json()["message"]).group(1),  # type: ignore[union-attr]
        other_batch=other_batch,
        my_set=my_set,
        other_set=other_set,
        my_survey=my_survey,
        other_survey=other_survey,
    )


@pytest.fixture
async def activity(
    client: httpx.AsyncClient, db: Database, settings: Settings, runtime: Runtime, runner: JobRunner
) -> Activity:
    return await populate(client, db, settings, runtime, runner)


@asynccontextmanager
async def signed_in(app: Any, activity: Activity, role: str = "admin") -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as http:
        person = activity.world.people[role]
        response = await sign_in(http, person.email, person.password)
        assert response.status_code == 303, response.text
        yield http


def csv_rows(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="')
    return list(csv.reader(io.StringIO(response.text)))


def text_of(html: str) -> str:
    """The page's text, tags removed and spaces collapsed (to find what a reader sees)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- batches ---------------------------------------------------------------------------------------------------------


async def test_batches_newest_first_with_counts_by_outcome(app: Any, activity: Activity) -> None:
    async with signed_in(app, activity) as http:
        page = await http.get("/console/activity/batches")
        assert page.status_code == 200, page.text
        shown = re.findall(r'href="/console/activity/batches/([0-9a-f-]{36})"', page.text)
        # Newest first: the pending B2, R1, the rejected B1, the big one, the mixed one (and the world's own batch).
        assert shown == [
            activity.pending_batch,
            activity.r1_batch,
            activity.rejected_batch,
            activity.big_batch,
            activity.mixed_batch,
            activity.world.objects["batch_id"],
        ]
        assert activity.other_batch not in page.text
        assert "6 batches" in text_of(page.text)
        rows = csv_rows(await http.get("/console/activity/batches/export.csv"))
        header = rows[0]
        assert header == [
            "batch_id", "version", "records", "delivered", "pending", "invalid_input", "not_app_user",
            "os_not_supported", "app_version_not_supported", "failed_to_push", "created_at",
        ]  # fmt: skip
        by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows[1:]}
        assert [row[0] for row in rows[1:]] == shown
        mixed = by_id[activity.mixed_batch]
        assert (mixed["version"], mixed["records"]) == ("v2", "6")
        assert [mixed[o] for o in header[3:10]] == ["1", "0", "1", "1", "1", "1", "1"]
        assert (by_id[activity.pending_batch]["pending"], by_id[activity.big_batch]["not_app_user"]) == ("1", "60")
        assert (by_id[activity.rejected_batch]["version"], by_id[activity.rejected_batch]["invalid_input"]) == (
            "v1",
            "1",
        )
        assert by_id[activity.r1_batch]["not_app_user"] == "1"
        # The counts as the page shows them.
        assert "1 delivered" in page.text and "60 not an app user" in page.text and "1 pending" in page.text


async def test_a_batch_page_shows_each_record_its_outcome_and_why(
    app: Any, client: httpx.AsyncClient, db: Database, activity: Activity
) -> None:
    world = activity.world
    s2 = await client.get(
        f"/v2/clients/{world.account_id}/dynamic_call_records", params={"batchId": activity.mixed_batch},
        headers=activity.auth,
    )  # fmt: skip
    data = s2.json()["data"]
    async with signed_in(app, activity) as http:
        page = await http.get(f"/console/activity/batches/{activity.mixed_batch}")
        assert page.status_code == 200, page.text
        shown = text_of(page.text)
        assert "Batch of 6 records" in shown
        rows = re.findall(r"<tr>(.*?)</tr>", page.text, re.S)[1:]
        expected = [
            (DELIVERED_TO, "Delivered"),
            (IOS, "OS not supported"),
            (OLD_APP, "App version not supported"),
            (OFFLINE, "Failed to push"),
            (NO_APP, "Not an app user"),
            (NO_APP, "Invalid input"),
        ]
        assert [(re.search(r'data-label="Receiver"><code class="mono number">(\d+)', row).group(1), re.search(  # type: ignore[union-attr]
            r'data-label="Outcome"><span class="badge badge-\w+">([^<]+)</span>', row).group(1))  # type: ignore[union-attr]
            for row in rows] == expected  # fmt: skip
        assert "Acme Deliveries" in rows[0] and "Your parcel is on its way" in rows[0]
        # The refused record: the field and the API's message, and the value as sent.
        assert '<code class="mono">ends_at</code>: ends_at cannot be older than current time' in rows[5]
        assert 'datetime="1970-01-01T00:00:00.001' in rows[5]  # ends_at 1, as sent

        # Filtered by outcome, with its CSV; the CSV of the whole batch is in submission order, ids as S2's.
        delivered = await http.get(f"/console/activity/batches/{activity.mixed_batch}", params={"outcome": "delivered"})
        assert delivered.status_code == 200 and len(re.findall(r"<tr>", delivered.text)) == 2
        assert "1 record" in text_of(delivered.text)
        rows_csv = csv_rows(await http.get(f"/console/activity/batches/{activity.mixed_batch}/export.csv"))
        assert rows_csv[0] == [
            "created_at", "batch_id", "record_id", "caller", "receiver", "label_id", "label_name", "call_reason",
            "starts_at", "ends_at", "outcome", "field", "message",
        ]  # fmt: skip
        assert [row[2] for row in rows_csv[1:]] == [item["id"] for item in data]
        assert [row[10] for row in rows_csv[1:]] == [
            "delivered", "os_not_supported", "app_version_not_supported", "failed_to_push", "not_app_user",
            "invalid_input",
        ]  # fmt: skip
        assert rows_csv[1][3:10] == [
            CALLER, DELIVERED_TO, str(activity.label_id), "Acme Deliveries", "Your parcel is on its way",
            str(data[0]["starts_at"]), str(data[0]["ends_at"]),
        ]  # fmt: skip
        assert rows_csv[6][11:] == ["ends_at", "ends_at cannot be older than current time"]
        only = csv_rows(
            await http.get(f"/console/activity/batches/{activity.mixed_batch}/export.csv?outcome=delivered")
        )
        assert [row[4] for row in only[1:]] == [DELIVERED_TO]

        # 60 records: 50 on a page, the rest on the next, the total said.
        big = await http.get(f"/console/activity/batches/{activity.big_batch}")
        assert len(re.findall(r'data-label="Receiver"', big.text)) == 50
        assert "60 records · page 1 of 2" in text_of(big.text)
        second = await http.get(f"/console/activity/batches/{activity.big_batch}?page=2")
        receivers = re.findall(r'data-label="Receiver"><code class="mono number">(\d+)', second.text)
        assert receivers == [f"9196000{i:05d}" for i in range(50, 60)]
        beyond = await http.get(f"/console/activity/batches/{activity.big_batch}?page=900000")
        assert beyond.status_code == 200 and "Page 900000 is past the end: there are 2 pages" in text_of(beyond.text)

        # A pending batch, and a v1 batch refused as a whole (each record says why).
        pending = await http.get(f"/console/activity/batches/{activity.pending_batch}")
        assert "Records marked pending are still being delivered" in pending.text and ">Pending<" in pending.text
        rejected = await http.get(f"/console/activity/batches/{activity.rejected_batch}")
        assert "ends_at cannot be older than current time" in rejected.text and "through the v1 API" in rejected.text

        # Another account's batch, a made-up one and a malformed id: the same 404.
        for batch in (activity.other_batch, str(uuid.uuid4()), "not-a-batch", "'; DROP TABLE call_batches; --"):
            missing = await http.get(f"/console/activity/batches/{batch}")
            assert missing.status_code == 404, batch
            assert (await http.get(f"/console/activity/batches/{batch}/export.csv")).status_code == 404


async def test_a_record_page_shows_what_s2_shows(
    app: Any, client: httpx.AsyncClient, db: Database, activity: Activity
) -> None:
    world = activity.world
    s2 = await client.get(
        f"/v2/clients/{world.account_id}/dynamic_call_records", params={"batchId": activity.mixed_batch},
        headers=activity.auth,
    )  # fmt: skip
    data = s2.json()["data"]
    async with db.session() as session:
        key = await session.scalar(select(CallBatch.key).where(CallBatch.id == uuid.UUID(activity.mixed_batch)))
    assert key is not None
    async with signed_in(app, activity) as http:
        batch_page = await http.get(f"/console/activity/batches/{activity.mixed_batch}")
        refs = re.findall(r'href="/console/activity/records/(\d+)"', batch_page.text)
        assert refs == [str(first_id(key) + position) for position in range(6)]
        page = await http.get(f"/console/activity/records/{refs[1]}")
        assert page.status_code == 200, page.text
        shown = text_of(page.text)
        assert f"Call record to {IOS}" in shown and "OS not supported" in shown
        assert f'data-copy="{data[1]["id"]}"' in page.text  # the id S1/S2 show
        assert f'data-copy="{activity.mixed_batch}"' in page.text
        assert f"/console/activity/search?number={IOS}&amp;side=receiver" in page.text
        refused = await http.get(f"/console/activity/records/{refs[5]}")
        assert "as your system sent them" in refused.text and "Invalid input" in refused.text
        assert "ends_at cannot be older than current time" in refused.text
        # Records of another account, made-up and malformed ids: 404 alike.
        async with db.session() as session:
            other_key = await session.scalar(
                select(CallBatch.key).where(CallBatch.id == uuid.UUID(activity.other_batch))
            )
        assert other_key is not None
        for ref in (
            str(first_id(other_key)),
            str(first_id(key) + 6),
            "0",
            "-1",
            "1e3",
            "99999999999999999999",
            "1 OR 1=1",
        ):
            assert (await http.get(f"/console/activity/records/{ref}")).status_code == 404, ref


# --- real-time records and search --------------------------------------------------------------------------------


async def test_real_time_records_with_counts_filter_and_csv(app: Any, activity: Activity) -> None:
    async with signed_in(app, activity) as http:
        page = await http.get("/console/activity/real-time")
        assert page.status_code == 200, page.text
        receivers = re.findall(r'data-label="Receiver"><code class="mono number">(\d+)', page.text)
        # Newest first; the refused one and the other account's are not there.
        assert receivers == [NO_APP, OFFLINE, OLD_APP, IOS, DELIVERED_TO]
        shown = text_of(page.text)
        assert "5 records" in shown
        for count in ("1 delivered", "1 os not supported", "1 app version not supported", "1 failed to push"):
            assert count in shown
        assert "Calling in real time" in page.text and "Your parcel is on its way" not in page.text
        failed = await http.get("/console/activity/real-time", params={"outcome": "failed_to_push"})
        assert re.findall(r'data-label="Receiver"><code class="mono number">(\d+)', failed.text) == [OFFLINE]
        rows = csv_rows(await http.get("/console/activity/real-time/export.csv"))
        assert [(row[1], row[2], row[4], row[10]) for row in rows[1:]] == [
            ("", "", NO_APP, "not_app_user"),
            ("", "", OFFLINE, "failed_to_push"),
            ("", "", OLD_APP, "app_version_not_supported"),
            ("", "", IOS, "os_not_supported"),
            ("", "", DELIVERED_TO, "delivered"),
        ]
        only = csv_rows(await http.get("/console/activity/real-time/export.csv?outcome=delivered"))
        assert [row[4] for row in only[1:]] == [DELIVERED_TO]
        # Its record page: no record id (R2 records have none), back to the real-time list.
        ref = re.findall(r'href="/console/activity/records/(\d+)"', failed.text)[0]
        record_page = await http.get(f"/console/activity/records/{ref}")
        assert "Sent in real time (R2)" in record_page.text and "only in its push message" in record_page.text
        # Days before today: nothing (the records are today's); a pending outcome is not one R2 has.
        zone = ZoneInfo(await account_timezone(app, activity))
        yesterday = (clock.now().astimezone(zone) - timedelta(days=1)).date().isoformat()
        earlier = await http.get("/console/activity/real-time", params={"from": yesterday, "to": yesterday})
        assert earlier.status_code == 200 and "No real-time records in these dates" in earlier.text
        assert (await http.get("/console/activity/real-time?outcome=pending")).status_code == 400


async def account_timezone(app: Any, activity: Activity) -> str:
    db: Database = app.state.runtime.db
    async with db.session() as session:
        zone = await session.scalar(select(ClientAccount.timezone).where(ClientAccount.id == activity.world.account_id))
    assert zone is not None
    return zone


async def test_search_by_receiver_or_caller_across_batches_and_real_time(app: Any, activity: Activity) -> None:
    async with signed_in(app, activity) as http:
        found = await http.get("/console/activity/search", params={"number": f"+{NO_APP}"})
        assert found.status_code == 200, found.text
        # To NO_APP: the pending B2, R1, the real-time one and the mixed batch's valid one (newest first); the
        # refused ones (B1, the mixed batch's last, the refused R2) and the other account's are not found.
        places = re.findall(
            r'data-label="Received"><a href="/console/activity/records/\d+">.*?</a><br>'
            r'<span class="muted">([^<]+)</span>',
            found.text,
        )
        assert places == [
            f"batch {activity.pending_batch[:8]}, record #1",
            f"batch {activity.r1_batch[:8]}, record #1",
            "real-time",
            f"batch {activity.mixed_batch[:8]}, record #5",
        ]
        assert "4 records" in text_of(found.text)
        outcomes = re.findall(r'data-label="Outcome"><span class="badge badge-\w+">([^<]+)</span>', found.text)
        assert outcomes == ["Pending", "Not an app user", "Not an app user", "Not an app user"]
        rows = csv_rows(await http.get("/console/activity/search/export.csv", params={"number": NO_APP}))
        assert [(row[1], row[10]) for row in rows[1:]] == [
            (activity.pending_batch, "pending"),
            (activity.r1_batch, "not_app_user"),
            ("", "not_app_user"),
            (activity.mixed_batch, "not_app_user"),
        ]
        # As the caller: every valid record of the account; as a receiver, the caller number finds nothing.
        as_caller = await http.get("/console/activity/search", params={"number": CALLER, "side": "caller"})
        assert "73 records" in text_of(as_caller.text)  # world's 1 + mixed 5 + big 60 + R2 5 + R1 + pending
        assert "50 records" not in as_caller.text and len(re.findall(r'data-label="Receiver"', as_caller.text)) == 50
        page_2 = await http.get("/console/activity/search", params={"number": CALLER, "side": "caller", "page": "2"})
        assert len(re.findall(r'data-label="Receiver"', page_2.text)) == 23
        nothing = await http.get("/console/activity/search", params={"number": CALLER, "side": "receiver"})
        assert nothing.status_code == 200 and f'No record to <code class="mono">{CALLER}</code>' in nothing.text
        as_receiver = await http.get("/console/activity/search", params={"number": DELIVERED_TO, "side": "receiver"})
        assert "2 records" in text_of(as_receiver.text)
        # Nothing typed yet: the form and what it does; its CSV is empty.
        empty = await http.get("/console/activity/search")
        assert empty.status_code == 200 and "Search by number" in empty.text
        assert csv_rows(await http.get("/console/activity/search/export.csv"))[1:] == []


# --- Call Me Back requests and survey answers: the CSV is the export API's -------------------------------------------


async def api_export(client: httpx.AsyncClient, url: str, params: dict[str, str], auth: dict[str, str]) -> bytes:
    """The file an export API links to, downloaded."""
    answered = await client.get(url, params=params, headers=auth)
    assert answered.status_code == 200, answered.text
    download = await client.get(answered.json()["url"].removeprefix("http://testserver"))
    assert download.status_code == 200, download.text
    return download.content


async def test_call_me_back_requests_and_csv_equal_to_the_cmb_export(
    app: Any, client: httpx.AsyncClient, activity: Activity
) -> None:
    zone = ZoneInfo(await account_timezone(app, activity))
    today = clock.now().astimezone(zone).date()
    first = today - timedelta(days=2)
    start = datetime.combine(first, datetime.min.time(), zone)
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), zone) - timedelta(milliseconds=1)
    params = {"from": str(epoch_ms(start)), "to": str(epoch_ms(end))}
    exported = await api_export(
        client, f"/clients/{activity.world.account_id}/openapi/callback-logs/summary", params, activity.auth
    )
    lines = exported.decode().split("\r\n")
    assert len(lines) == 5 and lines[-1] == ""  # header, three requests, the final CRLF
    filters = {"from": first.isoformat(), "to": today.isoformat()}
    async with signed_in(app, activity) as http:
        page = await http.get("/console/activity/call-me-back", params=filters)
        assert page.status_code == 200, page.text
        assert "3 requests" in text_of(page.text)
        assert page.text.count("Returns desk") >= 2 and "Support desk" in page.text
        console = await http.get("/console/activity/call-me-back/export.csv", params=filters)
        assert console.status_code == 200
        assert console.content == exported  # byte for byte
        one_set = await http.get(
            "/console/activity/call-me-back/export.csv", params={**filters, "feature_set": str(activity.other_set)}
        )
        assert one_set.text.split("\r\n") == [lines[0], *[line for line in lines[1:-1] if "Support desk" in line], ""]
    # An owner (Sales): the requests of the feature sets in their subtree only, and that CSV.
    async with signed_in(app, activity, "operation_owner") as http:
        page = await http.get("/console/activity/call-me-back", params=filters)
        assert page.status_code == 200
        assert "2 requests" in text_of(page.text) and "Support desk" not in page.text
        owned = await http.get("/console/activity/call-me-back/export.csv", params=filters)
        assert owned.text.split("\r\n") == [lines[0], *[line for line in lines[1:-1] if "Returns desk" in line], ""]
        # The other feature set is not one they may choose (by URL either): a message, and nothing of it.
        guessed = await http.get(
            "/console/activity/call-me-back", params={**filters, "feature_set": str(activity.other_set)}
        )
        assert guessed.status_code == 400 and "choose a feature set from the list" in guessed.text
        assert "Support CMB" not in guessed.text
        refused = await http.get(
            "/console/activity/call-me-back/export.csv", params={**filters, "feature_set": str(activity.other_set)}
        )
        assert refused.status_code == 400 and "Support" not in refused.text
    # The Support owner sees the other one only.
    async with signed_in(app, activity, "outsider") as http:
        owned = await http.get("/console/activity/call-me-back/export.csv", params=filters)
        assert owned.text.split("\r\n") == [lines[0], *[line for line in lines[1:-1] if "Support desk" in line], ""]


async def test_survey_answers_and_csv_equal_to_the_uf_export(
    app: Any, client: httpx.AsyncClient, activity: Activity
) -> None:
    zone = ZoneInfo(await account_timezone(app, activity))
    today = clock.now().astimezone(zone).date()
    filters = {"from": (today - timedelta(days=1)).isoformat(), "to": today.isoformat()}
    uf = f"/clients/{activity.world.account_id}/openapi/feedback_stack/{{}}/export_report"
    dates = {"from_date": filters["from"], "to_date": filters["to"]}
    mine = await api_export(client, uf.format(activity.my_survey), dates, activity.auth)
    theirs = await api_export(client, uf.format(activity.other_survey), dates, activity.auth)
    assert len(mine.decode().split("\r\n")) == 4  # header, two answers, the final CRLF
    async with signed_in(app, activity) as http:
        page = await http.get("/console/activity/survey-answers", params=filters)
        assert page.status_code == 200, page.text
        assert "2 responses" in text_of(page.text) and "No, thanks" in page.text
        for survey_id, exported in ((activity.my_survey, mine), (activity.other_survey, theirs)):
            console = await http.get(
                "/console/activity/survey-answers/export.csv", params={**filters, "survey": survey_id}
            )
            assert console.content == exported  # byte for byte
        every = await http.get("/console/activity/survey-answers/export.csv", params=filters)
        header, *rows = every.text.split("\r\n")[:-1]
        assert header == mine.decode().split("\r\n")[0]
        assert sorted(rows) == sorted(mine.decode().split("\r\n")[1:-1] + theirs.decode().split("\r\n")[1:-1])
    async with signed_in(app, activity, "process_owner") as http:
        page = await http.get("/console/activity/survey-answers", params=filters)
        assert "1 response" in text_of(page.text) and "Support survey" not in page.text
        owned = await http.get("/console/activity/survey-answers/export.csv", params=filters)
        assert owned.content == mine
        guessed = await http.get(
            "/console/activity/survey-answers/export.csv", params={**filters, "survey": activity.other_survey}
        )
        assert guessed.status_code == 400 and "choose a survey from the list" in guessed.text


# --- who sees what ---------------------------------------------------------------------------------------------------


async def test_owners_see_only_call_me_back_and_survey_answers_of_their_part(app: Any, activity: Activity) -> None:
    async with signed_in(app, activity, "process_owner") as http:
        landing = await http.get("/console/activity")
        assert landing.status_code == 200
        shown = text_of(landing.text)
        assert "Call Me Back requests" in shown and "Survey answers" in shown
        assert "Batches" not in shown and "Search records" not in shown and "Real-time" not in shown
        # Two Call Me Back requests and one survey response of Returns desk in the last week.
        assert re.findall(r'<span class="count">(\d+)</span>', landing.text) == ["2", "1"]
        for path in (
            "/console/activity/batches",
            "/console/activity/batches/export.csv",
            f"/console/activity/batches/{activity.mixed_batch}",
            "/console/activity/real-time",
            f"/console/activity/search?number={NO_APP}",
            "/console/activity/search/export.csv",
        ):
            response = await http.get(path)
            assert response.status_code == 403, path
            assert NO_APP not in response.text
    async with signed_in(app, activity) as http:
        landing = await http.get("/console/activity")
        assert re.findall(r'<span class="count">(\d+)</span>', landing.text) == ["3", "2"]
        assert "Search records" in landing.text and "All batches" in landing.text


# --- hostile input -------------------------------------------------------------------------------------------------


HOSTILE = [
    ("/console/activity/batches?from=2025-13-45", 400, "from must be a date (YYYY-MM-DD)"),
    ("/console/activity/batches?from=0001-01-01&to=0001-01-02", 400, "from must be a date (YYYY-MM-DD)"),
    ("/console/activity/batches?to=9999-12-31", 400, "to must be a date (YYYY-MM-DD)"),
    ("/console/activity/batches?from=2025-02-01&to=2025-01-01", 400, "to must be on or after from"),
    ("/console/activity/batches?from=2020-01-01&to=2025-01-01", 400, "from must be at most 31 days before to"),
    ("/console/activity/batches?batch=%27%20OR%201%3D1%20--", 400, "batch is invalid"),
    (f"/console/activity/batches?batch={uuid.uuid4()}", 400, "no batch of your account has this id"),
    ("/console/activity/batches?page=99999999999999999999", 200, "Batches"),
    ("/console/activity/batches?page=-3", 200, "Batches"),
    ("/console/activity/batches/export.csv?from=%00", 400, "from must be a date (YYYY-MM-DD)"),
    (
        "/console/activity/real-time?outcome=%3Cscript%3Ealert(1)%3C/script%3E",
        400,
        "choose an outcome from the list",
    ),
    ("/console/activity/real-time/export.csv?to=yesterday", 400, "to must be a date (YYYY-MM-DD)"),
    ("/console/activity/search?number=%27%3B%20DROP%20TABLE%20call_records%3B%20--", 400, "number is invalid"),
    ("/console/activity/search?number=0123456789", 400, "number is invalid"),
    ("/console/activity/search?number=9" + "9" * 5000, 400, "number is invalid"),
    (f"/console/activity/search?number={NO_APP}&side=everything", 400, "choose receiver, caller or either"),
    ("/console/activity/search/export.csv?number=abc", 400, "number is invalid"),
    ("/console/activity/call-me-back?from=2025-02-30", 400, "from must be a date (YYYY-MM-DD)"),
    ("/console/activity/call-me-back?feature_set=%27%20OR%20%271%27%3D%271", 400, "choose a feature set"),
    ("/console/activity/call-me-back/export.csv?to=2025-01-01&from=2025-06-01", 400, "to must be on or after"),
    ("/console/activity/survey-answers?survey=..%2F..%2Fetc%2Fpasswd", 400, "choose a survey from the list"),
    ("/console/activity/survey-answers?page=999999", 200, "past the end"),
    ("/console/activity/survey-answers/export.csv?from=1e10", 400, "from must be a date (YYYY-MM-DD)"),
    ("/console/activity/batches/%2e%2e/export.csv", 404, "There is nothing here"),
]


async def test_hostile_query_parameters_get_clear_messages(app: Any, activity: Activity) -> None:
    async with signed_in(app, activity) as http:
        for path, status, message in HOSTILE:
            response = await http.get(path)
            assert response.status_code == status, (path, response.text[:300])
            assert message in response.text, (path, text_of(response.text)[:600])
            assert "<script>alert(1)" not in response.text
