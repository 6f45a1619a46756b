"""Surveys in headless Chromium against the shared ``callerid serve``: from Settings to the surveys list, pick a
feature set, build a Questions survey with a rating, a choice and a free-text question (added and reordered with
htmx), create it (paused), make it live and see it from the app API as a phone would, then pause it again.

Screenshots at 360x800 and 1280x800 go to ``test-artifacts/console-surveys-*.png``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.serving import SKIP_REASON, Server
from tests.e2e.test_console_browser import DESKTOP, open_page, screenshots
from tests.e2e.test_phone_browser import logo_png

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]
BUSINESS_NUMBER = "919812340071"
PHONE_NUMBER = "919812340072"


class Business:
    """An account with a feature set (surveys on) whose number is listed, made as an operator and a backend would."""

    def __init__(self, server: Server):
        self.server = server
        suffix = uuid.uuid4().hex[:6]
        created = server.cli(
            "accounts",
            "create",
            "--name",
            f"Survey Flowers {suffix}",
            "--admin-email",
            f"surveys-{suffix}@flowers.test",
        )
        self.account_id: str = created["client_account_id"]
        self.email: str = created["admin_email"]
        self.password: str = created["admin_password"]
        account = ("--account", self.account_id)
        department = server.cli("departments", "create", *account, "--name", "Sales")["id"]
        operation = server.cli(
            "operations", "create", *account, "--department", department, "--name", "Delivery",
            "--calling-operation", "Delivery",
        )["id"]  # fmt: skip
        process = server.cli("processes", "create", *account, "--operation", operation, "--name", "Door")["id"]
        logo = server.folder / f"survey-logo-{suffix}.png"
        logo.write_bytes(logo_png())
        label = server.cli(
            "labels", "create", *account, "--name", "Flower Era", "--logo", str(logo), "--type", "static"
        )
        self.feature_set_id: str = server.cli(
            "feature-sets", "create", *account, "--process", process, "--name", "Fresh Flower Delivery",
            "--label", label.get("id") or label["label_id"], "--survey",
        )["id"]  # fmt: skip
        self.key = server.cli("api-keys", "create", *account, "--name", "surveys test")

    async def list_number(self, http: httpx.AsyncClient) -> None:
        minted = await http.post(
            f"/clients/{self.account_id}/token",
            json={"key_id": self.key["key_id"], "api_key": self.key["api_key"]},
            headers={"X-Public-Access": "allow"},
        )
        assert minted.status_code == 200, minted.text
        listed = await http.post(
            f"/clients/{self.account_id}/number_management/feature_sets/{self.feature_set_id}/numbers/publish",
            json={"phone_numbers": [BUSINESS_NUMBER]},
            headers={"Authorization": f"Bearer {minted.json()['token']}"},
        )
        assert listed.status_code == 200, listed.text


async def phone_token(http: httpx.AsyncClient) -> dict[str, str]:
    """What the app does: register, then send back the code (the demo code: no SMS gateway here)."""
    started = await http.post(
        "/app/v1/devices", json={"phone_number": PHONE_NUMBER, "platform": "android", "app_version": "2.0.0"}
    )
    assert started.status_code == 202, started.text
    answer = started.json()
    confirmed = await http.post(
        "/app/v1/devices/verify", json={"registration_id": answer["registration_id"], "code": answer["demo_code"]}
    )
    assert confirmed.status_code == 201, confirmed.text
    return {"Authorization": f"Bearer {confirmed.json()['device_token']}"}


async def survey_seen_by_phone(http: httpx.AsyncClient, phone: dict[str, str]) -> httpx.Response:
    return await http.get("/app/v1/surveys", params={"business_number": BUSINESS_NUMBER}, headers=phone)


async def wait_listed(http: httpx.AsyncClient, phone: dict[str, str]) -> None:
    """The server's job runner lists the number a couple of seconds after NL; bounded."""
    for _ in range(200):
        response = await survey_seen_by_phone(http, phone)
        if response.json().get("message") != "business_number is not a listed number":
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the number was never listed")


