"""CMB and UF (SPEC §5.10, §5.11): parameters, answers, the CSV behind the link, and the link's expiry."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import httpx
import pytest

from callerid import clock
from callerid.app import create_app
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.runner import JobRunner
from tests.conftest import Tenant, create_tenant, mint
from tests.engagement.conftest import Org, at, make_feature_set, make_org, publish, register_phone
from tests.engagement.test_surveys import make_survey

CMB_HEADER = [
    "business_number", "feature_set", "client_number", "alternate_number", "requested_at", "requested_date",
    "requested_slot", "preferred_from_time", "preferred_to_time", "is_interested", "cmb_config_name",
]  # fmt: skip
UF_HEADER = ["survey_name", "business_number", "feature_set", "client_number", "requested_at", "question", "response"]
C1_AT = 1753945760
C3_AT = 1753945900
NO_CMB = {"message": "No CMB found for client Id"}
NO_FEEDBACK = {"message": "No feedback found for survey Id"}


def cmb_url(account_id: uuid.UUID | str) -> str:
    return f"/clients/{account_id}/openapi/callback-logs/summary"


def uf_url(account_id: uuid.UUID | str, survey_id: str) -> str:
    return f"/clients/{account_id}/openapi/feedback_stack/{survey_id}/export_report"


def rows_of(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="')
    assert response.content.endswith(b"\r\n")
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"))))


async def link(client: httpx.AsyncClient, url: str, auth: dict[str, str], **params: str) -> str:
    response = await client.get(url, params=params, headers=auth)
    assert response.status_code == 200, response.text
    assert response.headers["deprecation"] == "true"
    (key,) = response.json()
    found: str = response.json()[key]
    assert key == "url" and found.startswith("http://testserver/downloads/")
    return found.removeprefix("http://testserver")


@pytest.fixture
async def cmb_data(
    client: httpx.AsyncClient, db: Database, runner: JobRunner, tenant: Tenant, auth: dict[str, str], org: Org
) -> None:
    """Two CMB requests of the tenant (C1 at C1_AT, a C3-like "not interested" at C3_AT)."""
    fs = await make_feature_set(
        db, org, "Fresh Flower Delivery", call_me_back=True, cmb_name="CMBName", slot_picker=True
    )
    await publish(client, runner, tenant.account_id, auth, fs, "910987654321")
    phone = await register_phone(client)
    at(C1_AT)
    first = await client.post(
        "/app/v1/call-me-back",
        json={
            "business_number": "910987654321",
            "is_interested": True,
            "preferred_from_time": 1754116200,
            "preferred_to_time": 1754118000,
        },
        headers=phone,
    )
    assert first.status_code == 201, first.text
    at(C3_AT)
    second = await client.post(
        "/app/v1/call-me-back",
        json={
            "business_number": "910987654321",
            "is_interested": False,
            "client_number_available": False,
            "alternate_number": "911234567898",
        },
        headers=phone,
    )
    assert second.status_code == 201, second.text


C1_ROW = [
    "910987654321", "Fresh Flower Delivery", "911234567890", "", "1753945760", "2025-08-02", "Saturday",
    "1754116200", "1754118000", "true", "CMBName",
]  # fmt: skip
C3_ROW = [
    "910987654321", "Fresh Flower Delivery", "Phone number not available", "911234567898", "1753945900", "NA", "NA",
    "", "", "false", "CMBName",
]  # fmt: skip


async def test_cmb_link_serves_the_csv_until_it_expires(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant, auth: dict[str, str], cmb_data: None
) -> None:
    at(C3_AT + 3600)
    url = await link(client, cmb_url(tenant.account_id), auth, **{"from": str(C1_AT * 1000), "to": str(C3_AT * 1000)})

    assert rows_of(await client.get(url)) == [CMB_HEADER, C1_ROW, C3_ROW]
    # Needs no token; works from another process of the deployment (state in the database).
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as elsewhere:
            assert rows_of(await elsewhere.get(url)) == [CMB_HEADER, C1_ROW, C3_ROW]

    clock.advance(599)
    assert rows_of(await client.get(url)) == [CMB_HEADER, C1_ROW, C3_ROW]
    clock.advance(1)  # 10 minutes after issue
    gone = await client.get(url)
    assert (gone.status_code, gone.json()) == (404, {"slug": "not-found", "message": "not found"})
    unknown = await client.get("/downloads/" + "x" * 43)
    assert (unknown.status_code, unknown.json()) == (404, {"slug": "not-found", "message": "not found"})


async def test_cmb_range_is_inclusive_and_per_account(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant, auth: dict[str, str], cmb_data: None
) -> None:
    async def rows(start: int, end: int) -> Any:
        response = await client.get(cmb_url(tenant.account_id), params={"from": start, "to": end}, headers=auth)
        if response.status_code != 200:
            return response.status_code, response.json()
        return rows_of(await client.get(response.json()["url"].removeprefix("http://testserver")))[1:]

    assert await rows(C1_AT * 1000, C1_AT * 1000) == [C1_ROW]
    assert await rows(C1_AT * 1000 + 1, C3_AT * 1000) == [C3_ROW]
    assert await rows(C3_AT * 1000, C3_AT * 1000) == [C3_ROW]
    assert await rows(0, C1_AT * 1000 - 1) == (404, NO_CMB)
    assert await rows(C3_AT * 1000 + 1, 9_999_999_999_999) == (404, NO_CMB)

    other = await create_tenant(db, settings, name="Other Co")
    other_auth = {"Authorization": f"Bearer {await mint(client, other)}"}
    response = await client.get(
        cmb_url(other.account_id), params={"from": 0, "to": 9_999_999_999_999}, headers=other_auth
    )
    assert (response.status_code, response.json()) == (404, NO_CMB)


async def test_the_file_holds_what_existed_when_the_link_was_issued(
    client: httpx.AsyncClient, db: Database, tenant: Tenant, auth: dict[str, str], cmb_data: None
) -> None:
    at(C3_AT)  # issue at the second request's time, with "to" far in the future
    url = await link(client, cmb_url(tenant.account_id), auth, **{"from": "0", "to": "9999999999999"})
    clock.advance(60)
    phone = await register_phone(client, "919999999999")
    later = await client.post(
        "/app/v1/call-me-back", json={"business_number": "910987654321", "is_interested": False}, headers=phone
    )
    assert later.status_code == 201
    assert rows_of(await client.get(url)) == [CMB_HEADER, C1_ROW, C3_ROW]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "from is required"),
        ({"to": "1"}, "from is required"),
        ({"from": "", "to": "1"}, "from is required"),
        ({"from": "1"}, "to is required"),
        ({"from": "abc", "to": "1"}, "from is invalid"),
        ({"from": "-1", "to": "1"}, "from is invalid"),
        ({"from": "1.5", "to": "2"}, "from is invalid"),
        ({"from": "2025-08-01", "to": "1"}, "from is invalid"),
        ({"from": "1", "to": "1e3"}, "to is invalid"),
        ({"from": "1", "to": "99999999999999999999"}, "to is invalid"),
        ({"from": "2000", "to": "1999"}, "to is invalid"),
        ({"from": "9" * 5000, "to": "1"}, "from is invalid"),
        ({"from": "1", "to": "253402300800000"}, "to is invalid"),
        ({"from": "\uff11\uff12", "to": "13"}, "from is invalid"),  # non-ASCII digits
    ],
)
async def test_cmb_parameters(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], params: dict[str, str], message: str
) -> None:
    response = await client.get(cmb_url(tenant.account_id), params=params, headers=auth)
    assert (response.status_code, response.json()) == (400, {"slug": "invalid-input", "message": message})


async def test_access_levels(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    forbidden = {"slug": "forbidden-error", "message": "not authorized. please contact your admin."}
    params = {"from": "0", "to": "1"}
    no_cmb = await create_tenant(db, settings, access={"call_me_back": "none", "user_feedback": "read"})
    headers = {"Authorization": f"Bearer {await mint(client, no_cmb)}"}
    response = await client.get(cmb_url(no_cmb.account_id), params=params, headers=headers)
    assert (response.status_code, response.json()) == (403, forbidden)
    survey = str(uuid.uuid4())
    allowed = await client.get(uf_url(no_cmb.account_id, survey), params={"from_date": "0"}, headers=headers)
    assert (allowed.status_code, allowed.json()) == (404, {"slug": "not-found", "message": "survey not found"})

    no_uf = await create_tenant(db, settings, access={"call_me_back": "read", "user_feedback": "none"})
    headers = {"Authorization": f"Bearer {await mint(client, no_uf)}"}
    response = await client.get(uf_url(no_uf.account_id, survey), params={"from_date": "0"}, headers=headers)
    assert (response.status_code, response.json()) == (403, forbidden)
    allowed = await client.get(cmb_url(no_uf.account_id), params=params, headers=headers)
    assert (allowed.status_code, allowed.json()) == (404, NO_CMB)
    missing = await client.get(cmb_url(no_uf.account_id), params=params)
    assert (missing.status_code, missing.json()) == (
        401,
        {"slug": "authorization-error", "message": "Missing authorization header"},
    )


# --- UF ---------------------------------------------------------------------------------------------------------

# 2025-07-31 23:30 IST (18:00Z) and 2025-08-01 00:30 IST (19:00Z): either side of midnight in the account timezone.
LATE_JULY = 1753984800
EARLY_AUGUST = 1753988400


@pytest.fixture
async def feedback(
    client: httpx.AsyncClient, db: Database, runner: JobRunner, tenant: Tenant, auth: dict[str, str], org: Org
) -> str:
    """A survey with two responses (one either side of midnight IST); returns the survey id."""
    fs = await make_feature_set(db, org, "Fresh Flower Delivery", survey=True)
    await publish(client, runner, tenant.account_id, auth, fs, "910987654321")
    survey_id = await make_survey(db, org, fs)
    phone = await register_phone(client)
    for when, answers in (
        (LATE_JULY, [("Flower Quality?", 'Good, "fresh"'), ("How was the delivery experience?", "5")]),
        (EARLY_AUGUST, [("Anything else?", "no")]),
    ):
        at(when)
        response = await client.post(
            f"/app/v1/surveys/{survey_id}/responses",
            json={"business_number": "910987654321", "answers": [{"question": q, "response": r} for q, r in answers]},
            headers=phone,
        )
        assert response.status_code == 201, response.text
    return survey_id


def uf_row(requested_at: int, question: str, response: str) -> list[str]:
    return [
        "Flower Quality Check",
        "910987654321",
        "Fresh Flower Delivery",
        "911234567890",
        str(requested_at),
        question,
        response,
    ]


JULY_ROWS = [
    uf_row(LATE_JULY, "How was the delivery experience?", "5"),
    uf_row(LATE_JULY, "Flower Quality?", 'Good, "fresh"'),
]
AUGUST_ROWS = [uf_row(EARLY_AUGUST, "Anything else?", "no")]


async def test_uf_link_serves_one_row_per_answer(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], feedback: str
) -> None:
    at(EARLY_AUGUST + 60)
    url = await link(client, uf_url(tenant.account_id, feedback), auth, from_date=str(LATE_JULY * 1000))
    response = await client.get(url)
    assert rows_of(response) == [UF_HEADER, *JULY_ROWS, *AUGUST_ROWS]
    assert 'Good, ""fresh""' in response.text  # RFC 4180 quoting
    clock.advance(600)
    assert (await client.get(url)).status_code == 404


async def test_uf_date_formats_and_ranges(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], feedback: str
) -> None:
    at(EARLY_AUGUST + 86400)

    async def rows(**params: str) -> Any:
        response = await client.get(uf_url(tenant.account_id, feedback), params=params, headers=auth)
        if response.status_code != 200:
            return response.status_code, response.json()
        return rows_of(await client.get(response.json()["url"].removeprefix("http://testserver")))[1:]

    # Days in the account timezone (Asia/Kolkata): 23:30 IST belongs to July 31, 00:30 IST to August 1.
    assert await rows(from_date="2025-07-31", to_date="2025-07-31") == JULY_ROWS
    assert await rows(from_date="2025-08-01", to_date="2025-08-01") == AUGUST_ROWS
    assert await rows(from_date="2025-08-01") == AUGUST_ROWS  # to_date defaults to now
    assert await rows(from_date="2025-07-31") == JULY_ROWS + AUGUST_ROWS
    assert await rows(from_date="2025-08-02") == (404, NO_FEEDBACK)
    assert await rows(from_date="2025-07-01", to_date="2025-07-30") == (404, NO_FEEDBACK)
    # Epoch milliseconds, inclusive; mixing both formats.
    assert await rows(from_date=str(LATE_JULY * 1000), to_date=str(LATE_JULY * 1000)) == JULY_ROWS
    assert await rows(from_date=str(LATE_JULY * 1000 + 1), to_date="2025-08-01") == AUGUST_ROWS


async def test_uf_in_another_timezone(
    client: httpx.AsyncClient, db: Database, runner: JobRunner, tenant: Tenant, auth: dict[str, str]
) -> None:
    org = await make_org(db, tenant.account_id, timezone="UTC")
    fs = await make_feature_set(db, org, "Fresh Flower Delivery", survey=True)
    await publish(client, runner, tenant.account_id, auth, fs, "910987654321")
    survey_id = await make_survey(db, org, fs)
    phone = await register_phone(client)
    at(LATE_JULY)  # 18:00Z on July 31: in UTC still July 31
    body = {"business_number": "910987654321", "answers": [{"question": "Anything else?", "response": "no"}]}
    assert (await client.post(f"/app/v1/surveys/{survey_id}/responses", json=body, headers=phone)).status_code == 201
    url = uf_url(tenant.account_id, survey_id)
    assert (
        await client.get(url, params={"from_date": "2025-07-31", "to_date": "2025-07-31"}, headers=auth)
    ).status_code == 200
    late = await client.get(url, params={"from_date": "2025-08-01", "to_date": "2025-08-01"}, headers=auth)
    assert (late.status_code, late.json()) == (404, NO_FEEDBACK)


@pytest.mark.parametrize(
    ("survey", "params", "status", "body"),
    [
        ("not-a-uuid", {"from_date": "0"}, 400, {"slug": "invalid-input", "message": "surveyId is invalid"}),
        (None, {}, 400, {"slug": "invalid-input", "message": "from_date is required"}),
        (None, {"from_date": ""}, 400, {"slug": "invalid-input", "message": "from_date is required"}),
        (None, {"from_date": "yesterday"}, 400, {"slug": "invalid-input", "message": "from_date is invalid"}),
        (None, {"from_date": "2025-13-01"}, 400, {"slug": "invalid-input", "message": "from_date is invalid"}),
        (None, {"from_date": "2025-02-30"}, 400, {"slug": "invalid-input", "message": "from_date is invalid"}),
        (None, {"from_date": "25-07-31"}, 400, {"slug": "invalid-input", "message": "from_date is invalid"}),
        (
            None,
            {"from_date": "0", "to_date": "31/07/2025"},
            400,
            {"slug": "invalid-input", "message": "to_date is invalid"},
        ),
        (
            None,
            {"from_date": "2025-08-01", "to_date": "2025-07-31"},
            400,
            {"slug": "invalid-input", "message": "to_date is invalid"},
        ),
        (
            None,
            {"from_date": "2000", "to_date": "1999"},
            400,
            {"slug": "invalid-input", "message": "to_date is invalid"},
        ),
        (None, {"from_date": "0001-01-01"}, 400, {"slug": "invalid-input", "message": "from_date is invalid"}),
        (
            None,
            {"from_date": "0", "to_date": "9999-12-31"},
            400,
            {"slug": "invalid-input", "message": "to_date is invalid"},
        ),
        (None, {"from_date": "9" * 5000}, 400, {"slug": "invalid-input", "message": "from_date is invalid"}),
        ("unknown", {"from_date": "0"}, 404, {"slug": "not-found", "message": "survey not found"}),
        ("foreign", {"from_date": "0"}, 404, {"slug": "not-found", "message": "survey not found"}),
        (None, {"from_date": "0", "to_date": "1"}, 404, NO_FEEDBACK),
    ],
)
async def test_uf_parameters_and_surveys(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    tenant: Tenant,
    auth: dict[str, str],
    feedback: str,
    survey: str | None,
    params: dict[str, str],
    status: int,
    body: Any,
) -> None:
    if survey == "unknown":
        survey = str(uuid.uuid4())
    elif survey == "foreign":
        other = await create_tenant(db, settings, name="Other Co")
        other_org = await make_org(db, other.account_id)
        survey = await make_survey(db, other_org, await make_feature_set(db, other_org, "Theirs", survey=True))
    response = await client.get(uf_url(tenant.account_id, survey or feedback), params=params, headers=auth)
    assert (response.status_code, response.json()) == (status, body)
