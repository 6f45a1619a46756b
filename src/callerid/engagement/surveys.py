"""Surveys: campaigns, the survey of a business number, and the answers phones send (SPEC §10.5), stored with
their webhook events in one transaction.

A survey belongs to one feature set. Its type is Call Rating (one rating question, made for it) or Questions
(ordered rating, choice and free-text questions, ``engagement.questions``); it is live (shown to phones, taking
answers) or paused (neither).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.analytics.counting import add_in_session, add_survey_response, after_commit, engagement_key
from callerid.analytics.tally import Tally
from callerid.delivery.service import DeviceInfo
from callerid.engagement.checks import (
    SURVEY_TRIGGERS,
    EngagementError,
    _account_zone,
    _check_displayable,
    _feature_enabled,
    _feature_set_in_account,
    _listed_for_app,
)
from callerid.engagement.models import (
    LIVE,
    QUESTIONS,
    SURVEY_STATUSES,
    SURVEY_TYPES,
    Survey,
    SurveyResponse,
)
from callerid.engagement.questions import RATING, Question, check_answer, check_questions, from_stored
from callerid.engagement.schemas import (
    SurveyAnswers,
    survey_payload,
)
from callerid.failures import Conflict, InvalidInput, NotFound
from callerid.numbers.models import FeatureSet
from callerid.numbers.service import TreeFilters
from callerid.ops import metrics
from callerid.webhooks.service import emit_event

MAX_NAME_LENGTH = 100


def questions_of(survey: Survey) -> list[Question]:
    return [from_stored(value) for value in survey.questions]


def _checked_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise EngagementError(f"survey name must be 1-{MAX_NAME_LENGTH} characters", field="name")
    try:
        _check_displayable(name, "survey name")
    except EngagementError as problem:
        raise EngagementError(problem.message, field="name") from None
    return name


def _checked_trigger(trigger: str) -> str:
    if trigger not in SURVEY_TRIGGERS:
        raise EngagementError(f"trigger must be one of {', '.join(SURVEY_TRIGGERS)}", field="trigger")
    return trigger


def _checked_status(status: str) -> str:
    if status not in SURVEY_STATUSES:
        raise EngagementError(f"status must be one of {', '.join(SURVEY_STATUSES)}", field="status")
    return status


async def create_survey(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    feature_set_id: uuid.UUID,
    name: str,
    questions: Sequence[str | Question] = (),
    trigger: str = "any",
    survey_type: str = QUESTIONS,
    status: str = LIVE,
) -> Survey:
    """The survey of a feature set with surveys enabled (one per feature set); questions keep their order.

    Plain-string questions are free text (the rating question, for Call Rating); a Call Rating survey given no
    question gets the default rating question. Every rule is checked before anything is written."""
    feature_set = await _feature_set_in_account(session, account_id, feature_set_id)
    if not feature_set.survey:
        raise EngagementError(f"surveys are not enabled on feature set {feature_set_id}")
    name = _checked_name(name)
    trigger = _checked_trigger(trigger)
    if survey_type not in SURVEY_TYPES:
        raise EngagementError(f"type must be one of {', '.join(SURVEY_TYPES)}", field="type")
    status = _checked_status(status)
    checked = check_questions(questions, survey_type)
    existing = await session.scalar(select(Survey.id).where(Survey.feature_set_id == feature_set_id))
    if existing is not None:
        raise EngagementError(f"feature set {feature_set_id} already has survey {existing}")
    now = clock.now()
    survey = Survey(
        id=uuid.uuid4(),
        account_id=account_id,
        feature_set_id=feature_set_id,
        name=name,
        trigger=trigger,
        survey_type=survey_type,
        status=status,
        questions=[question.stored() for question in checked],
        created_at=now,
        updated_at=now,
    )
    session.add(survey)
    await session.flush()
    return survey


async def get_survey(session: AsyncSession, account_id: uuid.UUID, survey_id: uuid.UUID) -> Survey:
    """The account's survey, or 404 (unknown and foreign ids look the same)."""
    survey = await session.get(Survey, survey_id)
    if survey is None or survey.account_id != account_id:
        raise NotFound("survey not found")
    return survey


async def survey_of_feature_set(
    session: AsyncSession, account_id: uuid.UUID, feature_set_id: uuid.UUID
) -> Survey | None:
    return await session.scalar(
        select(Survey).where(Survey.account_id == account_id, Survey.feature_set_id == feature_set_id)
    )


async def update_survey(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    survey_id: uuid.UUID,
    name: str,
    trigger: str,
    questions: Sequence[str | Question],
) -> Survey:
    """Change a survey's name, trigger and questions (its type stays). Answers already given keep the question
    texts they were given for (``SurveyResponse.answers`` is a snapshot)."""
    survey = await get_survey(session, account_id, survey_id)
    name = _checked_name(name)
    trigger = _checked_trigger(trigger)
    checked = check_questions(questions, survey.survey_type)
    survey.name = name
    survey.trigger = trigger
    survey.questions = [question.stored() for question in checked]
    survey.updated_at = clock.now()
    await session.flush()
    return survey


async def set_survey_status(
    session: AsyncSession, *, account_id: uuid.UUID, survey_id: uuid.UUID, status: str
) -> Survey:
    """Make a survey live (phones see it and may answer) or pause it (they neither see nor answer it)."""
    status = _checked_status(status)
    survey = await get_survey(session, account_id, survey_id)
    if survey.status != status:
        survey.status = status
        survey.updated_at = clock.now()
        await session.flush()
    return survey


