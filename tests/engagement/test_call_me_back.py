"""``POST /app/v1/call-me-back``: the reference's scenarios C1-C4 field by field, events per webhook, refusals."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import update

from callerid import clock
from callerid.accounts.models import ClientAccount
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.runner import JobRunner
from tests.conftest import Tenant
from tests.engagement.conftest import (
    Org,
    at,
    body_of,
    events,
    make_feature_set,
    make_org,
    publish,
    register_phone,
    stored_requests,
    subscribe,
)
from tests.webhooks.receiver import Receiver

CMB = "/app/v1/call-me-back"
PAYLOAD_KEYS = [
    "business_number", "feature_set", "client_number", "requested_at", "requested_date", "requested_slot",
    "preferred_from_time", "preferred_to_time", "is_interested", "alternate_number", "cmb_config_name",
]  # fmt: skip


async def cmb_events(db: Database) -> list[Any]:
    return [body_of(event) for event in await events(db, "cmb")]


def expected_envelope(
    event_id: str, account_id: uuid.UUID, requested_at: str, payload: dict[str, Any]
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "client_account_id": str(account_id),
        "event_type": "cmb",
        "created_at": requested_at,
        "cmb_payload": payload,
    }


async def test_c1_slot_picker_happy_flow(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    org: Org,
    phone: dict[str, str],
    receiver: Receiver,
) -> None:
    fs = await make_feature_set(
        db, org, "Fresh Flower Delivery", call_me_back=True, cmb_name="CMBName", slot_picker=True
    )
    await publish(client, runner, tenant.account_id, auth, fs, "910987654321")
    await subscribe(db, settings, tenant.account_id, receiver.url)
    at(1753945760)

    response = await client.post(
        CMB,
        json={
            "business_number": "+910987654321",  # a leading + is tolerated (SPEC §2.5)
            "is_interested": True,
            "preferred_from_time": 1754116200,
            "preferred_to_time": 1754118000,
            "alternate_number": None,
        },
        headers=phone,
    )

    assert response.status_code == 201, response.text
    (request,) = await stored_requests(db)
    assert response.json() == {"id": str(request.id)}
    (event,) = await events(db, "cmb")
    expected = expected_envelope(
        str(event.id),
        tenant.account_id,
        "1753945760",
        {
            "business_number": "910987654321",
            "feature_set": "Fresh Flower Delivery",
            "client_number": "911234567890",
            "requested_at": "1753945760",
            "requested_date": "2025-08-02",
            "requested_slot": "Saturday",
            "preferred_from_time": "1754116200",
            "preferred_to_time": "1754118000",
            "is_interested": True,
            "alternate_number": "",
            "cmb_config_name": "CMBName",
        },
    )
    assert body_of(event) == expected
    assert list(body_of(event)) == list(expected) and list(body_of(event)["cmb_payload"]) == PAYLOAD_KEYS

    # Delivered, byte for byte what was stored.
    await runner.run_until_idle()
    (received,) = receiver.requests
    assert received.method == "POST" and received.target == "/hook?key=s3cret"
    assert received.body == event.body.encode()
    assert received.headers["webhook-id"] == str(event.id)


async def test_c2_sim_unavailable_with_alternate_number(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    org: Org,
    phone: dict[str, str],
) -> None:
    fs = await make_feature_set(db, org, "Testfeature", call_me_back=True, cmb_name="CMBName", slot_picker=True)
    await publish(client, runner, tenant.account_id, auth, fs, "910987654321")
    await subscribe(db, settings, tenant.account_id, "https://hooks.example.com/cmb")
    at(1753945773)

    response = await client.post(
        CMB,
        json={
            "business_number": "910987654321",
            "is_interested": True,
            "preferred_from_time": 1754031600,
            "preferred_to_time": 1754033400,
            "alternate_number": "+911234567898",
            "client_number_available": False,
        },
        headers=phone,
    )

    assert response.status_code == 201, response.text
    (event,) = await events(db, "cmb")
    # The reference prints 2025-08-02 next to a Friday slot; the slot starts Friday 2025-08-01 12:30 IST, and
    # requested_date is the date of preferred_from_time in the account timezone (SPEC §12 #34).
    assert body_of(event) == expected_envelope(
        str(event.id),
        tenant.account_id,
        "1753945773",
        {
            "business_number": "910987654321",
            "feature_set": "Testfeature",
            "client_number": "Phone number not available",
            "requested_at": "1753945773",
            "requested_date": "2025-08-01",
            "requested_slot": "Friday",
            "preferred_from_time": "1754031600",
            "preferred_to_time": "1754033400",
            "is_interested": True,
            "alternate_number": "911234567898",
            "cmb_config_name": "CMBName",
        },
    )


async def test_c3_not_interested(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    org: Org,
) -> None:
    fs = await make_feature_set(db, org, "New Feature Set-12", call_me_back=True, cmb_name="CMBName", slot_picker=True)
    await publish(client, runner, tenant.account_id, auth, fs, "911234567897")
    await subscribe(db, settings, tenant.account_id, "https://hooks.example.com/cmb")
    phone = await register_phone(client, "918765432198")
    at(1761719222)

    # A slot sent along with "not interested" is not a slot.
    response = await client.post(
        CMB,
        json={
            "business_number": "911234567897",
            "is_interested": False,
            "preferred_from_time": 1,
            "preferred_to_time": 2,
        },
        headers=phone,
    )

    assert response.status_code == 201, response.text
    (event,) = await events(db, "cmb")
    assert body_of(event) == expected_envelope(
        str(event.id),
        tenant.account_id,
        "1761719222",
        {
            "business_number": "911234567897",
            "feature_set": "New Feature Set-12",
            "client_number": "918765432198",
            "requested_at": "1761719222",
            "requested_date": "NA",
            "requested_slot": "NA",
            "preferred_from_time": None,
            "preferred_to_time": None,
            "is_interested": False,
            "alternate_number": "",
            "cmb_config_name": "CMBName",
        },
    )


async def test_c4_no_slot_picker_fills_the_next_window(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    org: Org,
    phone: dict[str, str],
) -> None:
    fs = await make_feature_set(
        db, org, "cmb", call_me_back=True, cmb_name="Callbacks", slot_picker=False,
        windows=["Monday 11:00-11:30", "Saturday 12:30-13:00"],
    )  # fmt: skip
    await publish(client, runner, tenant.account_id, auth, fs, "918069510075")
    await subscribe(db, settings, tenant.account_id, "https://hooks.example.com/cmb")
    at(1762500813)  # Friday 2025-11-07 13:03:33 IST

    # Without a slot picker a slot sent by the phone is ignored: the platform fills the window.
    response = await client.post(
        CMB,
        json={
            "business_number": "918069510075",
            "is_interested": True,
            "preferred_from_time": 1762590000,
            "preferred_to_time": 1762591800,
            "alternate_number": "918047360788",
            "client_number_available": False,
        },
        headers=phone,
    )

    assert response.status_code == 201, response.text
    (event,) = await events(db, "cmb")
    assert body_of(event) == expected_envelope(
        str(event.id),
        tenant.account_id,
        "1762500813",
        {
            "business_number": "918069510075",
            "feature_set": "cmb",
            "client_number": "Phone number not available",
            "requested_at": "1762500813",
            "requested_date": "2025-11-08",
            "requested_slot": "Saturday",
            "preferred_from_time": "1762585200",
            "preferred_to_time": "1762587000",
            "is_interested": True,
            "alternate_number": "918047360788",
            "cmb_config_name": "Callbacks",
        },
    )


@pytest.mark.parametrize(
    ("requested_at", "expected"),
    [
        # Friday 2025-11-07 13:03:33 IST -> Friday 13:30-14:00 (default: Mon-Sat, 30-minute windows 10:00-18:00).
        (1762500813, ("1762502400", "1762504200", "2025-11-07", "Friday")),
        # Saturday 2025-11-08 17:45 IST (12:15Z) -> no window left on Saturday, none on Sunday -> Monday 10:00.
        (1762604100, ("1762749000", "1762750800", "2025-11-10", "Monday")),
        # Exactly at a window's start: the next one (the window must start after the request).
        (1762504200, ("1762506000", "1762507800", "2025-11-07", "Friday")),
    ],
)
async def test_call_me_back_alone_uses_the_default_config(
    client: httpx.AsyncClient,
    db: Database,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    org: Org,
    phone: dict[str, str],
    settings: Settings,
    requested_at: int,
    expected: tuple[str, str, str, str],
) -> None:
    # One set configured with defaults (as `feature-sets create --call-me-back`), one enabled without a config row.
    configured = await make_feature_set(db, org, "Configured", call_me_back=True)
    bare = await make_feature_set(db, org, "Bare", call_me_back=True, with_config=False)
    await publish(client, runner, tenant.account_id, auth, configured, "910000000001")
    await publish(client, runner, tenant.account_id, auth, bare, "910000000002")
    await subscribe(db, settings, tenant.account_id, "https://hooks.example.com/cmb")
    at(requested_at)

    for number in ("910000000001", "910000000002"):
        response = await client.post(CMB, json={"business_number": number, "is_interested": True}, headers=phone)
        assert response.status_code == 201, response.text

    payloads = [body_of(e)["cmb_payload"] for e in await events(db, "cmb")]
    assert len(payloads) == 2
    for payload in payloads:
        got = (payload["preferred_from_time"], payload["preferred_to_time"])
        assert (*got, payload["requested_date"], payload["requested_slot"]) == expected
        assert payload["cmb_config_name"] == "Call Me Back"


async def test_requested_date_follows_the_account_timezone(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    phone: dict[str, str],
) -> None:
    org = await make_org(db, tenant.account_id, timezone="America/New_York")
    fs = await make_feature_set(db, org, "Fresh Flower Delivery", call_me_back=True, slot_picker=True)
    await publish(client, runner, tenant.account_id, auth, fs, "910987654321")
    await subscribe(db, settings, tenant.account_id, "https://hooks.example.com/cmb")
    at(1753945760)
    # 2025-08-02 02:00Z is still Friday 2025-08-01 22:00 in New York.
    response = await client.post(
        CMB,
        json={
            "business_number": "910987654321",
            "is_interested": True,
            "preferred_from_time": 1754100000,
            "preferred_to_time": 1754101800,
        },
        headers=phone,
    )
    assert response.status_code == 201, response.text
    (payload,) = [body["cmb_payload"] for body in await cmb_events(db)]
    assert (payload["requested_date"], payload["requested_slot"]) == ("2025-08-01", "Friday")


async def test_one_event_per_subscribed_webhook(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    org: Org,
    phone: dict[str, str],
    receiver: Receiver,
) -> None:
    fs = await make_feature_set(db, org, "Fresh Flower Delivery", call_me_back=True)
    await publish(client, runner, tenant.account_id, auth, fs, "910987654321")
    await subscribe(db, settings, tenant.account_id, receiver.url, name="A")
    await subscribe(db, settings, tenant.account_id, receiver.url + "&second=1", name="B")
    await subscribe(db, settings, tenant.account_id, receiver.url + "&feedback=1", name="C", events="user_feedback")

    response = await client.post(CMB, json={"business_number": "910987654321", "is_interested": False}, headers=phone)
    assert response.status_code == 201, response.text

    first, second = await events(db, "cmb")
    assert (first.webhook_name, second.webhook_name) == ("A", "B")
    assert await events(db, "user_feedback") == []
    assert first.id != second.id
    one, two = body_of(first), body_of(second)
    assert (one["event_id"], two["event_id"]) == (str(first.id), str(second.id))
    assert {**one, "event_id": ""} == {**two, "event_id": ""}

    await runner.run_until_idle()
    assert sorted(orjson.loads(r.body)["event_id"] for r in receiver.requests) == sorted(
        [str(first.id), str(second.id)]
    )


async def test_without_a_subscribed_webhook_no_event_but_data_kept(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    org: Org,
    phone: dict[str, str],
) -> None:
    fs = await make_feature_set(db, org, "Fresh Flower Delivery", call_me_back=True)
    await publish(client, runner, tenant.account_id, auth, fs, "910987654321")
    await subscribe(db, settings, tenant.account_id, "https://hooks.example.com/uf", events="user_feedback")

    response = await client.post(CMB, json={"business_number": "910987654321", "is_interested": False}, headers=phone)

    assert response.status_code == 201, response.text
    assert await events(db) == []
    (request,) = await stored_requests(db)
    assert (request.id, request.business_number, request.client_number) == (
        uuid.UUID(response.json()["id"]),
        "910987654321",
        "911234567890",
    )


# --- refusals ---------------------------------------------------------------------------------------------------


@pytest.fixture
async def picker_number(
    client: httpx.AsyncClient, db: Database, settings: Settings, runner: JobRunner, tenant: Tenant,
    auth: dict[str, str], org: Org,
) -> str:  # fmt: skip
    """910987654321 listed in a set with the slot picker; a webhook subscribed; the clock at C1's request time."""
    fs = await make_feature_set(db, org, "Fresh Flower Delivery", call_me_back=True, slot_picker=True)
    await publish(client, runner, tenant.account_id, auth, fs, "910987654321")
    await subscribe(db, settings, tenant.account_id, "https://hooks.example.com/cmb")
    at(1753945760)
    return "910987654321"


