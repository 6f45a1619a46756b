"""Surveys: campaigns, the survey of a business number, and the answers phones send (SPEC §10.5), stored with
their webhook events in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.delivery.service import DeviceInfo
from callerid.engagement.checks import (
    MAX_QUESTION_LENGTH,
    MAX_QUESTIONS,
    SURVEY_TRIGGERS,
    EngagementError,
    _check_displayable,
    _feature_enabled,
    _feature_set_in_account,
    _listed_for_app,
)
from callerid.engagement.models import (
    Survey,
    SurveyResponse,
)
from callerid.engagement.schemas import (
    SurveyAnswers,
    survey_payload,
)
from callerid.failures import Conflict, InvalidInput, NotFound
from callerid.webhooks.service import emit_event


async def create_survey(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    feature_set_id: uuid.UUID,
    name: str,
    questions: Sequence[str],
    trigger: str = "any",
) -> Survey:
    """The survey of a feature set with surveys enabled (one per feature set); questions keep their order."""
    feature_set = await _feature_set_in_account(session, account_id, feature_set_id)
    if not feature_set.survey:
        raise EngagementError(f"surveys are not enabled on feature set {feature_set_id}")
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise EngagementError("survey name must be 1-100 characters")
    _check_displayable(name, "survey name")
    if trigger not in SURVEY_TRIGGERS:
        raise EngagementError(f"trigger must be one of {', '.join(SURVEY_TRIGGERS)}")
    texts = [q.strip() for q in questions]
    if not 1 <= len(texts) <= MAX_QUESTIONS:
        raise EngagementError(f"a survey needs 1-{MAX_QUESTIONS} questions")
    for number, text in enumerate(texts, start=1):
        if not 1 <= len(text) <= MAX_QUESTION_LENGTH:
            raise EngagementError(f"questions must be 1-{MAX_QUESTION_LENGTH} characters")
        _check_displayable(text, f"question {number}")
    if len(set(texts)) != len(texts):
        raise EngagementError("questions must be different from each other")
    existing = await session.scalar(select(Survey.id).where(Survey.feature_set_id == feature_set_id))
    if existing is not None:
        raise EngagementError(f"feature set {feature_set_id} already has survey {existing}")
    survey = Survey(
        id=uuid.uuid4(),
        account_id=account_id,
        feature_set_id=feature_set_id,
        name=name,
        trigger=trigger,
        questions=texts,
        created_at=clock.now(),
    )
    session.add(survey)
    await session.flush()
    return survey


async def list_surveys(session: AsyncSession, account_id: uuid.UUID) -> list[Survey]:
    rows = await session.scalars(
        select(Survey).where(Survey.account_id == account_id).order_by(Survey.created_at.desc(), Survey.id)
    )
    return list(rows.all())


async def survey_for_number(session: AsyncSession, business_number: str) -> Survey:
    """The survey the app shows after a call from ``business_number``."""
    listed = await _listed_for_app(session, business_number)
    if not await _feature_enabled(session, listed, "user_feedback"):
        raise Conflict("surveys are not enabled for business_number")
    survey = (
        await session.execute(select(Survey).where(Survey.feature_set_id == listed.feature_set_id))
    ).scalar_one_or_none()
    if survey is None:
        raise NotFound("business_number has no survey")
    return survey


async def submit_survey_answers(
    session: AsyncSession, *, device: DeviceInfo, survey_id: uuid.UUID, submission: SurveyAnswers
) -> tuple[SurveyResponse, list[uuid.UUID]]:
    """Store a phone's answers and emit their ``user_feedback`` events; returns the response and event ids.

    Refusals: unknown survey (404); business number invalid (400) / not listed (404); surveys off, or the number's
    feature set uses another survey (409); a question not in the survey or answered twice (400).
    """
    survey = await session.get(Survey, survey_id)
    if survey is None:
        raise NotFound("survey not found")
    listed = await _listed_for_app(session, submission.business_number)
    if not await _feature_enabled(session, listed, "user_feedback"):
        raise Conflict("surveys are not enabled for business_number")
    if listed.feature_set_id != survey.feature_set_id:
        raise Conflict("survey is not the survey of business_number")
    order = {question: index for index, question in enumerate(survey.questions)}
    seen: set[str] = set()
    for index, (question, _) in enumerate(submission.answers):
        if question not in order:
            raise InvalidInput(f"answers[{index}].question is not a question of this survey")
        if question in seen:
            raise InvalidInput(f"answers[{index}].question is answered twice")
        seen.add(question)
    answers = [
        {"question": question, "response": response}
        for question, response in sorted(submission.answers, key=lambda item: order[item[0]])
    ]
    now = clock.now().replace(microsecond=0)
    response = SurveyResponse(
        id=uuid.uuid4(),
        account_id=survey.account_id,
        survey_id=survey.id,
        survey_name=survey.name,
        business_number=listed.phone_number,
        feature_set_name=listed.feature_set_name,
        client_number=device.phone_number,
        requested_at=now,
        answers=answers,
    )
    session.add(response)
    await session.flush()
    body = survey_payload(response)
    event_ids = await emit_event(
        session,
        account_id=survey.account_id,
        event_type="user_feedback",
        created_at=now,
        body=body,
    )
    return response, event_ids
