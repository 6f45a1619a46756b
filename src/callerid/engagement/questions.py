"""Survey questions (SPEC §10.5): their kinds, the rules a survey's questions follow, how they are stored, and which
answers each kind takes. Pure functions over values: no database, no HTTP.

A question is a rating (a whole number from 1 to 5), a choice (one of its choices) or free text. Answers stay
strings on the wire whatever the kind (SPEC §9.3: ``response`` is always a string), so a rating is sent as ``"5"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from callerid.display_text import display_problem
from callerid.engagement.checks import MAX_QUESTION_LENGTH, MAX_QUESTIONS, EngagementError
from callerid.engagement.models import CALL_RATING
from callerid.failures import InvalidInput

RATING = "rating"
CHOICE = "choice"
TEXT = "text"
QUESTION_KINDS = (RATING, CHOICE, TEXT)
RATING_MIN = 1
RATING_MAX = 5
MIN_CHOICES = 2
MAX_CHOICES = 10
MAX_CHOICE_LENGTH = 100
# The question a Call Rating survey starts with (its text can be changed).
DEFAULT_RATING_QUESTION = "How would you rate this call?"
_RATINGS = frozenset(str(value) for value in range(RATING_MIN, RATING_MAX + 1))


@dataclass(frozen=True)
class Question:
    text: str
    kind: str = TEXT
    choices: tuple[str, ...] = ()

    def stored(self) -> dict[str, Any]:
        """The JSON kept in ``Survey.questions``."""
        value: dict[str, Any] = {"text": self.text, "kind": self.kind}
        if self.kind == CHOICE:
            value["choices"] = list(self.choices)
        return value

    def wire(self) -> dict[str, Any]:
        """What the app is told about the question (``question_details`` of GET /app/v1/surveys)."""
        value: dict[str, Any] = {"question": self.text, "kind": self.kind}
        if self.kind == RATING:
            value.update(min=RATING_MIN, max=RATING_MAX)
        elif self.kind == CHOICE:
            value["choices"] = list(self.choices)
        return value


def from_stored(value: Any) -> Question:
    """A stored question; a bare string is a question written before kinds existed (free text)."""
    if isinstance(value, str):
        return Question(value)
    return Question(str(value["text"]), str(value.get("kind", TEXT)), tuple(value.get("choices") or ()))


def _problem(message: str, field: str) -> EngagementError:
    return EngagementError(message, field=field)


def _check_choices(question: Question, number: int, field: str) -> tuple[str, ...]:
    if question.kind != CHOICE:
        if question.choices:
            raise _problem(f"question {number} is not a choice question and has no choices", field)
        return ()
    choices = tuple(choice.strip() for choice in question.choices)
    if not MIN_CHOICES <= len(choices) <= MAX_CHOICES:
        raise _problem(f"question {number} needs {MIN_CHOICES}-{MAX_CHOICES} choices", field)
    for choice in choices:
        if not 1 <= len(choice) <= MAX_CHOICE_LENGTH:
            raise _problem(f"question {number} choices must be 1-{MAX_CHOICE_LENGTH} characters", field)
        problem = display_problem(choice, f"question {number} choices")
        if problem is not None:
            raise _problem(problem, field)
    if len({choice.casefold() for choice in choices}) != len(choices):
        raise _problem(f"question {number} choices must be different from each other", field)
    return choices


def check_questions(questions: Sequence[str | Question], survey_type: str) -> list[Question]:
    """The questions as stored: trimmed and checked, in order. Plain strings are free-text questions, or the
    rating question of a Call Rating survey, which has exactly one question, a rating (made for it when none is
    given). Errors name the field: ``questions``, ``questions[<i>].text``, ``.kind`` or ``.choices``."""
    given = [
        Question(q, RATING if survey_type == CALL_RATING else TEXT) if isinstance(q, str) else q for q in questions
    ]
    if survey_type == CALL_RATING:
        if not given:
            given = [Question(DEFAULT_RATING_QUESTION, RATING)]
        if len(given) != 1:
            raise _problem("a Call Rating survey has exactly one question", "questions")
        if given[0].kind != RATING:
            raise _problem("the question of a Call Rating survey is a rating", "questions[0].kind")
    if not 1 <= len(given) <= MAX_QUESTIONS:
        raise _problem(f"a survey needs 1-{MAX_QUESTIONS} questions", "questions")
    checked: list[Question] = []
    seen: set[str] = set()
    for index, question in enumerate(given):
        number, field = index + 1, f"questions[{index}]"
        text = question.text.strip()
        if not 1 <= len(text) <= MAX_QUESTION_LENGTH:
            raise _problem(f"questions must be 1-{MAX_QUESTION_LENGTH} characters", f"{field}.text")
        problem = display_problem(text, f"question {number}")
        if problem is not None:
            raise _problem(problem, f"{field}.text")
        if text in seen:
            raise _problem("questions must be different from each other", f"{field}.text")
        seen.add(text)
        if question.kind not in QUESTION_KINDS:
            raise _problem(f"question {number} kind must be one of {', '.join(QUESTION_KINDS)}", f"{field}.kind")
        choices = _check_choices(question, number, f"{field}.choices")
        checked.append(Question(text, question.kind, choices))
    return checked


def parse_question_spec(raw: str) -> Question:
    """The CLI's ``--question``: ``How was it?`` (free text, or the rating of a Call Rating survey), or with a kind
    first: ``rating:How was the delivery?``, ``text:Anything else?``, ``choice:Flower quality?|Good|Fine|Poor``."""
    kind, separator, rest = raw.partition(":")
    kind = kind.strip().lower()
    if not separator or kind not in QUESTION_KINDS:
        return Question(raw)
    if kind != CHOICE:
        return Question(rest, kind)
    text, *choices = rest.split("|")
    return Question(text, CHOICE, tuple(choices))


def check_answer(question: Question, response: str, field: str) -> str:
    """The response as stored: a rating must be a whole number from 1 to 5 and a choice one of the question's
    choices (as the question spells it); free text is kept as sent."""
    if question.kind == RATING:
        value = response.strip()
        if value not in _RATINGS:
            raise InvalidInput(f"{field} must be a rating from {RATING_MIN} to {RATING_MAX}", field=field)
        return value
    if question.kind == CHOICE:
        value = response.strip()
        if value not in question.choices:
            raise InvalidInput(f"{field} must be one of the choices of its question", field=field)
        return value
    return response