SLOT = {"preferred_from_time": 1754116200, "preferred_to_time": 1754118000}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"is_interested": True, **SLOT}, "business_number is required"),
        ({"business_number": "", "is_interested": True, **SLOT}, "business_number is required"),
        ({"business_number": 910987654321, "is_interested": True, **SLOT}, "business_number is invalid"),
        ({"business_number": "0987654321", "is_interested": True, **SLOT}, "business_number is invalid"),
        ({"business_number": "910987654321", **SLOT}, "is_interested is required"),
        ({"business_number": "910987654321", "is_interested": "yes", **SLOT}, "is_interested is invalid"),
        (
            {"business_number": "910987654321", "is_interested": True, "client_number_available": "no", **SLOT},
            "client_number_available is invalid",
        ),
        ({"business_number": "910987654321", "is_interested": True}, "preferred_from_time is required"),
        (
            {"business_number": "910987654321", "is_interested": True, "preferred_from_time": 1754116200},
            "preferred_to_time is required",
        ),
        (
            {"business_number": "910987654321", "is_interested": True, **SLOT, "preferred_from_time": "soon"},
            "preferred_from_time is invalid",
        ),
        (
            {"business_number": "910987654321", "is_interested": True, **SLOT, "preferred_to_time": True},
            "preferred_to_time is invalid",
        ),
        (
            {"business_number": "910987654321", "is_interested": True, **SLOT, "preferred_to_time": -5},
            "preferred_to_time is invalid",
        ),
        (
            {"business_number": "910987654321", "is_interested": True, **SLOT, "preferred_from_time": 10**13},
            "preferred_from_time is invalid",
        ),
        (
            # Beyond the last second a datetime can hold (9999-12-31T23:59:59Z).
            {"business_number": "910987654321", "is_interested": True, **SLOT, "preferred_to_time": 253402300800},
            "preferred_to_time is invalid",
        ),
        (
            {"business_number": "910987654321", "is_interested": True, **SLOT, "preferred_to_time": "999999999999"},
            "preferred_to_time is invalid",
        ),
        (
            {"business_number": "910987654321", "is_interested": True, **SLOT, "preferred_from_time": 1754116200.5},
            "preferred_from_time is invalid",
        ),
        (
            {"business_number": "910987654321", "is_interested": True, **SLOT, "preferred_from_time": 253402300799},
            "preferred_from_time is invalid: too far ahead",
        ),
        (
            {"business_number": "910987654321", "is_interested": True, **SLOT, "preferred_to_time": 1754116200},
            "preferred_to_time is invalid: must be after preferred_from_time, at most 1 day later",
        ),
        (
            {"business_number": "910987654321", "is_interested": True, **SLOT, "preferred_to_time": 1754116200 + 86401},
            "preferred_to_time is invalid: must be after preferred_from_time, at most 1 day later",
        ),
        (
            # Ended 301 s before the request (5 minutes of phone clock lag are tolerated).
            {
                "business_number": "910987654321",
                "is_interested": True,
                "preferred_from_time": 1753945760 - 1801,
                "preferred_to_time": 1753945760 - 301,
            },
            "preferred_to_time is invalid: the slot is over",
        ),
        (
            {
                "business_number": "910987654321",
                "is_interested": True,
                "preferred_from_time": 1753945760 + 91 * 86400,
                "preferred_to_time": 1753945760 + 91 * 86400 + 1800,
            },
            "preferred_from_time is invalid: too far ahead",
        ),
        (
            {"business_number": "910987654321", "is_interested": True, **SLOT, "alternate_number": "12"},
            "alternate_number is invalid",
        ),
        (
            {"business_number": "910987654321", "is_interested": True, **SLOT, "alternate_number": 911234567898},
            "alternate_number is invalid",
        ),
        (
            {"business_number": "910987654321", "is_interested": True, **SLOT, "client_number_available": False},
            "alternate_number is required when client_number_available is false",
        ),
    ],
)
async def test_bad_requests_are_refused_naming_the_field(
    client: httpx.AsyncClient, db: Database, phone: dict[str, str], picker_number: str, body: Any, message: str
) -> None:
    response = await client.post(CMB, json=body, headers=phone)
    assert (response.status_code, response.json()) == (400, {"slug": "invalid-input", "message": message})
    assert await stored_requests(db) == [] and await events(db) == []


