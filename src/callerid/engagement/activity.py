"""Call Me Back requests and survey answers as the console shows them (issue 11 §6): tables over a date range, and
their CSV, which is the CMB / UF export's own (SPEC §5.10, §5.11): the same columns, rows, order and bytes.

An owner sees the rows of the feature sets in their subtree only: the callers pass the feature sets (CMB) or
surveys (answers) the viewer may see, ``None`` for the whole account. Read-only, free of HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import false, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from callerid import clock
from callerid.db import Database
from callerid.engagement.exports import _STREAM_BATCH, Download, _csv_line, _from_us, _range_params, csv_lines
from callerid.engagement.models import EXPORT_CMB, EXPORT_FEEDBACK, CmbRequest, Survey, SurveyResponse
from callerid.engagement.schemas import CMB_CSV_COLUMNS, FEEDBACK_CSV_COLUMNS, cmb_csv_row, feedback_csv_rows

# From ``exports`` above: the export's own pieces (its range rule: ending no later than now, in microseconds; its CSV
# line; its stream), so that these files cannot drift from CMB's and UF's.


def _within(column: Any, ids: Collection[uuid.UUID] | None) -> list[ColumnElement[bool]]:
    """``column IN ids``; nothing for ``None`` (the whole account), a false condition for no ids."""
    if ids is None:
        return []
    return [column.in_(list(ids))] if ids else [false()]


def _export(account_id: uuid.UUID, kind: str, start: datetime, end: datetime, **params: str) -> Download:
    """The export CMB / UF would hand out for this range now (``[start, end]``, ending no later than now)."""
    return Download(account_id, kind, {**_range_params(start, end), **params}, clock.now())


def _range_of(export: Download) -> tuple[datetime, datetime]:
    return _from_us(export.params["from_us"]), _from_us(export.params["to_us"])


# --- Call Me Back requests --------------------------------------------------------------------------------------


def _cmb_where(
    account_id: uuid.UUID, start: datetime, end: datetime, feature_set_ids: Collection[uuid.UUID] | None
) -> list[ColumnElement[bool]]:
    return [
        CmbRequest.account_id == account_id,
        CmbRequest.requested_at >= start,
        CmbRequest.requested_at <= end,
        *_within(CmbRequest.feature_set_id, feature_set_ids),
    ]


async def list_cmb_requests(
    session: AsyncSession,
    account_id: uuid.UUID,
    start: datetime,
    end: datetime,
    *,
    feature_set_ids: Collection[uuid.UUID] | None,
    limit: int,
    offset: int = 0,
) -> tuple[list[CmbRequest], int]:
    """The account's CMB requests made in ``[start, end]`` (of ``feature_set_ids`` only, unless None), newest first,
    and how many there are (``ix_cmb_requests_account_requested``)."""
    where = _cmb_where(account_id, start, end, feature_set_ids)
    total = await session.scalar(select(func.count()).select_from(CmbRequest).where(*where)) or 0
    if total <= offset:
        return [], total
    query = (
        select(CmbRequest)
        .where(*where)
        .order_by(CmbRequest.requested_at.desc(), CmbRequest.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await session.scalars(query)).all()), total


async def cmb_csv(
    db: Database,
    account_id: uuid.UUID,
    start: datetime,
    end: datetime,
    *,
    feature_set_ids: Collection[uuid.UUID] | None,
) -> AsyncIterator[str]:
    """The CSV of CMB for ``[start, end]``: for the whole account the export's own stream, byte for byte; for some
    feature sets the same file with only their rows."""
    export = _export(account_id, EXPORT_CMB, start, end)
    if feature_set_ids is None:
        async for line in csv_lines(db, export):
            yield line
        return
    yield _csv_line(CMB_CSV_COLUMNS)
    query = (
        select(CmbRequest)
        .where(*_cmb_where(account_id, *_range_of(export), feature_set_ids))
        .order_by(CmbRequest.requested_at, CmbRequest.id)  # the export's order
    )
    async with db.session() as session:
        result = await session.stream_scalars(query.execution_options(yield_per=_STREAM_BATCH))
        async for request in result:
            yield _csv_line(cmb_csv_row(request))


# --- surveys and their answers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SurveyChoice:
    """A survey as a filter offers it."""

    id: uuid.UUID
    name: str
    feature_set_id: uuid.UUID


async def account_surveys(session: AsyncSession, account_id: uuid.UUID) -> list[SurveyChoice]:
    """Every survey of the account, by name."""
    rows = await session.execute(
        select(Survey.id, Survey.name, Survey.feature_set_id)
        .where(Survey.account_id == account_id)
        .order_by(Survey.name, Survey.id)
    )
    return [SurveyChoice(row.id, row.name, row.feature_set_id) for row in rows.all()]


def _answers_where(
    account_id: uuid.UUID, start: datetime, end: datetime, survey_ids: Collection[uuid.UUID] | None
) -> list[ColumnElement[bool]]:
    return [
        SurveyResponse.account_id == account_id,
        SurveyResponse.requested_at >= start,
        SurveyResponse.requested_at <= end,
        *_within(SurveyResponse.survey_id, survey_ids),
    ]


async def list_survey_responses(
    session: AsyncSession,
    account_id: uuid.UUID,
    start: datetime,
    end: datetime,
    *,
    survey_ids: Collection[uuid.UUID] | None,
    limit: int,
    offset: int = 0,
) -> tuple[list[SurveyResponse], int]:
    """The account's survey responses (each with its answers) given in ``[start, end]`` to ``survey_ids`` (every
    survey when None), newest first, and how many there are."""
    where = _answers_where(account_id, start, end, survey_ids)
    total = await session.scalar(select(func.count()).select_from(SurveyResponse).where(*where)) or 0
    if total <= offset:
        return [], total
    query = (
        select(SurveyResponse)
        .where(*where)
        .order_by(SurveyResponse.requested_at.desc(), SurveyResponse.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await session.scalars(query)).all()), total


async def answers_csv(
    db: Database,
    account_id: uuid.UUID,
    start: datetime,
    end: datetime,
    *,
    survey_ids: Collection[uuid.UUID] | None,
) -> AsyncIterator[str]:
    """The CSV of UF for ``[start, end]``: for one survey the export's own stream, byte for byte; for several (or
    every) survey the same file with each one's rows, in the export's order."""
    if survey_ids is not None and len(survey_ids) == 1:
        (survey_id,) = survey_ids
        async for line in csv_lines(db, _export(account_id, EXPORT_FEEDBACK, start, end, survey_id=str(survey_id))):
            yield line
        return
    export = _export(account_id, EXPORT_FEEDBACK, start, end)
    yield _csv_line(FEEDBACK_CSV_COLUMNS)
    query = (
        select(SurveyResponse)
        .where(*_answers_where(account_id, *_range_of(export), survey_ids))
        .order_by(SurveyResponse.requested_at, SurveyResponse.id)  # the export's order
    )
    async with db.session() as session:
        result = await session.stream_scalars(query.execution_options(yield_per=_STREAM_BATCH))
        async for response in result:
            for row in feedback_csv_rows(response):
                yield _csv_line(row)
