"""Engagement rules: Call Me Back configs and requests, surveys and their answers, CMB/UF log exports.

A request from a phone is checked against the business number's listed feature set, stored, and turned into one
webhook event per subscribed webhook in the same transaction (SPEC §9.2), so that the stored data, the events and
their queued deliveries commit together. Data is kept when no webhook is subscribed: the exports read it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.accounts import service as accounts
from callerid.config import Settings
from callerid.db import Database
from callerid.delivery.service import DeviceInfo
from callerid.display_text import display_problem
from callerid.engagement.models import (
    EXPORT_CMB,
    EXPORT_FEEDBACK,
    CmbConfig,
    CmbRequest,
    ExportFile,
    Survey,
    SurveyResponse,
)
from callerid.engagement.schemas import (
    CMB_CSV_COLUMNS,
    FEEDBACK_CSV_COLUMNS,
    CmbSubmission,
    SurveyAnswers,
    cmb_csv_row,
    cmb_payload,
    feedback_csv_rows,
    survey_payload,
)
from callerid.engagement.windows import DEFAULT_WINDOWS, next_window, parse_window
from callerid.failures import Conflict, InvalidInput, NotFound
from callerid.numbers.service import ListedNumber, feature_set_of, listed_number
from callerid.phone import normalise_phone
from callerid.webhooks.payloads import envelope
from callerid.webhooks.service import emit_event

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


# --- Call Me Back configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectiveCmbConfig:
    name: str
    slot_picker: bool
    windows: list[dict[str, str]]


DEFAULT_CMB_CONFIG = EffectiveCmbConfig(DEFAULT_CMB_CONFIG_NAME, False, DEFAULT_WINDOWS)


def parse_windows(texts: Sequence[str]) -> list[dict[str, str]]:
    """CLI/console window texts (``Saturday 12:30-13:00``), checked; EngagementError names the bad one."""
    try:
        return [parse_window(text) for text in texts]
    except ValueError as exc:
        raise EngagementError(str(exc)) from None


async def set_cmb_config(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    feature_set_id: uuid.UUID,
    name: str | None = None,
    slot_picker: bool | None = None,
    windows: list[dict[str, str]] | None = None,
) -> CmbConfig:
    """Create or change the Call Me Back config of a feature set that has Call Me Back enabled.

    Omitted values keep their current value (on creation: name "Call Me Back", no slot picker, Monday-Saturday
    30-minute windows 10:00-18:00).
    """
    feature_set = await _feature_set_in_account(session, account_id, feature_set_id)
    if not feature_set.call_me_back:
        raise EngagementError(f"call me back is not enabled on feature set {feature_set_id}")
    if name is not None:
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise EngagementError("cmb config name must be 1-100 characters")
        _check_displayable(name, "cmb config name")
    if windows is not None and not windows:
        raise EngagementError("at least one callback window is needed")
    now = clock.now()
    config = (
        await session.execute(select(CmbConfig).where(CmbConfig.feature_set_id == feature_set_id))
    ).scalar_one_or_none()
    if config is None:
        config = CmbConfig(
            id=uuid.uuid4(),
            account_id=account_id,
            feature_set_id=feature_set_id,
            name=name or DEFAULT_CMB_CONFIG_NAME,
            slot_picker=bool(slot_picker),
            windows=windows or list(DEFAULT_WINDOWS),
            created_at=now,
            updated_at=now,
        )
        session.add(config)
    else:
        if name is not None:
            config.name = name
        if slot_picker is not None:
            config.slot_picker = slot_picker
        if windows is not None:
            config.windows = windows
        config.updated_at = now
    await session.flush()
    return config


async def cmb_config_of(session: AsyncSession, account_id: uuid.UUID, feature_set_id: uuid.UUID) -> CmbConfig:
    await _feature_set_in_account(session, account_id, feature_set_id)
    config = (
        await session.execute(select(CmbConfig).where(CmbConfig.feature_set_id == feature_set_id))
    ).scalar_one_or_none()
    if config is None:
        raise EngagementError(f"feature set {feature_set_id} has no call me back config")
    return config


async def _effective_cmb_config(session: AsyncSession, feature_set_id: uuid.UUID) -> EffectiveCmbConfig:
    """The feature set's config; the defaults for a set enabled without one (e.g. by an older console)."""
    config = (
        await session.execute(select(CmbConfig).where(CmbConfig.feature_set_id == feature_set_id))
    ).scalar_one_or_none()
    if config is None:
        return DEFAULT_CMB_CONFIG
    return EffectiveCmbConfig(config.name, config.slot_picker, list(config.windows))


