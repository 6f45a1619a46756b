"""What Call Me Back, surveys and exports share: the business number a phone talks about, its feature set,
the account's time zone, the domain's errors and limits.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from callerid.accounts import service as accounts
from callerid.display_text import display_problem
from callerid.failures import InvalidInput, NotFound
from callerid.numbers.service import ListedNumber, feature_set_of, listed_number
from callerid.phone import normalise_phone

NOT_AVAILABLE = "Phone number not available"
NA = "NA"
DEFAULT_CMB_CONFIG_NAME = "Call Me Back"
SURVEY_TRIGGERS = ("answered", "missed", "any")
MAX_QUESTIONS = 50
MAX_QUESTION_LENGTH = 500
# Longest slot a phone may pick; the reference's slots are 30 minutes.
MAX_SLOT = timedelta(days=1)
# Upper bound of epoch-ms parameters: 9999-12-31, the last instant a datetime can hold.
_MAX_EPOCH_MS = 253_402_300_799_999
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

NO_CMB = "No CMB found for client Id"
NO_FEEDBACK = "No feedback found for survey Id"


class EngagementError(InvalidInput):
    """A rule broken while configuring CMB or surveys (the CLI shows the message)."""


class NothingInRange(NotFound):
    """No CMB request, or no answer to the survey, in the range asked for. The deprecated log APIs answer it with
    a bare ``{"message": ...}`` (SPEC §5.10, §5.11), which their routes build."""


def _check_displayable(text: str, field: str) -> None:
    """Config names, survey names and questions are shown on phones (callerid.display_text)."""
    problem = display_problem(text, field)
    if problem is not None:
        raise EngagementError(problem)


# --- the business number a phone talks about -------------------------------------------------------------


async def _listed_for_app(session: AsyncSession, raw: str) -> ListedNumber:
    number = normalise_phone(raw)
    if number is None:
        raise InvalidInput("business_number is invalid")
    listed = await listed_number(session, number)
    if listed is None:
        raise NotFound("business_number is not a listed number")
    return listed


async def _feature_enabled(session: AsyncSession, listed: ListedNumber, feature: str) -> bool:
    """The feature set enables it and the account is subscribed to it."""
    flag = listed.call_me_back if feature == "call_me_back" else listed.survey
    if not flag:
        return False
    account = await accounts.get_account(session, listed.account_id)
    return feature in (account.features or [])


async def _account_zone(session: AsyncSession, account_id: uuid.UUID) -> ZoneInfo:
    account = await accounts.get_account(session, account_id)
    return ZoneInfo(account.timezone)


async def _feature_set_in_account(session: AsyncSession, account_id: uuid.UUID, feature_set_id: uuid.UUID) -> Any:
    try:
        return await feature_set_of(session, account_id, feature_set_id)
    except NotFound:
        raise EngagementError(f"feature set {feature_set_id} not found in this account") from None