async def test_survey_journey(chromium: Any, console_server: Server) -> None:
    business = Business(console_server)
    async with httpx.AsyncClient(base_url=console_server.base) as http:
        await business.list_number(http)
        phone = await phone_token(http)
        await wait_listed(http, phone)
        # Surveys on, but none made yet: phones get nothing to show.
        assert (await survey_seen_by_phone(http, phone)).json()["message"] == "business_number has no survey"

    context, page, problems = await open_page(chromium, DESKTOP)
    await page.goto(console_server.base + "/console/sign-in")
    await page.get_by_label("Email").fill(business.email)
    await page.get_by_label("Password").fill(business.password)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Settings").click()
    await page.get_by_role("link", name="Manage surveys").click()
    await page.get_by_role("heading", name="No surveys yet").wait_for()
    await screenshots(page, "surveys-empty")

    # Pick the feature set and the type.
    await page.get_by_role("link", name="Create survey").first.click()
    await page.get_by_label("Feature set").select_option(business.feature_set_id)
    await page.get_by_role("radio", name="Questions").check()
    await screenshots(page, "surveys-new")
    await page.get_by_role("button", name="Continue").click()
    await page.get_by_role("heading", name="Create survey").wait_for()
    # The type can still be changed: back to the choice, as the feature set's page links to it.
    await page.get_by_role("link", name="Choose another type").click()
    await page.get_by_role("heading", name="Call Rating").wait_for()
    await screenshots(page, "surveys-choose-type")
    await page.get_by_role("link", name="Create a Questions survey").click()

    # Three questions of three kinds; htmx adds each one and moves focus to it.
    await page.get_by_label("Survey name").fill("Flower Quality Check")
    await page.get_by_label("Show it").select_option("answered")
    first = page.get_by_role("group", name="Question 1")
    await first.get_by_label("Question", exact=True).fill("Anything else?")
    await first.get_by_label("Answer").select_option("text")
    assert not await first.get_by_label("Choices").is_visible()  # only for choice answers
    await page.get_by_role("button", name="Add question").click()
    second = page.get_by_role("group", name="Question 2")
    await second.wait_for()
    # Focus moves once htmx has settled the swap, a moment after the group appears: wait for it, do not sample.
    await page.wait_for_function("() => document.activeElement && document.activeElement.id === 'q-1-text'")
    await second.get_by_label("Question", exact=True).fill("Flower quality?")
    await second.get_by_label("Answer").select_option("choice")
    await second.get_by_label("Choices").fill("Good\nFine\nPoor")
    await page.get_by_role("button", name="Add question").click()
    third = page.get_by_role("group", name="Question 3")
    await third.wait_for()
    await third.get_by_label("Question", exact=True).fill("How was the delivery?")
    await third.get_by_label("Answer").select_option("rating")
    await screenshots(page, "surveys-building")

    # Reorder: the rating first, the free text last.
    await page.get_by_role("button", name="Move up question 3").click()
    await page.get_by_role("status").filter(has_text="Question 3 moved up to 2").wait_for()
    await page.get_by_role("button", name="Move up question 2").click()
    await page.get_by_role("status").filter(has_text="Question 2 moved up to 1").wait_for()
    await page.get_by_role("button", name="Move down question 2").click()
    await page.get_by_role("status").filter(has_text="Question 2 moved down to 3").wait_for()
    order = [await page.locator(f"#q-{i}-text").input_value() for i in range(3)]
    assert order == ["How was the delivery?", "Flower quality?", "Anything else?"]
    assert (
        await page.get_by_role("group", name="Question 2").get_by_label("Choices").input_value() == "Good\nFine\nPoor"
    )
    await screenshots(page, "surveys-reordered")
    await page.get_by_role("button", name="Create survey").first.click()
    await page.get_by_role("heading", name="Flower Quality Check").wait_for()
    await page.get_by_role("status").filter(has_text="It is paused").wait_for()
    survey_id = await page.locator(".copyable code").first.inner_text()
    await screenshots(page, "surveys-created")

    async with httpx.AsyncClient(base_url=console_server.base) as http:
        assert (await survey_seen_by_phone(http, phone)).status_code == 404  # paused: not shown

        await page.get_by_role("button", name="Make live").click()
        await page.get_by_role("status").filter(has_text="is live").wait_for()
        await screenshots(page, "surveys-live")
        shown = await survey_seen_by_phone(http, phone)
        assert shown.status_code == 200, shown.text
        assert shown.json() | {"question_details": None} == {
            "id": survey_id,
            "name": "Flower Quality Check",
            "trigger": "answered",
            "questions": ["How was the delivery?", "Flower quality?", "Anything else?"],
            "type": "questions",
            "question_details": None,
        }
        assert [q["kind"] for q in shown.json()["question_details"]] == ["rating", "choice", "text"]
        assert shown.json()["question_details"][1]["choices"] == ["Good", "Fine", "Poor"]
        answered = await http.post(
            f"/app/v1/surveys/{survey_id}/responses",
            json={"business_number": BUSINESS_NUMBER, "answers": [{"question": "Flower quality?", "response": "Fine"}]},
            headers=phone,
        )
        assert answered.status_code == 201, answered.text

        await page.get_by_role("button", name="Pause survey").click()
        await page.get_by_role("status").filter(has_text="is paused").wait_for()
        assert (await survey_seen_by_phone(http, phone)).status_code == 404

    # The list shows it with its status and id.
    await page.get_by_role("link", name="← Surveys").click()
    row = page.get_by_role("row").filter(has_text="Flower Quality Check")
    assert "Paused" in await row.inner_text() and survey_id in await row.inner_text()
    await screenshots(page, "surveys-list")
    await context.close()
    assert problems == []