# --- Call Me Back requests -------------------------------------------------------------------------------------


def _epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _chosen_slot(submission: CmbSubmission, now: datetime, settings: Settings) -> tuple[datetime, datetime]:
    """The slot picked on the phone, checked: both bounds, from < to, at most a day long, not over yet (allowing
    the phone's clock to lag by ``cmb_slot_skew_seconds``), and not further ahead than ``cmb_slot_horizon_days``.
    """
    if submission.preferred_from_time is None:
        raise InvalidInput("preferred_from_time is required")
    if submission.preferred_to_time is None:
        raise InvalidInput("preferred_to_time is required")
    start, end = _epoch(submission.preferred_from_time), _epoch(submission.preferred_to_time)
    if start > now + timedelta(days=settings.cmb_slot_horizon_days):
        raise InvalidInput("preferred_from_time is invalid: too far ahead")
    if end <= start or end - start > MAX_SLOT:
        raise InvalidInput("preferred_to_time is invalid: must be after preferred_from_time, at most 1 day later")
    if end <= now - timedelta(seconds=settings.cmb_slot_skew_seconds):
        raise InvalidInput("preferred_to_time is invalid: the slot is over")
    return start, end


async def submit_call_me_back(
    session: AsyncSession, settings: Settings, *, device: DeviceInfo, submission: CmbSubmission
) -> tuple[CmbRequest, list[uuid.UUID]]:
    """Store a call-back request from ``device`` and emit its ``cmb`` events; returns the request and event ids.

    Refusals: business number invalid (400) / not listed (404); Call Me Back off for its feature set or account
    (409); slot or alternate number unusable (400). With the slot picker off, the slot sent by the phone (if any)
    is ignored and the config's next window is used (SPEC §12 #35); when not interested there is no slot.
    """
    listed = await _listed_for_app(session, submission.business_number)
    if not await _feature_enabled(session, listed, "call_me_back"):
        raise Conflict("call me back is not enabled for business_number")
    config = await _effective_cmb_config(session, listed.feature_set_id)
    zone = await _account_zone(session, listed.account_id)
    # The request time as reported (whole seconds), so that CMB's from/to select what the payload shows.
    now = clock.now().replace(microsecond=0)

    alternate = ""
    if submission.alternate_number is not None:
        normalised = normalise_phone(submission.alternate_number)
        if normalised is None:
            raise InvalidInput("alternate_number is invalid")
        alternate = normalised
    if submission.is_interested and not submission.client_number_available and not alternate:
        raise InvalidInput("alternate_number is required when client_number_available is false")

    slot: tuple[datetime, datetime] | None = None
    if submission.is_interested:
        slot = _chosen_slot(submission, now, settings) if config.slot_picker else next_window(config.windows, now, zone)
    if slot is None:
        requested_date = requested_slot = NA
    else:
        local_start = slot[0].astimezone(zone)
        requested_date = local_start.strftime("%Y-%m-%d")
        requested_slot = local_start.strftime("%A")

    request = CmbRequest(
        id=uuid.uuid4(),
        account_id=listed.account_id,
        feature_set_id=listed.feature_set_id,
        business_number=listed.phone_number,
        feature_set_name=listed.feature_set_name,
        client_number=device.phone_number if submission.client_number_available else NOT_AVAILABLE,
        alternate_number=alternate,
        requested_at=now,
        requested_date=requested_date,
        requested_slot=requested_slot,
        preferred_from_time=slot[0] if slot else None,
        preferred_to_time=slot[1] if slot else None,
        is_interested=submission.is_interested,
        cmb_config_name=config.name,
    )
    session.add(request)
    await session.flush()
    body = cmb_payload(request)
    event_ids = await emit_event(
        session,
        account_id=listed.account_id,
        event_type="cmb",
        payload_for=lambda event_id: envelope(
            event_id=event_id, account_id=listed.account_id, event_type="cmb", created_at=now, body=body
        ),
    )
    return request, event_ids


