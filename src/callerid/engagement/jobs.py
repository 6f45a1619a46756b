"""Background work of the engagement domain: retention of Call Me Back requests, survey answers and export links.

CMB and UF exports (SPEC §5.10, §5.11) read requests and answers by date range, so those are kept for
``cmb_request_retention_days`` / ``survey_response_retention_days`` (90 days by default). An export link is only a
row (its CSV is written while it is downloaded), deleted once it expired.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam

from callerid.config import Settings
from callerid.engagement.models import CmbRequest, ExportFile, SurveyResponse
from callerid.jobs import JobContext, handler
from callerid.jobs.purge import Purge, retention_every, run_purges

_REQUESTS = CmbRequest.__table__
_ANSWERS = SurveyResponse.__table__
_EXPORTS = ExportFile.__table__


def _cutoffs(settings: Settings, now: datetime) -> dict[str, Any]:
    return {
        "requested_before": now - timedelta(days=settings.cmb_request_retention_days),
        "answered_before": now - timedelta(days=settings.survey_response_retention_days),
        "now": now,
    }


# ix_cmb_requests_requested_at, ix_survey_responses_requested_at and ix_export_files_expires_at serve these.
ENGAGEMENT_PURGES = (
    Purge("cmb_requests", _REQUESTS, _REQUESTS.c.requested_at < bindparam("requested_before"), _cutoffs),
    Purge("survey_responses", _ANSWERS, _ANSWERS.c.requested_at < bindparam("answered_before"), _cutoffs),
    Purge("export_files", _EXPORTS, _EXPORTS.c.expires_at <= bindparam("now"), _cutoffs),
)


@handler("engagement.purge", every=retention_every)
async def purge_engagement(ctx: JobContext, _payload: dict[str, Any]) -> None:
    await run_purges(ctx, ENGAGEMENT_PURGES)
