"""R2's record counts, folded into the daily figures after the fact (issue 13: "keeping figures must not slow R2 by
more than 5 %").

An upsert costs PostgreSQL ~20 µs of CPU per key in whatever form (index probe, row lock, new row version), and an
R2 group commit of a few records carries a key or two per record: 5-6 % more CPU per request, at the bound. So an R2
group commit writes its counts as plain rows into ``figure_deltas`` (no index, no key: a heap append), in the same
statement as its records, and ``fold`` moves them into ``daily_figures`` later, many group commits' counts as one
upsert per key. Nothing is lost or counted twice: a chunk of deltas is deleted and added in one transaction, and a
delta is committed with the records it counts. Two folds at once (several processes) do not share a row: the second
waits for the rows the first has taken (PostgreSQL ``FOR UPDATE``; SQLite has one writer) and finds them gone.

Who folds: every reader of the figures before it reads (``queries``, ``recount.stored_all``), so what it shows is
exact at that moment; the periodic job ``analytics.fold_figures`` (``figures_fold_seconds``), so the table stays
small when nobody reads; ``recount.rebuild`` within its lock. The feature set of a record's caller is found when its
count is folded (the recount also takes the listing's current feature set).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Date, Integer, SmallInteger, Uuid, bindparam, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.accounts.models import ClientAccount
from callerid.analytics.counting import RecordKey, RecordTally, add_in_session
from callerid.analytics.models import FIGURE_DELTAS, RECORD_COUNTERS
from callerid.db import Database
from callerid.db.write import Step

FOLD_CHUNK_ROWS = 10_000  # deltas taken per statement: a backlog (no runner for a while) is folded in bounded bites

_INSERT_DELTAS = insert(FIGURE_DELTAS)
_OUTCOME_OF = {name: index for index, name in enumerate(RECORD_COUNTERS)}
_COLUMNS = {
    "account_id": Uuid(),
    "day": Date(),
    "label_id": Uuid(),
    "business_number": BigInteger(),
    "outcome": SmallInteger(),
    "amount": Integer(),
}
_RETURNING = "RETURNING account_id, day, label_id, business_number, outcome, amount"
# A chunk taken by its physical row address (a TID scan on PostgreSQL, the rowid on SQLite): the table has no key.
_TAKE_POSTGRES = (
    text(
        "DELETE FROM figure_deltas WHERE ctid = ANY(ARRAY(SELECT ctid FROM figure_deltas LIMIT :chunk FOR UPDATE)) "
        + _RETURNING
    )
    .bindparams(bindparam("chunk", type_=Integer()))
    .columns(**_COLUMNS)
)
_TAKE_SQLITE = (
    text("DELETE FROM figure_deltas WHERE rowid IN (SELECT rowid FROM figure_deltas LIMIT :chunk) " + _RETURNING)
    .bindparams(bindparam("chunk", type_=Integer()))
    .columns(**_COLUMNS)
)
_ANY = select(FIGURE_DELTAS.c.amount).limit(1)
_ACCOUNTS = ClientAccount.__table__


def delta_step(tally: RecordTally) -> Step:
    """The plain INSERT of ``tally``'s counts (one row per key and outcome), for the write that stores the records."""
    rows = [
        {
            "account_id": account_id,
            "day": day,
            "label_id": label_id,
            "business_number": caller,
            "outcome": _OUTCOME_OF[counter],
            "amount": amount,
        }
        for (account_id, day, label_id, caller), counts in tally.counts.items()
        for counter, amount in counts.items()
    ]
    return Step(_INSERT_DELTAS, rows=rows)


async def fold(db: Database) -> int:
    """Add every delta committed so far to ``daily_figures``; returns how many delta rows were folded."""
    async with db.point_session() as session:
        if (await session.execute(_ANY)).first() is None:  # nothing to fold: no write transaction
            return 0
    folded = 0
    while True:
        async with db.transaction() as session:
            taken = await _fold_chunk(session, db.is_postgres)
        folded += taken
        # A chunk not full took every delta committed before it began (a row another fold holds is waited for,
        # then found gone): done. Waiting for an empty chunk instead, a fold under R2 traffic took a few new rows
        # at a time for as long as the traffic lasted (SQLite: R2 at half its rate, bench/personalisation.py).
        if taken < FOLD_CHUNK_ROWS:
            return folded


async def fold_in_session(session: AsyncSession, is_postgres: bool) -> int:
    """``fold`` within ``session``'s write transaction (``recount.rebuild``, under its table locks)."""
    folded = 0
    while True:
        taken = await _fold_chunk(session, is_postgres)
        folded += taken
        if taken < FOLD_CHUNK_ROWS:
            return folded


async def _fold_chunk(session: AsyncSession, is_postgres: bool) -> int:
    rows: Sequence[Any] = (
        await session.execute(_TAKE_POSTGRES if is_postgres else _TAKE_SQLITE, {"chunk": FOLD_CHUNK_ROWS})
    ).all()
    if not rows:
        return 0
    accounts = {row.account_id for row in rows}
    living: set[uuid.UUID] = set(
        (await session.execute(select(_ACCOUNTS.c.id).where(_ACCOUNTS.c.id.in_(accounts)))).scalars()
    )
    tally = RecordTally()
    for row in rows:
        if row.account_id in living:  # an account deleted since: its figures went with it (ON DELETE CASCADE)
            key: RecordKey = (row.account_id, row.day, row.label_id, row.business_number)
            tally.add(key, RECORD_COUNTERS[row.outcome], row.amount)
    await add_in_session(session, tally)
    return len(rows)
