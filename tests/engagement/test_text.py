"""Text of Call Me Back and surveys (callerid.display_text), on both databases: config names, survey names and
questions are shown on phones (display rule); survey responses are free text and need only be storable (no NUL)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from callerid.db import Database
from callerid.engagement import service as engagement
from callerid.jobs.runner import JobRunner
from tests.conftest import Tenant
from tests.engagement.conftest import Org, make_feature_set, publish, stored_responses

CANNOT_DISPLAY = "contains characters that cannot be displayed"
UNDISPLAYABLE = {
    "NUL": "\x00",
    "newline": "\n",
    "RLO": "\u202e",
    "LRI": "\u2066",
    "ZWSP": "\u200b",
    "BOM": "\ufeff",
    "private use": "\ue000",
}
QUESTIONS = ["डिलीवरी कैसी रही?", "كيف كانت الزهور؟", "花新鲜吗?", "Rate us 🌸 / ❤️ / 👨‍👩‍👧"]


async def _survey(db: Database, org: Org, feature_set_id: uuid.UUID, **overrides: Any) -> Any:
    values: dict[str, Any] = {"name": "Check", "questions": ["Q1?", "Q2?"], **overrides}
    async with db.transaction() as session:
        return await engagement.create_survey(
            session, account_id=org.account_id, feature_set_id=feature_set_id, **values
        )


@pytest.mark.parametrize("char", UNDISPLAYABLE.values(), ids=UNDISPLAYABLE.keys())
async def test_names_and_questions_phones_cannot_display_are_refused(db: Database, org: Org, char: str) -> None:
    with_cmb = await make_feature_set(db, org, "Call me", call_me_back=True)
    with pytest.raises(engagement.EngagementError, match=f"^cmb config name {CANNOT_DISPLAY}$"):
        async with db.transaction() as session:
            await engagement.set_cmb_config(
                session, account_id=org.account_id, feature_set_id=with_cmb, name=f"Call{char}back"
            )
    with_survey = await make_feature_set(db, org, "Ask me", survey=True)
    refusals = [
        ({"name": f"Che{char}ck"}, f"survey name {CANNOT_DISPLAY}"),
        ({"questions": ["Q1?", f"Q{char}2?"]}, f"question 2 {CANNOT_DISPLAY}"),
    ]
    for overrides, message in refusals:
        with pytest.raises(engagement.EngagementError) as raised:
            await _survey(db, org, with_survey, **overrides)
        assert str(raised.value) == message


async def test_questions_in_any_script_are_kept_and_answered_exactly(
    client: httpx.AsyncClient,
    db: Database,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    org: Org,
    phone: dict[str, str],
) -> None:
    feature_set_id = await make_feature_set(db, org, "फूल 🌸", survey=True, call_me_back=True)
    async with db.transaction() as session:
        config = await engagement.set_cmb_config(
            session, account_id=org.account_id, feature_set_id=feature_set_id, name="कॉल बैक 📞"
        )
    assert config.name == "कॉल बैक 📞"
    survey = await _survey(db, org, feature_set_id, name="रेटिंग ❤️", questions=QUESTIONS)
    await publish(client, runner, tenant.account_id, auth, feature_set_id, "910987654321")
    fetched = await client.get("/app/v1/surveys", params={"business_number": "910987654321"}, headers=phone)
    assert (fetched.json()["name"], fetched.json()["questions"]) == ("रेटिंग ❤️", QUESTIONS)

    answers = [{"question": QUESTIONS[0], "response": "बहुत अच्छी\nThanks 🌸"}]  # free text: a newline is fine
    response = await client.post(
        f"/app/v1/surveys/{survey.id}/responses",
        json={"business_number": "910987654321", "answers": answers},
        headers=phone,
    )
    assert response.status_code == 201, response.text
    (stored,) = await stored_responses(db)
    assert stored.answers == answers

    refused = await client.post(
        f"/app/v1/surveys/{survey.id}/responses",
        json={"business_number": "910987654321", "answers": [{"question": QUESTIONS[1], "response": "Go\x00od"}]},
        headers=phone,
    )
    assert refused.status_code == 400
    assert refused.json() == {
        "slug": "invalid-input",
        "message": "answers[0].response contains characters that cannot be stored",
    }
    assert len(await stored_responses(db)) == 1