async def list_surveys(session: AsyncSession, account_id: uuid.UUID) -> list[Survey]:
    rows = await session.scalars(
        select(Survey).where(Survey.account_id == account_id).order_by(Survey.created_at.desc(), Survey.id)
    )
    return list(rows.all())


@dataclass(frozen=True)
class SurveyFilter:
    """What a survey listing is narrowed to: a part of a survey's or its feature set's name, a type, a status."""

    text: str = ""
    survey_type: str = ""
    status: str = ""


@dataclass(frozen=True)
class SurveyRow:
    survey: Survey
    feature_set_name: str
    # The process or sub-process the feature set hangs on: where the survey sits in the tree.
    process_id: uuid.UUID


async def search_surveys(
    session: AsyncSession,
    account_id: uuid.UUID,
    filters: SurveyFilter,
    *,
    within: TreeFilters | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[list[SurveyRow], int]:
    """The account's surveys matching ``filters`` (and, for an owner, ``within`` their part of the tree), newest
    first, with their feature set's name; and how many match in all."""
    where = [Survey.account_id == account_id, *(within.predicates() if within is not None else [])]
    if filters.text:
        pattern = "%" + filters.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(
            or_(
                func.lower(Survey.name).like(pattern, escape="\\"),
                func.lower(FeatureSet.name).like(pattern, escape="\\"),
            )
        )
    if filters.survey_type:
        where.append(Survey.survey_type == filters.survey_type)
    if filters.status:
        where.append(Survey.status == filters.status)
    joined = (
        select(Survey, FeatureSet.name, FeatureSet.process_id)
        .join(FeatureSet, FeatureSet.id == Survey.feature_set_id)
        .where(*where)
    )
    total = await session.scalar(select(func.count()).select_from(joined.subquery())) or 0
    query = joined.order_by(Survey.created_at.desc(), Survey.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = (await session.execute(query)).all()
    return [SurveyRow(survey, name, process_id) for survey, name, process_id in rows], total


async def feature_sets_awaiting_survey(
    session: AsyncSession, account_id: uuid.UUID, *, within: TreeFilters | None = None
) -> list[tuple[uuid.UUID, str]]:
    """Feature sets with surveys enabled and no survey yet (id, name), by name: where a survey can be created."""
    where = [
        FeatureSet.account_id == account_id,
        FeatureSet.survey.is_(True),
        ~select(Survey.id).where(Survey.feature_set_id == FeatureSet.id).exists(),
        *(within.predicates() if within is not None else []),
    ]
    rows = await session.execute(select(FeatureSet.id, FeatureSet.name).where(*where).order_by(FeatureSet.name))
    return [(row.id, row.name) for row in rows]


# --- phones ---------------------------------------------------------------------------------------------------


async def survey_for_number(session: AsyncSession, business_number: str) -> Survey:
    """The survey the app shows after a call from ``business_number``; a paused survey is as no survey."""
    listed = await _listed_for_app(session, business_number)
    if not await _feature_enabled(session, listed, "user_feedback"):
        raise Conflict("surveys are not enabled for business_number")
    survey = (
        await session.execute(select(Survey).where(Survey.feature_set_id == listed.feature_set_id))
    ).scalar_one_or_none()
    if survey is None or survey.status != LIVE:
        raise NotFound("business_number has no survey")
    return survey


async def submit_survey_answers(
    session: AsyncSession, *, device: DeviceInfo, survey_id: uuid.UUID, submission: SurveyAnswers
) -> tuple[SurveyResponse, list[uuid.UUID]]:
    """Store a phone's answers and emit their ``user_feedback`` events; returns the response and event ids.

    Refusals: unknown survey (404); paused survey (409); business number invalid (400) / not listed (404); surveys
    off, or the number's feature set uses another survey (409); a question not in the survey or answered twice, a
    rating that is not 1-5, a choice that is not one of the question's (400).
    """
    survey = await session.get(Survey, survey_id)
    if survey is None:
        raise NotFound("survey not found")
    if survey.status != LIVE:
        raise Conflict("survey is paused and takes no answers")
    listed = await _listed_for_app(session, submission.business_number)
    if not await _feature_enabled(session, listed, "user_feedback"):
        raise Conflict("surveys are not enabled for business_number")
    if listed.feature_set_id != survey.feature_set_id:
        raise Conflict("survey is not the survey of business_number")
    by_text = {question.text: (order, question) for order, question in enumerate(questions_of(survey))}
    checked: list[tuple[int, dict[str, str]]] = []
    seen: set[str] = set()
    for index, (text, given) in enumerate(submission.answers):
        if text not in by_text:
            raise InvalidInput(f"answers[{index}].question is not a question of this survey")
        if text in seen:
            raise InvalidInput(f"answers[{index}].question is answered twice")
        seen.add(text)
        order, question = by_text[text]
        response = check_answer(question, given, f"answers[{index}].response")
        checked.append((order, {"question": text, "response": response}))
    answers = [answer for _, answer in sorted(checked, key=lambda item: item[0])]
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
    # Counted in the daily figures with the response itself (issue 13), with each rating question's answer.
    zone = await _account_zone(session, survey.account_id)
    figures = Tally()
    key = engagement_key(survey.account_id, zone.key, now, survey.feature_set_id, listed.phone_number)
    rated = {text for text, (_, question) in by_text.items() if question.kind == RATING}
    add_survey_response(figures, key, answers, rated)
    await add_in_session(session, figures)
    after_commit(session, metrics.SURVEY_RESPONSES.inc)
    body = survey_payload(response)
    event_ids = await emit_event(
        session,
        account_id=survey.account_id,
        event_type="user_feedback",
        created_at=now,
        body=body,
    )
    return response, event_ids
