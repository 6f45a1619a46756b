"""The CMB and UF log exports (SPEC §5.10-5.11): date ranges, one-time download links and the CSV stream."""

from __future__ import annotations

import csv
import hashlib
import io
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
from callerid.config import Settings
from callerid.db import Database
from callerid.engagement.checks import _DATE, _MAX_EPOCH_MS, NO_CMB, NO_FEEDBACK, NothingInRange, _account_zone
from callerid.engagement.models import (
    EXPORT_CMB,
    EXPORT_FEEDBACK,
    CmbRequest,
    ExportFile,
    Survey,
    SurveyResponse,
)
from callerid.engagement.schemas import (
    CMB_CSV_COLUMNS,
    FEEDBACK_CSV_COLUMNS,
    cmb_csv_row,
    feedback_csv_rows,
)
from callerid.failures import InvalidInput, NotFound


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
