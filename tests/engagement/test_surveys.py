"""Surveys: creation rules, the phone fetching one and answering it (``user_feedback`` events), refusals."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from callerid.config import Settings
from callerid.db import Database
from callerid.engagement import service as engagement
from callerid.jobs.runner import JobRunner
from tests.conftest import Tenant, create_tenant
from tests.engagement.conftest import (
    Org,
    at,
    body_of,
    events,
    make_feature_set,
    make_org,
    publish,
    stored_responses,
    subscribe,
)
from tests.webhooks.receiver import Receiver

QUESTIONS = ["How was the delivery experience?", "Flower Quality?", "Anything else?"]


async def make_survey(db: Database, org: Org, feature_set_id: uuid.UUID, name: str = "Flower Quality Check") -> str:
    async with db.transaction() as session:
        survey = await engagement.create_survey(
            session, account_id=org.account_id, feature_set_id=feature_set_id, name=name, questions=QUESTIONS
        )
    return str(survey.id)


@pytest.fixture
async def survey_id(
    client: httpx.AsyncClient, db: Database, runner: JobRunner, tenant: Tenant, auth: dict[str, str], org: Org
) -> str:
    """910987654321 listed in "Fresh Flower Delivery" (surveys on) with a survey."""
    fs = await make_feature_set(db, org, "Fresh Flower Delivery", survey=True)
    await publish(client, runner, tenant.account_id, auth, fs, "910987654321")
    return await make_survey(db, org, fs)


async def test_phone_fetches_and_answers_the_survey(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    phone: dict[str, str],
    survey_id: str,
    receiver: Receiver,
) -> None:
    await subscribe(db, settings, tenant.account_id, receiver.url, events="user_feedback")
    await subscribe(db, settings, tenant.account_id, "https://hooks.example.com/cmb", name="Only CMB", events="cmb")
    fetched = await client.get("/app/v1/surveys", params={"business_number": "+910987654321"}, headers=phone)
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == {
        "id": survey_id,
        "name": "Flower Quality Check",
        "trigger": "any",
        "questions": QUESTIONS,
        "type": "questions",
        "question_details": [{"question": question, "kind": "text"} for question in QUESTIONS],
    }
    at(1753946877)

    # Answered out of order and one question skipped: the payload follows the survey's order.
    response = await client.post(
        f"/app/v1/surveys/{survey_id.upper()}/responses",
        json={
            "business_number": "+910987654321",
            "answers": [
                {"question": "Flower Quality?", "response": "Good"},
                {"question": "How was the delivery experience?", "response": "5"},
            ],
        },
        headers=phone,
    )

    assert response.status_code == 201, response.text
    (stored,) = await stored_responses(db)
    assert response.json() == {"id": str(stored.id)}
    (event,) = await events(db)
    expected = {
        "event_id": str(event.id),
        "client_account_id": str(tenant.account_id),
        "event_type": "user_feedback",
        "created_at": "1753946877",
        "survey_payload": {
            "name": "Flower Quality Check",
            "business_number": "910987654321",
            "feature_set": "Fresh Flower Delivery",
            "client_number": "911234567890",
            "requested_at": "1753946877",
            "user_responses": [
                {"question": "How was the delivery experience?", "response": "5"},
                {"question": "Flower Quality?", "response": "Good"},
            ],
        },
    }
    assert body_of(event) == expected
    assert list(body_of(event)) == list(expected)
    assert list(body_of(event)["survey_payload"]) == list(expected["survey_payload"])
    await runner.run_until_idle()
    (received,) = receiver.requests
    assert received.body == event.body.encode()


async def test_answers_kept_without_a_subscribed_webhook(
    client: httpx.AsyncClient, db: Database, phone: dict[str, str], survey_id: str
) -> None:
    response = await client.post(
        f"/app/v1/surveys/{survey_id}/responses",
        json={"business_number": "910987654321", "answers": [{"question": "Anything else?", "response": "No"}]},
        headers=phone,
    )
    assert response.status_code == 201, response.text
    assert await events(db) == []
    (stored,) = await stored_responses(db)
    assert stored.answers == [{"question": "Anything else?", "response": "No"}]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"answers": [{"question": "Flower Quality?", "response": "Good"}]}, "business_number is required"),
        (
            {"business_number": "12", "answers": [{"question": "Flower Quality?", "response": "Good"}]},
            "business_number is invalid",
        ),
        ({"business_number": "910987654321"}, "answers is required"),
        ({"business_number": "910987654321", "answers": []}, "answers is required"),
        ({"business_number": "910987654321", "answers": {"q": "a"}}, "answers is invalid"),
        ({"business_number": "910987654321", "answers": ["Good"]}, "answers[0] is invalid"),
        ({"business_number": "910987654321", "answers": [{"response": "Good"}]}, "answers[0].question is invalid"),
        (
            {"business_number": "910987654321", "answers": [{"question": "Flower Quality?", "response": 5}]},
            "answers[0].response is invalid",
        ),
        (
            {"business_number": "910987654321", "answers": [{"question": "Flower Quality?", "response": " "}]},
            "answers[0].response is invalid",
        ),
        (
            {
                "business_number": "910987654321",
                "answers": [
                    {"question": "Flower Quality?", "response": "Good"},
                    {"question": "Price?", "response": "Fine"},
                ],
            },
            "answers[1].question is not a question of this survey",
        ),
        (
            {
                "business_number": "910987654321",
                "answers": [
                    {"question": "Flower Quality?", "response": "Good"},
                    {"question": "Flower Quality?", "response": "Bad"},
                ],
            },
            "answers[1].question is answered twice",
        ),
    ],
)
async def test_bad_answers_are_refused_naming_the_field(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    tenant: Tenant,
    phone: dict[str, str],
    survey_id: str,
    body: Any,
    message: str,
) -> None:
    await subscribe(db, settings, tenant.account_id, "https://hooks.example.com/uf", events="user_feedback")
    response = await client.post(f"/app/v1/surveys/{survey_id}/responses", json=body, headers=phone)
    assert (response.status_code, response.json()) == (400, {"slug": "invalid-input", "message": message})
    assert await stored_responses(db) == [] and await events(db) == []


async def test_surveys_that_do_not_fit(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    org: Org,
    phone: dict[str, str],
    survey_id: str,
) -> None:
    no_survey_yet = await make_feature_set(db, org, "Surveys on, none made", survey=True)
    surveys_off = await make_feature_set(db, org, "Surveys off", call_me_back=True)
    other_with_survey = await make_feature_set(db, org, "Other survey", survey=True)
    await make_survey(db, org, other_with_survey, name="Other")
    await publish(client, runner, tenant.account_id, auth, no_survey_yet, "910000000001")
    await publish(client, runner, tenant.account_id, auth, surveys_off, "910000000002")
    await publish(client, runner, tenant.account_id, auth, other_with_survey, "910000000003")

    async def fetch(**params: str) -> httpx.Response:
        return await client.get("/app/v1/surveys", params=params, headers=phone)

    async def answer(survey: str, number: str) -> httpx.Response:
        body = {"business_number": number, "answers": [{"question": "Flower Quality?", "response": "Good"}]}
        return await client.post(f"/app/v1/surveys/{survey}/responses", json=body, headers=phone)

    cases = [
        (await fetch(), 400, {"slug": "invalid-input", "message": "business_number is required"}),
        (await fetch(business_number="abc"), 400, {"slug": "invalid-input", "message": "business_number is invalid"}),
        (
            await fetch(business_number="919999999999"),
            404,
            {"slug": "not-found", "message": "business_number is not a listed number"},
        ),
        (
            await fetch(business_number="910000000001"),
            404,
            {"slug": "not-found", "message": "business_number has no survey"},
        ),
        (
            await fetch(business_number="910000000002"),
            409,
            {"slug": "conflict", "message": "surveys are not enabled for business_number"},
        ),
        (await answer("nope", "910987654321"), 400, {"slug": "invalid-input", "message": "survey_id is invalid"}),
        (await answer(str(uuid.uuid4()), "910987654321"), 404, {"slug": "not-found", "message": "survey not found"}),
        (
            await answer(survey_id, "919999999999"),
            404,
            {"slug": "not-found", "message": "business_number is not a listed number"},
        ),
        (
            await answer(survey_id, "910000000002"),
            409,
            {"slug": "conflict", "message": "surveys are not enabled for business_number"},
        ),
        (
            await answer(survey_id, "910000000003"),
            409,
            {"slug": "conflict", "message": "survey is not the survey of business_number"},
        ),
    ]
    for response, status, body in cases:
        assert (response.status_code, response.json()) == (status, body)
    missing_token = await client.get("/app/v1/surveys", params={"business_number": "910987654321"})
    assert missing_token.status_code == 401
    assert await stored_responses(db) == []


async def test_survey_of_another_account_cannot_be_answered_for_this_number(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    phone: dict[str, str],
    survey_id: str,
) -> None:
    other = await create_tenant(db, settings, name="Other Co")
    other_org = await make_org(db, other.account_id)
    other_fs = await make_feature_set(db, other_org, "Theirs", survey=True)
    their_survey = await make_survey(db, other_org, other_fs)
    body = {"business_number": "910987654321", "answers": [{"question": "Flower Quality?", "response": "Good"}]}
    response = await client.post(f"/app/v1/surveys/{their_survey}/responses", json=body, headers=phone)
    assert (response.status_code, response.json()) == (
        409,
        {"slug": "conflict", "message": "survey is not the survey of business_number"},
    )


async def test_survey_creation_rules(db: Database, org: Org) -> None:
    enabled = await make_feature_set(db, org, "Enabled", survey=True)
    disabled = await make_feature_set(db, org, "Disabled")

    async def create(feature_set_id: uuid.UUID, **overrides: Any) -> Any:
        values: dict[str, Any] = {"name": "Check", "questions": ["Q1?", "Q2?"], **overrides}
        async with db.transaction() as session:
            return await engagement.create_survey(
                session, account_id=org.account_id, feature_set_id=feature_set_id, **values
            )

    refusals = [
        (disabled, {}, "surveys are not enabled on feature set"),
        (uuid.uuid4(), {}, "not found in this account"),
        (enabled, {"name": " "}, "survey name must be 1-100 characters"),
        (enabled, {"questions": []}, "a survey needs 1-50 questions"),
        (enabled, {"questions": ["Q1?", " Q1? "]}, "questions must be different from each other"),
        (enabled, {"questions": ["x" * 501]}, "questions must be 1-500 characters"),
        (enabled, {"trigger": "sometimes"}, "trigger must be one of answered, missed, any"),
    ]
    for feature_set_id, overrides, message in refusals:
        with pytest.raises(engagement.EngagementError, match=message):
            await create(feature_set_id, **overrides)
    survey = await create(enabled, name=" Check ", questions=[" Q1? ", "Q2?"], trigger="missed")
    questions = [{"text": "Q1?", "kind": "text"}, {"text": "Q2?", "kind": "text"}]
    assert (survey.name, survey.questions, survey.trigger) == ("Check", questions, "missed")
    with pytest.raises(engagement.EngagementError, match=f"already has survey {survey.id}"):
        await create(enabled)