async def test_slot_edges_that_are_accepted(
    client: httpx.AsyncClient, db: Database, phone: dict[str, str], picker_number: str
) -> None:
    bodies = [
        # Ended 299 s ago: within the tolerated clock lag.
        {"preferred_from_time": 1753945760 - 1799, "preferred_to_time": 1753945760 - 299},
        # In progress.
        {"preferred_from_time": 1753945760 - 600, "preferred_to_time": 1753945760 + 1200},
        # Digit strings, as the payloads show times; exactly one day long; 90 days ahead.
        {"preferred_from_time": "1754116200", "preferred_to_time": str(1754116200 + 86400)},
        {"preferred_from_time": 1753945760 + 90 * 86400, "preferred_to_time": 1753945760 + 90 * 86400 + 1800},
        # Not interested and SIM unreadable: no alternate number needed.
        {"is_interested": False, "client_number_available": False},
    ]
    for extra in bodies:
        body = {"business_number": picker_number, "is_interested": True, **extra}
        response = await client.post(CMB, json=body, headers=phone)
        assert response.status_code == 201, (extra, response.text)
    assert len(await stored_requests(db)) == len(bodies) == len(await events(db, "cmb"))


async def test_body_that_is_not_an_object(client: httpx.AsyncClient, db: Database, phone: dict[str, str]) -> None:
    for content in (b"not json", b"[1, 2]"):
        response = await client.post(CMB, content=content, headers={**phone, "Content-Type": "application/json"})
        assert (response.status_code, response.json()) == (
            400,
            {"slug": "invalid-input", "message": "Request body is invalid"},
        )


