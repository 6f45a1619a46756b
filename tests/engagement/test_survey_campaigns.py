"""Survey campaigns (SPEC §10.5): types (Call Rating, Questions), question kinds (rating, choice, text), live and
paused; the service's rules, what phones are shown and which answers they may send, the CLI, and migration 0018
(surveys stored before it keep working, and it goes back)."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from callerid.app import create_app
from callerid.config import Settings
from callerid.db import Database
from callerid.db.base import UtcDateTime
from callerid.db.migrate import alembic_config, upgrade
from callerid.engagement import service as engagement
from callerid.engagement.models import Survey, SurveyResponse
from callerid.engagement.questions import Question, check_answer, check_questions
from callerid.engagement.schemas import FEEDBACK_CSV_COLUMNS
from callerid.failures import InvalidInput, NotFound
from callerid.jobs.runner import JobRunner
from tests.conftest import Tenant, create_tenant, fresh_postgresql_database, make_settings, mint
from tests.engagement.conftest import (
    Org,
    body_of,
    events,
    make_feature_set,
    make_org,
    publish,
    register_phone,
    stored_responses,
    subscribe,
)
from tests.migrations import upgrade_all_but
from tests.numbers.test_cli import Cli, logo

NUMBER = "910987654321"
RATING = Question("How was the delivery?", "rating")
CHOICE = Question("Flower quality?", "choice", ("Good", "Fine", "Poor"))
TEXT = Question("Anything else?")


async def make_campaign(db: Database, org: Org, feature_set_id: uuid.UUID, **values: Any) -> Survey:
    values = {"name": "Flower Quality Check", "questions": [RATING, CHOICE, TEXT], **values}
    async with db.transaction() as session:
        return await engagement.create_survey(
            session, account_id=org.account_id, feature_set_id=feature_set_id, **values
        )


@pytest.fixture
async def listed(
    client: httpx.AsyncClient, db: Database, runner: JobRunner, tenant: Tenant, auth: dict[str, str], org: Org
) -> uuid.UUID:
    """A feature set with surveys on, NUMBER listed in it, and no survey yet."""
    fs = await make_feature_set(db, org, "Fresh Flower Delivery", survey=True)
    await publish(client, runner, tenant.account_id, auth, fs, NUMBER)
    return fs


# --- the rules -----------------------------------------------------------------------------------------------


def test_question_rules_name_the_field() -> None:
    refusals: list[tuple[list[Any], str, str, str]] = [
        ([], "questions", "questions", "a survey needs 1-50 questions"),
        ([RATING, Question("Q?", "stars")], "questions", "questions[1].kind", "question 2 kind must be one of"),
        ([Question("Q?", "choice", ("Yes",))], "questions", "questions[0].choices", "question 1 needs 2-10 choices"),
        ([Question("Q?", "choice", ("Yes", " yes "))], "questions", "questions[0].choices", "must be different"),
        ([Question("Q?", "choice", ("Yes", ""))], "questions", "questions[0].choices", "must be 1-100 characters"),
        ([Question("Q?", "choice", ("Yes", "No\u202e"))], "questions", "questions[0].choices", "cannot be displayed"),
        ([Question("Q?", "text", ("Yes", "No"))], "questions", "questions[0].choices", "has no choices"),
        ([RATING, Question(" How was the delivery? ")], "questions", "questions[1].text", "must be different"),
        (["Q?", "R?"], "call_rating", "questions", "a Call Rating survey has exactly one question"),
        ([TEXT], "call_rating", "questions[0].kind", "the question of a Call Rating survey is a rating"),
    ]
    for questions, survey_type, field, message in refusals:
        with pytest.raises(engagement.EngagementError, match=message) as refused:
            check_questions(questions, survey_type)
        assert refused.value.field == field, (questions, refused.value.field)
    assert check_questions([], "call_rating") == [Question(engagement.DEFAULT_RATING_QUESTION, "rating")]
    assert check_questions([" Rate us? "], "call_rating") == [Question("Rate us?", "rating")]
    assert check_questions(["Q?", Question("C?", "choice", (" A ", "B"))], "questions") == [
        Question("Q?"),
        Question("C?", "choice", ("A", "B")),
    ]


def test_answers_by_kind() -> None:
    assert [check_answer(RATING, value, "r") for value in ("1", " 5 ")] == ["1", "5"]
    for bad in ("0", "6", "4.5", "05", "five", "٣"):
        with pytest.raises(InvalidInput, match="r must be a rating from 1 to 5"):
            check_answer(RATING, bad, "r")
    assert check_answer(CHOICE, " Fine ", "c") == "Fine"
    with pytest.raises(InvalidInput, match="c must be one of the choices of its question"):
        check_answer(CHOICE, "fine", "c")
    assert check_answer(TEXT, " as typed ", "t") == " as typed "


def test_the_cli_question_syntax() -> None:
    parse = engagement.parse_question_spec
    assert parse("How was it?") == Question("How was it?")
    assert parse("rating:How was it?") == Question("How was it?", "rating")
    assert parse("Choice:Quality?|Good|Poor") == Question("Quality?", "choice", ("Good", "Poor"))
    assert parse("text:Note: anything?") == Question("Note: anything?")
    assert parse("Note: anything?") == Question("Note: anything?")  # not a kind: all of it is the text


async def test_create_update_status_and_search(db: Database, org: Org) -> None:
    rated_fs = await make_feature_set(db, org, "Rated", survey=True)
    asked_fs = await make_feature_set(db, org, "Asked", survey=True)
    rated = await make_campaign(db, org, rated_fs, name="Rating", questions=[], survey_type="call_rating")
    assert (rated.survey_type, rated.status, rated.questions) == (
        "call_rating",
        "live",
        [{"text": engagement.DEFAULT_RATING_QUESTION, "kind": "rating"}],
    )
    asked = await make_campaign(db, org, asked_fs, status="paused")
    assert asked.questions[1] == {"text": "Flower quality?", "kind": "choice", "choices": ["Good", "Fine", "Poor"]}
    for values, field in (({"survey_type": "poll"}, "type"), ({"status": "draft"}, "status"), ({"name": ""}, "name")):
        spare = await make_feature_set(db, org, f"Spare {field}", survey=True)
        with pytest.raises(engagement.EngagementError) as refused:
            await make_campaign(db, org, spare, **values)
        assert refused.value.field == field

    async with db.transaction() as session:
        changed = await engagement.update_survey(
            session, account_id=org.account_id, survey_id=rated.id, name="Rate us", trigger="missed",
            questions=["How did we do?"],
        )  # fmt: skip
        assert (changed.survey_type, changed.questions) == (
            "call_rating",
            [{"text": "How did we do?", "kind": "rating"}],
        )
        with pytest.raises(engagement.EngagementError, match="exactly one question"):
            await engagement.update_survey(
                session, account_id=org.account_id, survey_id=rated.id, name="X", trigger="any", questions=["A", "B"]
            )
        with pytest.raises(NotFound, match="survey not found"):
            await engagement.set_survey_status(session, account_id=uuid.uuid4(), survey_id=rated.id, status="paused")
        await engagement.set_survey_status(session, account_id=org.account_id, survey_id=rated.id, status="paused")

    async with db.session() as session:
        everything, total = await engagement.search_surveys(session, org.account_id, engagement.SurveyFilter())
        assert total == 2 and [row.survey.id for row in everything] == [asked.id, rated.id]
        assert [row.feature_set_name for row in everything] == ["Asked", "Rated"]
        found, total = await engagement.search_surveys(
            session, org.account_id, engagement.SurveyFilter(text="RATE", survey_type="call_rating", status="paused")
        )
        assert (total, [row.survey.name for row in found]) == (1, ["Rate us"])
        found, total = await engagement.search_surveys(session, org.account_id, engagement.SurveyFilter(text="50%_"))
        assert (found, total) == ([], 0)
        waiting = await engagement.feature_sets_awaiting_survey(session, org.account_id)
        assert [name for _, name in waiting] == ["Spare name", "Spare status", "Spare type"]


# --- phones ----------------------------------------------------------------------------------------------------


async def test_phones_see_the_kinds_and_answer_ratings_and_choices(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    tenant: Tenant,
    org: Org,
    listed: uuid.UUID,
) -> None:
    survey = await make_campaign(db, org, listed, trigger="answered")
    await subscribe(db, settings, tenant.account_id, "https://hooks.example.com/uf", events="user_feedback")
    phone = await register_phone(client)
    shown = await client.get("/app/v1/surveys", params={"business_number": NUMBER}, headers=phone)
    assert shown.status_code == 200
    assert shown.json() == {
        "id": str(survey.id),
        "name": "Flower Quality Check",
        "trigger": "answered",
        "questions": ["How was the delivery?", "Flower quality?", "Anything else?"],  # what older apps read
        "type": "questions",
        "question_details": [
            {"question": "How was the delivery?", "kind": "rating", "min": 1, "max": 5},
            {"question": "Flower quality?", "kind": "choice", "choices": ["Good", "Fine", "Poor"]},
            {"question": "Anything else?", "kind": "text"},
        ],
    }

    async def answer(*pairs: tuple[str, str]) -> httpx.Response:
        body = {"business_number": NUMBER, "answers": [{"question": q, "response": r} for q, r in pairs]}
        return await client.post(f"/app/v1/surveys/{survey.id}/responses", json=body, headers=phone)

    refusals = [
        (answer(("How was the delivery?", "6")), "answers[0].response must be a rating from 1 to 5"),
        (answer(("Anything else?", "x"), ("How was the delivery?", "good")), "answers[1].response must be a rating"),
        (answer(("Flower quality?", "Excellent")), "answers[0].response must be one of the choices of its question"),
    ]
    for pending, message in refusals:
        response = await pending
        assert response.status_code == 400
        assert response.json()["slug"] == "invalid-input" and response.json()["message"].startswith(message)
    assert await stored_responses(db) == [] and await events(db) == []

    taken = await answer(("Anything else?", "Lovely"), ("Flower quality?", " Good "), ("How was the delivery?", "4"))
    assert taken.status_code == 201, taken.text
    (event,) = await events(db)
    assert body_of(event)["survey_payload"]["user_responses"] == [
        {"question": "How was the delivery?", "response": "4"},
        {"question": "Flower quality?", "response": "Good"},
        {"question": "Anything else?", "response": "Lovely"},
    ]


async def test_a_paused_survey_is_not_shown_and_takes_no_answers(
    client: httpx.AsyncClient, db: Database, org: Org, listed: uuid.UUID
) -> None:
    survey = await make_campaign(db, org, listed, status="paused")
    phone = await register_phone(client)
    shown = await client.get("/app/v1/surveys", params={"business_number": NUMBER}, headers=phone)
    assert (shown.status_code, shown.json()) == (404, {"slug": "not-found", "message": "business_number has no survey"})
    body = {"business_number": NUMBER, "answers": [{"question": "Anything else?", "response": "No"}]}
    refused = await client.post(f"/app/v1/surveys/{survey.id}/responses", json=body, headers=phone)
    assert (refused.status_code, refused.json()) == (
        409,
        {"slug": "conflict", "message": "survey is paused and takes no answers"},
    )
    assert await stored_responses(db) == []
    async with db.transaction() as session:
        await engagement.set_survey_status(session, account_id=org.account_id, survey_id=survey.id, status="live")
    assert (await client.get("/app/v1/surveys", params={"business_number": NUMBER}, headers=phone)).status_code == 200
    taken = await client.post(f"/app/v1/surveys/{survey.id}/responses", json=body, headers=phone)
    assert taken.status_code == 201


@pytest.mark.slow
def test_the_cli_creates_typed_surveys_and_sets_their_status(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    account = cli.json("accounts", "create", "--name", "Acme", "--admin-email", "boss@acme.test")["client_account_id"]
    department = cli.json("departments", "create", "--account", account, "--name", "Flowers")["id"]
    operation = cli.json(
        "operations", "create", "--account", account, "--department", department, "--name", "Deliveries",
        "--calling-operation", "Delivery",
    )["id"]  # fmt: skip
    process = cli.json("processes", "create", "--account", account, "--operation", operation, "--name", "Door")["id"]
    label = cli.json(
        "labels", "create", "--account", account, "--name", "Acme Flowers", "--logo", str(logo(tmp_path)),
        "--type", "static",
    )  # fmt: skip
    label_id = label.get("id") or label["label_id"]

    def feature_set(name: str) -> str:
        return str(
            cli.json(
                "feature-sets", "create", "--account", account, "--process", process, "--name", name,
                "--label", label_id, "--survey",
            )["id"]
        )  # fmt: skip

    rated = cli.json(
        "surveys", "create", "--account", account, "--feature-set", feature_set("Rated"), "--name", "Rate us",
        "--type", "call-rating", "--status", "paused",
    )  # fmt: skip
    assert (rated["type"], rated["status"], rated["questions"]) == (
        "call_rating",
        "paused",
        [engagement.DEFAULT_RATING_QUESTION],
    )
    asked = cli.json(
        "surveys", "create", "--account", account, "--feature-set", feature_set("Asked"), "--name", "Check",
        "--question", "rating:How was it?", "--question", "choice:Quality?|Good|Poor", "--question", "Else?",
    )  # fmt: skip
    assert [q["kind"] for q in asked["question_details"]] == ["rating", "choice", "text"]
    live = cli.json("surveys", "set-status", "--account", account, "--survey", rated["id"], "--status", "live")
    assert live["status"] == "live"
    assert "question 1 needs 2-10 choices" in cli.fails(
        "surveys", "create", "--account", account, "--feature-set", feature_set("Bad"), "--name", "S",
        "--question", "choice:Quality?|Good",
    )  # fmt: skip
    assert "survey not found" in cli.fails(
        "surveys", "set-status", "--account", account, "--survey", str(uuid.uuid4()), "--status", "live"
    )


# --- migration 0018 ----------------------------------------------------------------------------------------------

REVISION, BEFORE = "0018_survey_campaigns", "0015_label_logos"
OLD_SURVEYS = sa.table(
    "surveys",
    *(sa.column(name, sa.Uuid()) for name in ("id", "account_id", "feature_set_id")),
    sa.column("name", sa.String()),
    sa.column("trigger", sa.String()),
    sa.column("questions", sa.JSON()),
    sa.column("created_at", UtcDateTime()),
)
OLD_QUESTIONS = ["How was the delivery experience?", "Flower Quality?"]
CREATED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url_before_0018(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own with every branch at its newest revision but the surveys before 0018."""

    def upgrade_but_0018(url: str) -> None:
        upgrade_all_but(url, REVISION, BEFORE)

    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'before.db'}"
        upgrade_but_0018(url)
        yield url
        return
    with fresh_postgresql_database("callerid_surveys") as url:
        upgrade_but_0018(url)
        yield url


