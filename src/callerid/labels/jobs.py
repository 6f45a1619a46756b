"""Background work of the labels domain: logos no label references any more are deleted (rows, then the S3
store's objects no row names).

A logo row is written in the same transaction as the label that references it (``labels.logos``), and the label's
foreign key keeps a referenced logo. A logo becomes unreferenced when its last label goes (an account deleted with
its labels, an operator's clean-up); this purge then deletes it. It leaves logos younger than ``GRACE`` (a label
being made now may be about to reference one) and, on PostgreSQL, rows another transaction holds (``FOR UPDATE SKIP
LOCKED``; creating a label with an image already stored locks its row, see ``logos._upsert``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, exists, select

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs import JobContext, RetryLater, handler
from callerid.jobs.purge import CONTINUE_AFTER, Purge, PurgeRun, purge, retention_every
from callerid.labels.logos import logo_store
from callerid.labels.models import Label, LabelLogo

log = structlog.get_logger("callerid.retention")

_LOGOS, _LABELS = LabelLogo.__table__, Label.__table__
GRACE = timedelta(hours=1)


def _logo_cutoffs(_settings: Settings, now: datetime) -> dict[str, Any]:
    return {"logo_made_before": now - GRACE}


# label_logos.created_at is indexed; the NOT EXISTS probes ix_labels_logo_key. The table holds one row per distinct
# image, so a run reads little even when nothing is to go.
_UNREFERENCED = ~exists(select(_LABELS.c.id).where(_LABELS.c.logo_key == _LOGOS.c.key)) & (
    _LOGOS.c.created_at < bindparam("logo_made_before")
)
LOGO_PURGES = (Purge("unreferenced_logos", _LOGOS, _UNREFERENCED, _logo_cutoffs),)


async def purge_logos_now(db: Database, settings: Settings, *, now: datetime | None = None) -> PurgeRun:
    """The rows of unreferenced logos (in chunks, within the time budget), then, when they are all gone, the objects
    the S3 store keeps for rows that are gone (``LogoStore.sweep``)."""
    now = now or clock.now()
    run = await purge(db, settings, LOGO_PURGES, now=now)
    if run.finished:
        run.deleted["logo_objects"] = await logo_store(settings).sweep(db, older_than=now - GRACE)
    return run


@handler("labels.purge_logos", every=retention_every)
async def purge_logos(ctx: JobContext, _payload: dict[str, Any]) -> None:
    run = await purge_logos_now(ctx.db, ctx.settings)
    if run.total:
        log.info("retention_purged", deleted=run.deleted, statements=run.statements, finished=run.finished)
    if not run.finished:
        raise RetryLater(delay=CONTINUE_AFTER)