async def test_device_token_required(client: httpx.AsyncClient, db: Database, picker_number: str) -> None:
    body = {"business_number": picker_number, "is_interested": False}
    missing = await client.post(CMB, json=body)
    assert (missing.status_code, missing.json()) == (
        401,
        {"slug": "authorization-error", "message": "Missing device token"},
    )
    wrong = await client.post(CMB, json=body, headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()) == (
        401,
        {"slug": "authorization-error", "message": "invalid device token"},
    )
    assert await stored_requests(db) == []


async def test_numbers_that_do_not_fit(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    org: Org,
    phone: dict[str, str],
) -> None:
    with_cmb = await make_feature_set(db, org, "With CMB", call_me_back=True)
    without_cmb = await make_feature_set(db, org, "Without CMB", survey=True)
    await publish(client, runner, tenant.account_id, auth, with_cmb, "910000000001", "910000000003")
    await publish(client, runner, tenant.account_id, auth, without_cmb, "910000000002")
    await subscribe(db, settings, tenant.account_id, "https://hooks.example.com/cmb")
    delist = await client.post(
        f"/clients/{tenant.account_id}/number_management/feature_sets/{with_cmb}/numbers/delist",
        json={"phone_numbers": ["910000000003"]},
        headers=auth,
    )
    assert delist.status_code == 200, delist.text
    await runner.run_until_idle()

    async def ask(number: str) -> httpx.Response:
        return await client.post(CMB, json={"business_number": number, "is_interested": False}, headers=phone)

    not_listed = {"slug": "not-found", "message": "business_number is not a listed number"}
    for number in ("919999999999", "910000000003"):  # never listed; delisted
        response = await ask(number)
        assert (response.status_code, response.json()) == (404, not_listed)
    off = await ask("910000000002")
    assert (off.status_code, off.json()) == (
        409,
        {"slug": "conflict", "message": "call me back is not enabled for business_number"},
    )
    # The account is no longer subscribed to Call Me Back: the same answer.
    async with db.transaction() as session:
        await session.execute(
            update(ClientAccount)
            .where(ClientAccount.id == tenant.account_id)
            .values(features=["call_personalisation", "number_management", "user_feedback"])
        )
    unsubscribed = await ask("910000000001")
    assert (unsubscribed.status_code, unsubscribed.json()) == (409, off.json())
    assert await stored_requests(db) == [] and await events(db) == []


async def test_request_time_is_whole_seconds(
    client: httpx.AsyncClient, db: Database, phone: dict[str, str], picker_number: str
) -> None:
    clock.advance(0.75)  # 1753945760.75
    response = await client.post(CMB, json={"business_number": picker_number, "is_interested": False}, headers=phone)
    assert response.status_code == 201, response.text
    (request,) = await stored_requests(db)
    assert request.requested_at.timestamp() == 1753945760
    (event,) = await events(db, "cmb")
    assert body_of(event)["created_at"] == body_of(event)["cmb_payload"]["requested_at"] == "1753945760"