# --- surveys ----------------------------------------------------------------------------------------------------


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
        payload_for=lambda event_id: envelope(
            event_id=event_id, account_id=survey.account_id, event_type="user_feedback", created_at=now, body=body
        ),
    )
    return response, event_ids


# --- log exports (CMB, UF) --------------------------------------------------------------------------------------


def _epoch_ms_param(raw: str | None, name: str, *, required: bool) -> datetime | None:
    if raw is None or raw == "":
        if required:
            raise InvalidInput(f"{name} is required")
        return None
    # Length first: int() of a very long digit string is slow (and refused beyond 4300 digits).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15 or int(raw) > _MAX_EPOCH_MS:
        raise InvalidInput(f"{name} is invalid")
    return datetime.fromtimestamp(int(raw) / 1000, UTC)


def cmb_range(from_raw: str | None, to_raw: str | None) -> tuple[datetime, datetime]:
    """CMB's ``from``/``to`` (SPEC §5.10): required epoch-ms digit strings, from <= to (else ``to is invalid``)."""
    start = _epoch_ms_param(from_raw, "from", required=True)
    end = _epoch_ms_param(to_raw, "to", required=True)
    assert start is not None and end is not None
    if start > end:
        raise InvalidInput("to is invalid")
    return start, end


def _date_param(raw: str | None, name: str, zone: ZoneInfo, *, end_of_day: bool) -> datetime | None:
    """Epoch-ms digits, or ``YYYY-MM-DD`` = start (``from_date``) / end (``to_date``) of that day in ``zone``."""
    if raw is None or raw == "" or not _DATE.match(raw):
        return _epoch_ms_param(raw, name, required=False)
    try:
        day = date.fromisoformat(raw)
        if end_of_day:
            # The last microsecond of the day, so that the range stays inclusive like CMB's.
            return datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC) - timedelta(microseconds=1)
        return datetime.combine(day, time(), zone).astimezone(UTC)
    except (ValueError, OverflowError):  # not a date, or a day at the very edge of what a datetime holds
        raise InvalidInput(f"{name} is invalid") from None