async def store_old_survey(url: str, tmp_path: Path) -> tuple[Tenant, uuid.UUID, uuid.UUID]:
    """An account with a feature set (surveys on), its survey as stored before 0018, and one answer to it."""
    db = Database(url, null_pool=True)
    try:
        tenant = await create_tenant(db, make_settings(url, tmp_path / "data"))
        org = await make_org(db, tenant.account_id)
        fs = await make_feature_set(db, org, "Fresh Flower Delivery", survey=True)
        survey_id = uuid.uuid4()
        async with db.transaction() as session:
            await session.execute(
                sa.insert(OLD_SURVEYS).values(
                    id=survey_id, account_id=tenant.account_id, feature_set_id=fs, name="Flower Quality Check",
                    trigger="any", questions=OLD_QUESTIONS, created_at=CREATED,
                )
            )  # fmt: skip
            session.add(
                SurveyResponse(
                    id=uuid.uuid4(), account_id=tenant.account_id, survey_id=survey_id,
                    survey_name="Flower Quality Check", business_number=NUMBER,
                    feature_set_name="Fresh Flower Delivery",
                    client_number="911234567890", requested_at=CREATED,
                    answers=[{"question": "Flower Quality?", "response": "Good"}],
                )
            )  # fmt: skip
    finally:
        await db.dispose()
    return tenant, fs, survey_id


