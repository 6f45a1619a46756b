"""Surveys through the console: choose a type, build the questions (add, move up/down, remove: without JavaScript
and with htmx), create, make live and pause, edit; errors next to their field with what was typed kept; the list
with its filters and CSV; the "create survey" picker; and owners limited to their part of the tree."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from callerid.db import Database
from callerid.engagement import service as engagement
from callerid.engagement.models import Survey
from callerid.numbers import service as numbers
from callerid.numbers.models import FeatureSet
from tests.console.conftest import World, browser, build_world, csrf_of, page_csrf, sign_in

SURVEY_LINK = re.compile(r'href="/console/feature-sets/([0-9a-f-]{36})/survey"')


@pytest.fixture
async def world(db: Database, settings: Any) -> World:
    return await build_world(db, settings, "Acme Flowers")


@pytest.fixture
async def admin(app: Any, world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as http:
        await sign_in(http, world.people["admin"].email, world.people["admin"].password)
        yield http


async def feature_set(db: Database, world: World, name: str, *, node: str = "returns", survey: bool = True) -> str:
    """A feature set with surveys on (unless ``survey=False``) under a process of the world (default: Returns)."""
    async with db.transaction() as session:
        label_id = await session.scalar(select(FeatureSet.label_id).where(FeatureSet.account_id == world.account_id))
        assert label_id is not None
        process = world.nodes[node]
        if node not in ("returns", "refunds"):  # a department: give it an operation and a process of its own
            operation, _ = await numbers.create_operation(
                session, account_id=world.account_id, department_id=process, name=f"Ops {name}",
                calling_operation_name="Delivery",
            )  # fmt: skip
            process = (
                await numbers.create_process(session, account_id=world.account_id, operation_id=operation.id, name=name)
            ).id
        created = await numbers.create_feature_set(
            session, account_id=world.account_id, process_id=process, label_id=label_id, name=name, survey=survey
        )
    return str(created.id)


async def stored(db: Database, feature_set_id: str) -> Survey | None:
    async with db.session() as session:
        return await session.scalar(select(Survey).where(Survey.feature_set_id == uuid.UUID(feature_set_id)))


def questions_form(*questions: tuple[str, str, str]) -> dict[str, str]:
    data: dict[str, str] = {}
    for index, (text, kind, choices) in enumerate(questions):
        data |= {f"q-{index}-text": text, f"q-{index}-kind": kind, f"q-{index}-choices": choices}
    return data


def texts_in_order(page: str) -> list[str]:
    return re.findall(r'id="q-\d+-text" name="q-\d+-text" type="text" value="([^"]*)"', page)


def error_of(page: str, field: str) -> str | None:
    found = re.search(rf'<p class="error" id="{re.escape(field)}-error">([^<]*)</p>', page)
    return found.group(1) if found else None


async def test_a_questions_survey_is_built_created_made_live_paused_and_edited(
    admin: httpx.AsyncClient, db: Database, world: World
) -> None:
    fs = await feature_set(db, world, "Flower line")
    url = f"/console/feature-sets/{fs}/survey"
    chooser = await admin.get(url)
    assert chooser.status_code == 200
    assert f'href="{url}?type=call_rating"' in chooser.text and f'href="{url}?type=questions"' in chooser.text
    form = await admin.get(f"{url}?type=questions")
    assert form.status_code == 200 and 'id="survey-form"' in form.text
    csrf = csrf_of(form.text)
    base = {"csrf_token": csrf, "type": "questions", "name": "Flower Quality Check", "trigger": "answered"}

    # Add question: the page again, with what was typed and a new empty question; nothing stored.
    typed = questions_form(("How was the delivery?", "rating", ""))
    added = await admin.post(url, data={**base, **typed, "action": "add"})
    assert added.status_code == 200
    assert texts_in_order(added.text) == ["How was the delivery?", ""]
    assert "Question 2 added" in added.text and 'value="Flower Quality Check"' in added.text
    assert await stored(db, fs) is None

    three = questions_form(
        ("How was the delivery?", "rating", ""),
        ("Flower quality?", "choice", "Good\nFine\n\nPoor"),
        ("Anything else?", "text", "left over from a choice"),
    )
    moved = await admin.post(url, data={**base, **three, "action": "down-0"})
    assert texts_in_order(moved.text) == ["Flower quality?", "How was the delivery?", "Anything else?"]
    assert "Question 1 moved down to 2" in moved.text
    # With htmx (the same page; htmx swaps #questions out of it) and focus on the moved question's text.
    reordered = questions_form(
        ("Flower quality?", "choice", "Good\nFine\nPoor"),
        ("How was the delivery?", "rating", ""),
        ("Anything else?", "text", ""),
    )
    moved_up = await admin.post(url, data={**base, **reordered, "action": "up-1"}, headers={"HX-Request": "true"})
    assert moved_up.status_code == 200
    assert texts_in_order(moved_up.text) == ["How was the delivery?", "Flower quality?", "Anything else?"]
    assert re.search(r'id="q-0-text"[^>]*data-focus', moved_up.text)
    removed = await admin.post(url, data={**base, **three, "action": "remove-2"})
    assert texts_in_order(removed.text) == ["How was the delivery?", "Flower quality?"]
    ignored = await admin.post(url, data={**base, **three, "action": "up-0"})  # nothing above the first
    assert texts_in_order(ignored.text) == ["How was the delivery?", "Flower quality?", "Anything else?"]
    assert await stored(db, fs) is None

    created = await admin.post(url, data={**base, **three, "action": "save"})
    assert created.status_code == 303 and created.headers["location"] == url
    survey = await stored(db, fs)
    assert survey is not None
    assert (survey.name, survey.survey_type, survey.status, survey.trigger) == (
        "Flower Quality Check",
        "questions",
        "paused",
        "answered",
    )
    assert survey.questions == [
        {"text": "How was the delivery?", "kind": "rating"},
        {"text": "Flower quality?", "kind": "choice", "choices": ["Good", "Fine", "Poor"]},
        {"text": "Anything else?", "kind": "text"},  # the choices typed for it are dropped
    ]
    page = await admin.get(url)
    assert "created. It is paused" in page.text
    assert f'data-copy="{survey.id}"' in page.text and "feedback_stack/{surveyId}/export_report" in page.text
    assert ">Paused</span>" in page.text and ">Make live</button>" in page.text
    assert texts_in_order(page.text) == ["How was the delivery?", "Flower quality?", "Anything else?"]

    csrf = csrf_of(page.text)
    live = await admin.post(f"{url}/status", data={"csrf_token": csrf, "status": "live"})
    assert live.status_code == 303
    assert (await stored(db, fs)).status == "live"  # type: ignore[union-attr]
    page = await admin.get(url)
    assert "is live: phones show it" in page.text and ">Pause survey</button>" in page.text
    bad = await admin.post(f"{url}/status", data={"csrf_token": csrf, "status": "deleted"})
    assert bad.status_code == 400 and error_of(bad.text, "status") == "status must be one of live, paused"
    paused = await admin.post(f"{url}/status", data={"csrf_token": csrf, "status": "paused"})
    assert paused.status_code == 303 and (await stored(db, fs)).status == "paused"  # type: ignore[union-attr]

    # Edit: the type stays (a "type" field sent anyway is ignored), the id stays.
    edited = await admin.post(
        url,
        data={
            "csrf_token": csrf,
            "type": "call_rating",
            "name": "Flowers, checked",
            "trigger": "missed",
            **questions_form(("Flower quality?", "choice", "Good\nPoor"), ("How was the delivery?", "rating", "")),
            "action": "save",
        },
    )
    assert edited.status_code == 303
    after = await stored(db, fs)
    assert after is not None and after.id == survey.id
    assert (after.name, after.survey_type, after.trigger) == ("Flowers, checked", "questions", "missed")
    assert [q["text"] for q in after.questions] == ["Flower quality?", "How was the delivery?"]
    assert after.updated_at >= survey.updated_at


async def test_a_call_rating_survey_has_one_rating_question_made_for_it(
    admin: httpx.AsyncClient, db: Database, world: World
) -> None:
    fs = await feature_set(db, world, "Rated line")
    url = f"/console/feature-sets/{fs}/survey"
    form = await admin.get(f"{url}?type=call_rating")
    assert f'value="{engagement.DEFAULT_RATING_QUESTION}"' in form.text
    assert "Add question" not in form.text and "Rating question" in form.text
    csrf = csrf_of(form.text)
    created = await admin.post(
        url,
        data={"csrf_token": csrf, "type": "call_rating", "name": "Call rating", "trigger": "answered"}
        | {"q-0-text": "How did we do?", "q-0-kind": "rating", "action": "save"},
    )
    assert created.status_code == 303
    survey = await stored(db, fs)
    assert survey is not None and survey.survey_type == "call_rating"
    assert survey.questions == [{"text": "How did we do?", "kind": "rating"}]
    # A second question cannot be smuggled in, nor the rating turned into text.
    data = {"csrf_token": csrf, "name": "Call rating", "trigger": "answered", "action": "save"}
    two = await admin.post(url, data=data | questions_form(("A?", "rating", ""), ("B?", "rating", "")))
    assert two.status_code == 400
    assert error_of(two.text, "questions") == "a Call Rating survey has exactly one question"
    text = await admin.post(url, data=data | questions_form(("A?", "text", "")))
    assert text.status_code == 400
    assert error_of(text.text, "q-0-kind") == "the question of a Call Rating survey is a rating"
    assert (await stored(db, fs)).questions == [{"text": "How did we do?", "kind": "rating"}]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": " "}, "name", "survey name must be 1-100 characters"),
        ({"name": "Bad\x00name"}, "name", "survey name contains characters that cannot be displayed"),
        ({"trigger": "sometimes"}, "trigger", "trigger must be one of answered, missed, any"),
        ({"q-1-text": ""}, "q-1-text", "questions must be 1-500 characters"),
        ({"q-1-text": "x" * 501}, "q-1-text", "questions must be 1-500 characters"),
        ({"q-1-text": "Rate us?"}, "q-1-text", "questions must be different from each other"),
        ({"q-0-kind": "stars"}, "q-0-kind", "question 1 kind must be one of rating, choice, text"),
        ({"q-1-choices": "Good"}, "q-1-choices", "question 2 needs 2-10 choices"),
        ({"q-1-choices": "\n".join(f"c{n}" for n in range(11))}, "q-1-choices", "question 2 needs 2-10 choices"),
        ({"q-1-choices": "Good\ngood"}, "q-1-choices", "question 2 choices must be different from each other"),
        ({"q-1-choices": "Good\n" + "y" * 101}, "q-1-choices", "question 2 choices must be 1-100 characters"),
    ],
)
async def test_bad_input_is_shown_next_to_its_field_and_what_was_typed_is_kept(
    admin: httpx.AsyncClient, db: Database, world: World, fields: dict[str, str], field: str, message: str
) -> None:
    fs = await feature_set(db, world, "Checked line")
    url = f"/console/feature-sets/{fs}/survey"
    csrf = await page_csrf(admin, f"{url}?type=questions")
    data = {"csrf_token": csrf, "type": "questions", "name": "<b>Check</b>", "trigger": "any", "action": "save"}
    data |= questions_form(("Rate us?", "rating", ""), ("Flower quality?", "choice", "Good\nPoor"))
    response = await admin.post(url, data=data | fields)
    assert response.status_code == 400
    assert error_of(response.text, field) == message.replace("'", "&#39;")
    shown_name = fields.get("name", "<b>Check</b>").replace("\x00", "")
    if "\x00" not in fields.get("name", ""):
        assert f'value="{shown_name.replace("<", "&lt;").replace(">", "&gt;")}"' in response.text
    assert "<b>Check</b>" not in response.text  # escaped, never markup
    assert await stored(db, fs) is None


async def test_hostile_forms_get_an_answer_never_a_crash(admin: httpx.AsyncClient, db: Database, world: World) -> None:
    fs = await feature_set(db, world, "Hostile line")
    url = f"/console/feature-sets/{fs}/survey"
    csrf = await page_csrf(admin, f"{url}?type=questions")
    base = {"csrf_token": csrf, "name": "Survey", "trigger": "any"}
    many = questions_form(*((f"Question {n}?", "text", "") for n in range(51)))
    too_many = await admin.post(url, data=base | {"type": "questions", "action": "save"} | many)
    assert too_many.status_code == 400 and error_of(too_many.text, "questions") == "a survey needs 1-50 questions"
    no_type = await admin.post(url, data=base | {"type": "poll", "action": "save"})
    assert no_type.status_code == 400 and "type must be Call Rating or Questions" in no_type.text
    no_questions = await admin.post(url, data=base | {"type": "questions", "action": "save"})
    assert no_questions.status_code == 400 and error_of(no_questions.text, "q-0-text") is not None
    for action in ("up-99", "down-x", "remove-", "explode", "up-1000000000000"):
        response = await admin.post(url, data=base | {"type": "questions", "action": action} | many)
        assert response.status_code == 200, action
    assert await stored(db, fs) is None
    # Not another account's, nor a feature set that does not exist, nor a malformed id.
    for other in (str(uuid.uuid4()), "not-a-uuid"):
        assert (await admin.get(f"/console/feature-sets/{other}/survey")).status_code == 404
        assert (await admin.post(f"/console/feature-sets/{other}/survey", data=base)).status_code == 404
    # Status of a feature set without a survey: nothing to change.
    assert (await admin.post(f"{url}/status", data={"csrf_token": csrf, "status": "live"})).status_code == 404


async def test_a_feature_set_with_surveys_off_gets_no_survey(
    admin: httpx.AsyncClient, db: Database, world: World
) -> None:
    fs = await feature_set(db, world, "Quiet line", survey=False)
    url = f"/console/feature-sets/{fs}/survey"
    page = await admin.get(f"{url}?type=questions")
    assert page.status_code == 200
    assert "Surveys are turned off for this feature set" in page.text and 'id="survey-form"' not in page.text
    csrf = csrf_of(page.text)
    data = {"csrf_token": csrf, "type": "questions", "name": "S", "trigger": "any", "action": "save"}
    refused = await admin.post(url, data=data | questions_form(("Q?", "text", "")))
    assert refused.status_code == 400 and f"surveys are not enabled on feature set {fs}" in refused.text
    assert await stored(db, fs) is None


async def make_survey(db: Database, world: World, fs: str, name: str, **values: Any) -> Survey:
    values.setdefault("questions", [] if values.get("survey_type") == "call_rating" else ["How was it?"])
    async with db.transaction() as session:
        return await engagement.create_survey(
            session, account_id=world.account_id, feature_set_id=uuid.UUID(fs), name=name, **values
        )


async def test_the_list_filters_pages_and_exports_exactly_what_it_shows(
    admin: httpx.AsyncClient, db: Database, world: World
) -> None:
    empty = await admin.get("/console/surveys")
    assert "No surveys yet" in empty.text and 'href="/console/surveys/new"' in empty.text
    settings_page = await admin.get("/console/settings")
    assert 'href="/console/surveys"' in settings_page.text
    rated = await feature_set(db, world, "Rated line")
    asked = await feature_set(db, world, "Asked line")
    await make_survey(db, world, rated, "Call rating", survey_type="call_rating", status="paused")
    questions = await make_survey(db, world, asked, "Flower check", questions=["Fresh?", "Anything else?"])

    listing = await admin.get("/console/surveys")
    assert set(SURVEY_LINK.findall(listing.text)) == {rated, asked}
    assert ">2 surveys<" in listing.text and "Asked line" in listing.text and "2 questions" in listing.text
    live = await admin.get("/console/surveys?status=live")
    assert SURVEY_LINK.findall(live.text) == [asked]
    by_type = await admin.get("/console/surveys?type=call_rating&q=RATED")
    assert SURVEY_LINK.findall(by_type.text) == [rated]
    by_feature_set = await admin.get("/console/surveys?q=asked")
    assert SURVEY_LINK.findall(by_feature_set.text) == [asked]
    nothing = await admin.get("/console/surveys?q=%25_nothing")
    assert "No survey matches these filters" in nothing.text
    ignored = await admin.get("/console/surveys?type=poll&status=gone&page=-3")
    assert ignored.status_code == 200 and len(SURVEY_LINK.findall(ignored.text)) == 2

    exported = await admin.get("/console/surveys/export.csv?status=live")
    assert exported.headers["content-disposition"] == 'attachment; filename="surveys.csv"'
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0][:6] == ["survey_id", "name", "type", "status", "trigger", "questions"]
    assert [row[:8] for row in rows[1:]] == [
        [str(questions.id), "Flower check", "questions", "live", "any", "2", asked, "Asked line"]
    ]
    assert len(list(csv.reader(io.StringIO((await admin.get("/console/surveys/export.csv")).text)))) == 3


async def test_create_survey_picks_a_feature_set_waiting_for_one(
    admin: httpx.AsyncClient, db: Database, world: World
) -> None:
    waiting = await feature_set(db, world, "Waiting line")
    done = await feature_set(db, world, "Done line")
    await make_survey(db, world, done, "Done")
    await feature_set(db, world, "Off line", survey=False)
    page = await admin.get("/console/surveys/new")
    assert page.status_code == 200
    options = re.findall(r'<option value="([0-9a-f-]{36})"', page.text)
    assert options == [waiting]
    chosen = await admin.get(f"/console/surveys/new?feature_set={waiting}&type=call_rating")
    assert chosen.status_code == 303
    assert chosen.headers["location"] == f"/console/feature-sets/{waiting}/survey?type=call_rating"
    refused = await admin.get(f"/console/surveys/new?feature_set={done}&type=poll")
    assert refused.status_code == 400
    assert error_of(refused.text, "feature_set") == "feature set must be chosen from the list"
    assert error_of(refused.text, "type") == "type must be Call Rating or Questions"


async def test_owners_see_and_change_only_the_surveys_of_their_part(app: Any, db: Database, world: World) -> None:
    mine = await feature_set(db, world, "Returns survey line")  # Sales > Delivery > Returns
    theirs = await feature_set(db, world, "Support line", node="support")
    await make_survey(db, world, mine, "Returns check")
    their_survey = await make_survey(db, world, theirs, "Support check")
    spare = await feature_set(db, world, "Support spare", node="support")

    async with browser(app) as http:
        owner = world.people["process_owner"]
        await sign_in(http, owner.email, owner.password)
        listing = await http.get("/console/surveys")
        assert SURVEY_LINK.findall(listing.text) == [mine] and ">1 survey<" in listing.text
        exported = (await http.get("/console/surveys/export.csv")).text
        assert "Returns check" in exported and "Support check" not in exported
        picker = await http.get("/console/surveys/new")
        assert spare not in picker.text
        assert (await http.get(f"/console/surveys/new?feature_set={spare}&type=questions")).status_code == 400
        # Guessing the URL of a survey outside their part answers as for one that does not exist.
        assert (await http.get(f"/console/feature-sets/{theirs}/survey")).status_code == 404
        csrf = csrf_of(listing.text)
        data = {"csrf_token": csrf, "name": "Taken", "trigger": "any", "action": "save", "q-0-text": "Q?"}
        assert (await http.post(f"/console/feature-sets/{theirs}/survey", data=data)).status_code == 404
        status = {"csrf_token": csrf, "status": "paused"}
        assert (await http.post(f"/console/feature-sets/{theirs}/survey/status", data=status)).status_code == 404
        assert (await http.get(f"/console/feature-sets/{mine}/survey")).status_code == 200
        assert (await http.post(f"/console/feature-sets/{mine}/survey/status", data=status)).status_code == 303
    async with db.session() as session:
        untouched = await session.get(Survey, their_survey.id)
        paused = await session.scalar(select(func.count()).select_from(Survey).where(Survey.status == "paused"))
    assert untouched is not None and (untouched.name, untouched.status) == ("Support check", "live")
    assert paused == 1

    async with browser(app) as http:
        outsider = world.people["outsider"]  # Department Owner of Support
        await sign_in(http, outsider.email, outsider.password)
        listing = await http.get("/console/surveys")
        assert SURVEY_LINK.findall(listing.text) == [theirs]
        picker = await http.get("/console/surveys/new")
        assert re.findall(r'<option value="([0-9a-f-]{36})"', picker.text) == [spare]