async def feedback_range(
    session: AsyncSession, account_id: uuid.UUID, from_raw: str | None, to_raw: str | None
) -> tuple[datetime, datetime]:
    """UF's ``from_date`` (required) and ``to_date`` (default now), SPEC §5.11; from <= to."""
    zone = await _account_zone(session, account_id)
    start = _date_param(from_raw, "from_date", zone, end_of_day=False)
    if start is None:
        raise InvalidInput("from_date is required")
    end = _date_param(to_raw, "to_date", zone, end_of_day=True) or clock.now()
    if start > end:
        raise InvalidInput("to_date is invalid")
    return start, end


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _issue_export(
    session: AsyncSession, settings: Settings, *, account_id: uuid.UUID, kind: str, params: dict[str, Any]
) -> str:
    now = clock.now()
    # Expired links are useless; dropping them here keeps the table small without a periodic job.
    await session.execute(delete(ExportFile).where(ExportFile.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session.add(
        ExportFile(
            token_hash=_hash(token),
            account_id=account_id,
            kind=kind,
            params=params,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.export_link_ttl_seconds),
        )
    )
    await session.flush()
    return token


def _range_params(start: datetime, end: datetime) -> dict[str, Any]:
    # The range never reaches past the issue time: the file then holds what existed when the link was issued.
    end = min(end, clock.now())
    return {"from_us": int(start.timestamp() * 1_000_000), "to_us": int(end.timestamp() * 1_000_000)}


def _from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


async def issue_cmb_export(
    session: AsyncSession, settings: Settings, *, account_id: uuid.UUID, start: datetime, end: datetime
) -> str:
    """A download token for the account's CMB requests in [start, end]; 404 ``No CMB found`` when there is none."""
    params = _range_params(start, end)
    found = await session.scalar(
        select(func.count())
        .select_from(CmbRequest)
        .where(
            CmbRequest.account_id == account_id,
            CmbRequest.requested_at >= _from_us(params["from_us"]),
            CmbRequest.requested_at <= _from_us(params["to_us"]),
        )
    )
    if not found:
        raise NothingInRange(NO_CMB)
    return await _issue_export(session, settings, account_id=account_id, kind=EXPORT_CMB, params=params)


async def issue_feedback_export(
    session: AsyncSession,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    survey_id: uuid.UUID,
    start: datetime,
    end: datetime,
) -> str:
    """A download token for a survey's answers in [start, end]; unknown/foreign survey 404, none 404 message."""
    survey = await session.get(Survey, survey_id)
    if survey is None or survey.account_id != account_id:
        raise NotFound("survey not found")
    params = {**_range_params(start, end), "survey_id": str(survey_id)}
    found = await session.scalar(
        select(func.count())
        .select_from(SurveyResponse)
        .where(
            SurveyResponse.survey_id == survey_id,
            SurveyResponse.requested_at >= _from_us(params["from_us"]),
            SurveyResponse.requested_at <= _from_us(params["to_us"]),
        )
    )
    if not found:
        raise NothingInRange(NO_FEEDBACK)
    return await _issue_export(session, settings, account_id=account_id, kind=EXPORT_FEEDBACK, params=params)


@dataclass(frozen=True)
class Download:
    account_id: uuid.UUID
    kind: str
    params: dict[str, Any]
    created_at: datetime

    @property
    def filename(self) -> str:
        stamp = self.created_at.strftime("%Y%m%dT%H%M%SZ")
        prefix = "callback-logs" if self.kind == EXPORT_CMB else "feedback"
        return f"{prefix}-{stamp}.csv"


async def find_download(session: AsyncSession, token: str) -> Download:
    """The live export behind a download token; 404 when unknown or expired."""
    export = await session.get(ExportFile, _hash(token))
    if export is None or export.expires_at <= clock.now():
        raise NotFound()
    return Download(export.account_id, export.kind, dict(export.params), export.created_at)


def _csv_line(row: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(row)
    return buffer.getvalue()


# Rows fetched per round trip while streaming a file.
_STREAM_BATCH = 1000


async def csv_lines(db: Database, download: Download) -> AsyncIterator[str]:
    """The CSV of an export, header first, streamed from the database in batches (RFC 4180, CRLF)."""
    start, end = _from_us(download.params["from_us"]), _from_us(download.params["to_us"])
    if download.kind == EXPORT_CMB:
        yield _csv_line(CMB_CSV_COLUMNS)
        query = (
            select(CmbRequest)
            .where(
                CmbRequest.account_id == download.account_id,
                CmbRequest.requested_at >= start,
                CmbRequest.requested_at <= end,
            )
            .order_by(CmbRequest.requested_at, CmbRequest.id)
        )
        async with db.session() as session:
            result = await session.stream_scalars(query.execution_options(yield_per=_STREAM_BATCH))
            async for request in result:
                yield _csv_line(cmb_csv_row(request))
        return
    yield _csv_line(FEEDBACK_CSV_COLUMNS)
    query_uf = (
        select(SurveyResponse)
        .where(
            SurveyResponse.survey_id == uuid.UUID(download.params["survey_id"]),
            SurveyResponse.account_id == download.account_id,
            SurveyResponse.requested_at >= start,
            SurveyResponse.requested_at <= end,
        )
        .order_by(SurveyResponse.requested_at, SurveyResponse.id)
    )
    async with db.session() as session:
        result_uf = await session.stream_scalars(query_uf.execution_options(yield_per=_STREAM_BATCH))
        async for response in result_uf:
            for row in feedback_csv_rows(response):
                yield _csv_line(row)
