"""Blocked attempts under secure branding (issue 13): a lookup of a listed number whose feature set shows its identity
only for pre-announced calls, made without a call record for that receiver, is a possible spoofed call.

The lookup answers it as unverified, exactly as for an unknown number, and records it here: a ``blocked_attempts``
row (no receiver's number: the raw fact holds only the business's side) and the ``blocked`` count of the day's
figures, in one write of two statements, so the count equals a recount of the rows while they are kept and stays
when the rows are purged (``BLOCKED_PURGES``, ``blocked_attempt_retention_days``). Only the blocked path pays for
this: the account's timezone (the figures' day, as every writer of figures takes it: ``analytics.counting``) is
read here, once per process, not on every lookup.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert

from callerid.analytics.counting import account_timezone
from callerid.analytics.models import NO_NUMBER, BlockedAttempt
from callerid.analytics.tally import FiguresKey, Tally, day_in
from callerid.config import Settings
from callerid.db import Database
from callerid.db.write import Step
from callerid.jobs.purge import Purge
from callerid.numbers.queries import ListedIdentity
from callerid.ops.metrics import BLOCKED_ATTEMPTS
from callerid.phone import normalise_phone

_BLOCKED = BlockedAttempt.__table__
_INSERT_BLOCKED = insert(_BLOCKED)  # built once (the writer compiles it once)


async def record_blocked_attempt(db: Database, listed: ListedIdentity, business_number: str, at: datetime) -> None:
    """Record one lookup of ``business_number`` that secure branding refused at ``at``: the raw row and its
    figures' count commit together."""
    timezone = await account_timezone(db, listed.account_id)
    number = int(normalise_phone(business_number) or NO_NUMBER)  # listed, so it normalises
    tally = Tally()
    key = FiguresKey(listed.account_id, day_in(timezone, at), listed.label_id, listed.feature_set_id, number)
    tally.add(key, "blocked")
    row = {
        "id": uuid.uuid4(),
        "account_id": listed.account_id,
        "feature_set_id": listed.feature_set_id,
        "label_id": listed.label_id,
        "business_number": number,
        "at": at,
    }
    await db.write([Step(_INSERT_BLOCKED, row), *tally.steps(db)])
    BLOCKED_ATTEMPTS.inc()


def _blocked_cutoffs(settings: Settings, now: datetime) -> dict[str, Any]:
    return {"blocked_before": now - timedelta(days=settings.blocked_attempt_retention_days)}


# Raw blocked attempts older than the retention (by ix_blocked_attempts_at); their counts stay in daily_figures.
BLOCKED_PURGES = (Purge("blocked_attempts", _BLOCKED, _BLOCKED.c.at < bindparam("blocked_before"), _blocked_cutoffs),)
