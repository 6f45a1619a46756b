"""Wire shapes of the engagement domain: app request bodies (parsed by hand so that every error names its field,
as the rest of the API does), the OpenAPI models that document them, and JSON/CSV renderings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from callerid.display_text import storage_problem
from callerid.engagement.models import CmbConfig, CmbRequest, Survey, SurveyResponse
from callerid.engagement.questions import from_stored
from callerid.failures import InvalidInput
from callerid.openapi import PHONE_DESCRIPTION, PHONE_PATTERN
from callerid.timefmt import epoch_seconds_str, iso_z

# Limits of what a phone may send (no reference; generous for any real survey).
MAX_ANSWERS = 100
MAX_RESPONSE_LENGTH = 2000
MAX_EPOCH_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z

# --- app request bodies ------------------------------------------------------------------------------------


# What ``parse_call_me_back`` accepts for a slot bound: epoch seconds as an integer or a digit string, or null.
_EPOCH_SECONDS = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_SECONDS},
        {"type": "string", "pattern": "^[0-9]{1,12}$"},
        {"type": "null"},
    ]
}


class CallMeBackBody(BaseModel):
    """Documentation of ``POST /app/v1/call-me-back`` (the route parses the body itself)."""

    business_number: str = Field(
        description=f"the business number that called (as shown by the app): {PHONE_DESCRIPTION}",
        pattern=PHONE_PATTERN,
    )
    is_interested: bool = Field(description="false when the user declined the call back")
    preferred_from_time: int | str | None = Field(
        default=None,
        description="slot start, epoch seconds (required when interested and the slot picker is on)",
        json_schema_extra=_EPOCH_SECONDS,
    )
    preferred_to_time: int | str | None = Field(
        default=None, description="slot end, epoch seconds", json_schema_extra=_EPOCH_SECONDS
    )
    alternate_number: str | None = Field(
        default=None,
        description="number typed by the user; required when interested and client_number_available=false",
        json_schema_extra={"anyOf": [{"type": "string", "pattern": PHONE_PATTERN}, {"const": ""}, {"type": "null"}]},
    )
    client_number_available: bool | None = Field(
        default=True,
        description="false when the phone cannot read its SIM number ('Phone number not available'); "
        "absent or null: true",
    )

    # A slot is sent only when the configuration's slot picker is on (and must not be over); with it off, as here,
    # the next callback window of the configuration is used.
    model_config = {
        "json_schema_extra": {
            "example": {"business_number": "910987654321", "is_interested": True, "client_number_available": True}
        }
    }


# Not blank (and no NUL, which no database stores).
_TEXT_PATTERN = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"


class Answer(BaseModel):
    question: str = Field(description="a question of the survey, exactly as it reads", pattern=_TEXT_PATTERN)
    response: str = Field(
        description="the answer (ratings as text, e.g. `5`)", pattern=_TEXT_PATTERN, max_length=MAX_RESPONSE_LENGTH
    )


class SurveyAnswersBody(BaseModel):
    """Documentation of ``POST /app/v1/surveys/{survey_id}/responses``."""

    business_number: str = Field(
        description=f"the business number that called: {PHONE_DESCRIPTION}", pattern=PHONE_PATTERN
    )
    answers: list[Answer] = Field(
        description="answered questions (texts exactly as in the survey), each at most once",
        min_length=1,
        max_length=MAX_ANSWERS,
    )

    model_config = {
        "json_schema_extra": {
            "example": {
                "business_number": "910987654321",
                "answers": [
                    {"question": "How was the delivery experience?", "response": "5"},
                    {"question": "Anything else?", "response": "The flowers were fresh"},
                ],
            }
        }
    }


class Created(BaseModel):
    id: str


class QuestionDetail(BaseModel):
    question: str = Field(description="the question's text, as answers name it")
    kind: str = Field(
        description='`rating`: answer a whole number from `min` to `max` as a string (`"5"`); `choice`: answer one '
        "of `choices` exactly; `text`: free text"
    )
    min: int | None = Field(default=None, description="lowest rating (rating questions only)")
    max: int | None = Field(default=None, description="highest rating (rating questions only)")
    choices: list[str] | None = Field(default=None, description="the choices, in order (choice questions only)")


class SurveyOut(BaseModel):
    id: str
    name: str
    trigger: str = Field(description="answered, missed (missed or rejected call) or any")
    questions: list[str] = Field(description="the question texts in order (every kind; see question_details)")
    type: str = Field(description="`call_rating` (one rating question) or `questions`")
    question_details: list[QuestionDetail] = Field(description="the questions in order, with their kind")


class DownloadLink(BaseModel):
    url: str = Field(description="CSV download, no token needed, valid for 10 minutes")


@dataclass(frozen=True)
class CmbSubmission:
    business_number: str
    is_interested: bool
    preferred_from_time: int | None
    preferred_to_time: int | None
    alternate_number: str | None
    client_number_available: bool


@dataclass(frozen=True)
class SurveyAnswers:
    business_number: str
    answers: list[tuple[str, str]]


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise InvalidInput(f"{name} is required")
    if not isinstance(value, str):
        raise InvalidInput(f"{name} is invalid")
    return value


def _boolean(body: dict[str, Any], name: str, default: bool | None) -> bool:
    value = body.get(name)
    if value is None:
        if default is None:
            raise InvalidInput(f"{name} is required")
        return default
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} is invalid")
    return value


def _epoch_seconds(body: dict[str, Any], name: str) -> int | None:
    """An integer (or digit string, as the payloads show them) of epoch seconds; None when absent."""
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    # bool is an int in Python, and not a time; the bound is the last second a datetime can hold.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_EPOCH_SECONDS:
        return value
    raise InvalidInput(f"{name} is invalid")


def parse_call_me_back(body: dict[str, Any]) -> CmbSubmission:
    alternate = body.get("alternate_number")
    if alternate is not None and not isinstance(alternate, str):
        raise InvalidInput("alternate_number is invalid")
    return CmbSubmission(
        business_number=_string(body, "business_number"),
        is_interested=_boolean(body, "is_interested", None),
        preferred_from_time=_epoch_seconds(body, "preferred_from_time"),
        preferred_to_time=_epoch_seconds(body, "preferred_to_time"),
        alternate_number=alternate if alternate else None,
        client_number_available=_boolean(body, "client_number_available", True),
    )


def parse_survey_answers(body: dict[str, Any]) -> SurveyAnswers:
    business_number = _string(body, "business_number")
    raw = body.get("answers")
    if raw is None or raw == []:
        raise InvalidInput("answers is required")
    if not isinstance(raw, list) or len(raw) > MAX_ANSWERS:
        raise InvalidInput("answers is invalid")
    answers: list[tuple[str, str]] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidInput(f"answers[{index}] is invalid")
        question = item.get("question")
        if not isinstance(question, str) or not question.strip():
            raise InvalidInput(f"answers[{index}].question is invalid")
        response = item.get("response")
        # Responses are strings on the wire (SPEC §9.3); the app sends ratings as "5".
        if not isinstance(response, str) or not response.strip() or len(response) > MAX_RESPONSE_LENGTH:
            raise InvalidInput(f"answers[{index}].response is invalid")
        problem = storage_problem(response, f"answers[{index}].response")  # free text: only NUL is refused
        if problem is not None:
            raise InvalidInput(problem)
        answers.append((question.strip(), response))
    return SurveyAnswers(business_number=business_number, answers=answers)


# --- renderings ----------------------------------------------------------------------------------------------


def _seconds_or_none(value: Any) -> str | None:
    return None if value is None else epoch_seconds_str(value)


def cmb_payload(request: CmbRequest) -> dict[str, Any]:
    """``cmb_payload`` in the reference's field order (SPEC §9.3)."""
    return {
        "business_number": request.business_number,
        "feature_set": request.feature_set_name,
        "client_number": request.client_number,
        "requested_at": epoch_seconds_str(request.requested_at),
        "requested_date": request.requested_date,
        "requested_slot": request.requested_slot,
        "preferred_from_time": _seconds_or_none(request.preferred_from_time),
        "preferred_to_time": _seconds_or_none(request.preferred_to_time),
        "is_interested": request.is_interested,
        "alternate_number": request.alternate_number,
        "cmb_config_name": request.cmb_config_name,
    }


