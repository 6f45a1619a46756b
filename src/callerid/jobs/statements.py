"""The job runner's statements, built once for both databases (run through ``Database.transact``).

Lists of ids or kinds are one parameter each (``db.values``). Claims are two statements rather than one with OR
over the two statuses: with OR, SQLite merges both indexes and sorts every due row (milliseconds per claim with a
backlog of 10,000); each of these walks its own index in order and stops at ``limit``. On PostgreSQL the
sub-selects skip rows other runners are claiming (FOR UPDATE SKIP LOCKED; SQLite, with one writer, has nothing to
skip, and SQLAlchemy renders nothing for it there).
"""

from __future__ import annotations

from sqlalchemy import Integer, bindparam, delete, exists, or_, select, update

from callerid.db.values import in_values
from callerid.jobs.models import QUEUED, RUNNING, Job

_NOW = bindparam("now", type_=Job.due_at.type)
# Due work of any kind: queued and due, or running with a lapsed lease (two index walks, each stops at a row).
ANY_DUE = select(
    or_(
        exists().where(Job.status == QUEUED, Job.due_at <= _NOW),
        exists().where(Job.status == RUNNING, Job.lease_expires_at <= _NOW),
    ).label("due")
)


_TABLE = Job.__table__
# Rescheduling outcomes differ per job (due time, attempts, error): one statement run for many parameter sets.
RESCHEDULE_FAILED = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("b_id"), _TABLE.c.lease_owner == bindparam("b_owner"), _TABLE.c.status == RUNNING)
    .values(
        status=bindparam("b_status", type_=_TABLE.c.status.type),
        due_at=bindparam("b_due_at", type_=_TABLE.c.due_at.type),
        attempts=bindparam("b_attempts", type_=_TABLE.c.attempts.type),
        lease_owner=None,
        lease_expires_at=None,
        last_error=bindparam("b_error", type_=_TABLE.c.last_error.type),
    )
)
RESCHEDULE_LATER = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("b_id"), _TABLE.c.lease_owner == bindparam("b_owner"), _TABLE.c.status == RUNNING)
    .values(
        status=QUEUED,
        due_at=bindparam("b_due_at", type_=_TABLE.c.due_at.type),
        lease_owner=None,
        lease_expires_at=None,
        attempts=_TABLE.c.attempts - 1,  # not a failure
    )
)


_RETURNING = (_TABLE.c.id, _TABLE.c.kind, _TABLE.c.payload, _TABLE.c.attempts)
_LEASE_VALUES = {
    "status": RUNNING,
    "lease_owner": bindparam("owner", type_=_TABLE.c.lease_owner.type),
    "lease_expires_at": bindparam("lease_until", type_=_TABLE.c.lease_expires_at.type),
    "attempts": _TABLE.c.attempts + 1,
}
_NOW_AT = bindparam("now", type_=_TABLE.c.due_at.type)
_OWNER = bindparam("owner", type_=_TABLE.c.lease_owner.type)
CLAIM_EXPIRED = (
    update(_TABLE)
    .where(
        _TABLE.c.id.in_(
            select(_TABLE.c.id)
            .where(
                in_values(_TABLE.c.kind, "kinds"),
                _TABLE.c.status == RUNNING,
                _TABLE.c.lease_expires_at <= _NOW_AT,
                # A job of ours whose lease lapsed (e.g. the loop was blocked) is still ours: never twice.
                in_values(_TABLE.c.id, "held", negate=True),
            )
            .order_by(_TABLE.c.lease_expires_at)
            .limit(bindparam("limit", type_=Integer))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(**_LEASE_VALUES)
    .returning(*_RETURNING)
)
CLAIM_QUEUED = (
    update(_TABLE)
    .where(
        _TABLE.c.id.in_(
            select(_TABLE.c.id)
            .where(in_values(_TABLE.c.kind, "kinds"), _TABLE.c.status == QUEUED, _TABLE.c.due_at <= _NOW_AT)
            .order_by(_TABLE.c.due_at, _TABLE.c.id)
            .limit(bindparam("limit", type_=Integer))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(**_LEASE_VALUES)
    .returning(*_RETURNING)
)
COMPLETE = (
    delete(_TABLE)
    .where(in_values(_TABLE.c.id, "ids"), _TABLE.c.lease_owner == _OWNER, _TABLE.c.status == RUNNING)
    .returning(_TABLE.c.id)
)
EXTEND = (
    update(_TABLE)
    .where(in_values(_TABLE.c.id, "ids"), _TABLE.c.lease_owner == _OWNER, _TABLE.c.status == RUNNING)
    .values(lease_expires_at=bindparam("lease_until", type_=_TABLE.c.lease_expires_at.type))
    .returning(_TABLE.c.id)
)
RELEASE = (
    update(_TABLE)
    .where(_TABLE.c.lease_owner == _OWNER, _TABLE.c.status == RUNNING)
    .values(status=QUEUED, lease_owner=None, lease_expires_at=None, attempts=_TABLE.c.attempts - 1)
)