async def test_surveys_stored_before_0018_keep_working(url_before_0018: str, tmp_path: Path) -> None:
    tenant, fs, survey_id = await store_old_survey(url_before_0018, tmp_path)
    await asyncio.to_thread(upgrade, url_before_0018)

    app = create_app(make_settings(url_before_0018, tmp_path / "data", number_job_delay_seconds=0))
    async with app.router.lifespan_context(app):
        async with app.state.runtime.db.session() as session:
            survey = await session.get(Survey, survey_id)
        assert survey is not None
        assert (survey.survey_type, survey.status, survey.updated_at) == ("questions", "live", CREATED)
        assert survey.questions == [{"text": text, "kind": "text"} for text in OLD_QUESTIONS]

        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            auth = {"Authorization": f"Bearer {await mint(client, tenant)}"}
            await publish(client, JobRunner(app.state.runtime), tenant.account_id, auth, fs, NUMBER)
            phone = await register_phone(client)
            shown = await client.get("/app/v1/surveys", params={"business_number": NUMBER}, headers=phone)
            assert shown.status_code == 200 and shown.json()["questions"] == OLD_QUESTIONS
            assert [q["kind"] for q in shown.json()["question_details"]] == ["text", "text"]
            body = {"business_number": NUMBER, "answers": [{"question": OLD_QUESTIONS[0], "response": "5 stars"}]}
            taken = await client.post(f"/app/v1/surveys/{survey_id}/responses", json=body, headers=phone)
            assert taken.status_code == 201, taken.text

            # UF: the answer stored before and the one after, in the same columns as ever.
            path = f"/clients/{tenant.account_id}/openapi/feedback_stack/{survey_id}/export_report"
            issued = await client.get(path, params={"from_date": "2026-01-01"}, headers=auth)
            assert issued.status_code == 200, issued.text
            download = await client.get(issued.json()["url"].removeprefix("http://testserver"))
            rows = list(csv.reader(io.StringIO(download.text)))
    assert tuple(rows[0]) == FEEDBACK_CSV_COLUMNS
    assert [row[-2:] for row in rows[1:]] == [["Flower Quality?", "Good"], [OLD_QUESTIONS[0], "5 stars"]]


async def test_the_migration_goes_back(url_before_0018: str, tmp_path: Path) -> None:
    _tenant, _fs, survey_id = await store_old_survey(url_before_0018, tmp_path)
    await asyncio.to_thread(upgrade, url_before_0018)
    db = Database(url_before_0018, null_pool=True)
    try:
        async with db.transaction() as session:
            survey = await session.get(Survey, survey_id)
            assert survey is not None
            survey.questions = [RATING.stored(), CHOICE.stored()]
            survey.status = "paused"
    finally:
        await db.dispose()
    await asyncio.to_thread(command.downgrade, alembic_config(url_before_0018), BEFORE)
    db = Database(url_before_0018, null_pool=True)
    try:
        async with db.session() as session:
            row = (await session.execute(sa.select(OLD_SURVEYS).where(OLD_SURVEYS.c.id == survey_id))).one()
            columns = await session.run_sync(
                lambda sync: [c["name"] for c in sa.inspect(sync.connection()).get_columns("surveys")]
            )
    finally:
        await db.dispose()
    assert row.questions == [RATING.text, CHOICE.text]
    assert "status" not in columns and "survey_type" not in columns and "updated_at" not in columns
    await asyncio.to_thread(upgrade, url_before_0018)  # and forward again