def survey_payload(response: SurveyResponse) -> dict[str, Any]:
    """``survey_payload`` (SPEC §9.3): answered questions in survey order."""
    return {
        "name": response.survey_name,
        "business_number": response.business_number,
        "feature_set": response.feature_set_name,
        "client_number": response.client_number,
        "requested_at": epoch_seconds_str(response.requested_at),
        "user_responses": [{"question": a["question"], "response": a["response"]} for a in response.answers],
    }


CMB_CSV_COLUMNS = (
    "business_number",
    "feature_set",
    "client_number",
    "alternate_number",
    "requested_at",
    "requested_date",
    "requested_slot",
    "preferred_from_time",
    "preferred_to_time",
    "is_interested",
    "cmb_config_name",
)
FEEDBACK_CSV_COLUMNS = (
    "survey_name",
    "business_number",
    "feature_set",
    "client_number",
    "requested_at",
    "question",
    "response",
)


def _csv_value(value: Any) -> str:
    # Values as in the JSON payloads: booleans lowercase, null empty.
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cmb_csv_row(request: CmbRequest) -> list[str]:
    payload = cmb_payload(request)
    return [_csv_value(payload[column]) for column in CMB_CSV_COLUMNS]


def feedback_csv_rows(response: SurveyResponse) -> list[list[str]]:
    requested_at = epoch_seconds_str(response.requested_at)
    return [
        [
            response.survey_name,
            response.business_number,
            response.feature_set_name,
            response.client_number,
            requested_at,
            answer["question"],
            answer["response"],
        ]
        for answer in response.answers
    ]


def survey_json(survey: Survey) -> dict[str, Any]:
    """What a phone is shown (GET /app/v1/surveys): ``questions`` stays the list of texts older apps read."""
    questions = [from_stored(value) for value in survey.questions]
    return {
        "id": str(survey.id),
        "name": survey.name,
        "trigger": survey.trigger,
        "questions": [question.text for question in questions],
        "type": survey.survey_type,
        "question_details": [question.wire() for question in questions],
    }


def cmb_config_json(config: CmbConfig) -> dict[str, Any]:
    return {
        "id": str(config.id),
        "feature_set_id": str(config.feature_set_id),
        "name": config.name,
        "slot_picker": config.slot_picker,
        "windows": list(config.windows),
        "updated_at": iso_z(config.updated_at),
    }
