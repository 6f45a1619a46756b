"""personalisation: call records laid out for the traffic (issue 15): ~470-720 bytes a record before, under 300 after

The layout is described in ``callerid.personalisation.models``. Every existing row is converted, in SQL where it can
be (both databases); what SQL cannot do portably (a batch's outcomes as position ranges) is done in Python, a batch
at a time:

- every old batch becomes a group (its batchId, account, version and arrival kept), and so does every old R2 record
  (an R2 record was stored alone: a group of one, with the record's UUID as the group's internal id). Group keys
  follow the old arrival order (``created_at``), so "the newest record of a pair" stays the same record;
- each record keeps its UUID in ``legacy_id`` (S1/S2 and pushes show the id they showed before); caller/receiver
  become numbers, each group's distinct (label, name, reason) a ``call_batch_texts`` row, status/reason a code;
  a record refused as invalid keeps what S1/S2 echo in ``problem``, and its arrival as ``ends_at``;
- a delivered batch's outcomes move from its records to the batch.

Delivery jobs still queued name their batch by its batchId, which is kept: they run as before.

Revision ID: 0016_compact_call_records
Revises: 0014_retention_indexes
Create Date: 2027-01-10 09:00:00
"""

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import callerid.db.base

revision: str = "0016_compact_call_records"
down_revision: str | Sequence[str] | None = "0014_retention_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP_SPAN = 1 << 16  # as callerid.personalisation.models (frozen here: a migration must not change later)
OLD = "_0015"  # suffix of the old tables while their rows are copied
NEW = "_0016"  # ... and of the new ones, on the way back
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# call_records.state (callerid.personalisation.models): pending, delivered, invalid, then the outcomes by reason.
_STATES = {"not_app_user": 3, "os_not_supported": 4, "app_version_not_supported": 5, "failed_to_push": 6}
_BATCHES_AT_ONCE = 200  # old batches whose outcomes are moved per round
_RECORDS_AT_ONCE = 5000  # new records copied back per round (downgrade)


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _set_aside(table: str, suffix: str, indexes: Sequence[str], unique: Sequence[str]) -> None:
    """Rename ``table`` out of the way, with the index names the new one takes (SQLite renames its own)."""
    for name in indexes:
        op.drop_index(name, table_name=table)
    op.rename_table(table, table + suffix)
    if _postgresql():
        for name in unique:  # PostgreSQL names the index of a key after its constraint, schema-wide
            op.execute(f"ALTER TABLE {table}{suffix} RENAME CONSTRAINT {name} TO {name}{suffix}")


# --- upgrade ----------------------------------------------------------------------------------------------------


def _create_new_tables() -> None:
    op.create_table(
        "call_batches",
        sa.Column("key", _ID, autoincrement=True, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("version", sa.String(length=2), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("outcomes", sa.JSON(none_as_null=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_call_batches_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_call_batches")),
        sa.UniqueConstraint("id", name=op.f("uq_call_batches_id")),
    )
    op.create_table(
        "call_batch_texts",
        sa.Column("batch_key", _ID, nullable=False),
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("label_id", sa.Uuid(), nullable=False),
        sa.Column("label_name", sa.String(length=40), nullable=False),
        sa.Column("call_reason", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_key"],
            ["call_batches.key"],
            name=op.f("fk_call_batch_texts_batch_key_call_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["label_id"], ["labels.id"], name=op.f("fk_call_batch_texts_label_id_labels")),
        sa.PrimaryKeyConstraint("batch_key", "number", name=op.f("pk_call_batch_texts")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "call_records",
        sa.Column("id", _ID, autoincrement=False, nullable=False),
        sa.Column("caller", sa.BigInteger(), nullable=True),
        sa.Column("receiver", sa.BigInteger(), nullable=True),
        sa.Column("starts_at", sa.BigInteger(), nullable=True),
        sa.Column("ends_at", sa.BigInteger(), nullable=False),
        sa.Column("display", sa.Integer(), nullable=True),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("problem", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("legacy_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_records")),
    )


def _create_new_indexes() -> None:
    op.create_index("ix_call_batches_created_at", "call_batches", ["created_at"], unique=False)
    op.create_index("ix_call_records_pair", "call_records", ["caller", "receiver", "id"], unique=False)
    op.create_index("ix_call_records_ends_at", "call_records", ["ends_at"], unique=False)


def _copy_rows() -> None:
    postgresql = _postgresql()
    bind = op.get_bind()
    too_far = bind.execute(sa.text(f"SELECT count(*) FROM call_records{OLD} WHERE position >= {GROUP_SPAN}"))
    if too_far.scalar_one():
        raise RuntimeError(f"batches of more than {GROUP_SPAN} records cannot be converted")
    # Groups, keyed in arrival order: old batches, and each old R2 record on its own.
    op.execute(
        "INSERT INTO call_batches (key, id, account_id, version, record_count, created_at) "
        "SELECT row_number() OVER (ORDER BY created_at, kind, group_id), group_id, account_id, version, record_count, "
        "created_at FROM ("
        f"SELECT id AS group_id, account_id, version, record_count, created_at, 0 AS kind FROM call_batches{OLD} "
        f"UNION ALL SELECT id, NULL, version, 1, created_at, 1 FROM call_records{OLD} WHERE batch_id IS NULL"
        ") AS old_groups"
    )
    # Each group's distinct (label, name, reason) of its usable records (``sent`` is set on the others).
    op.execute(
        "INSERT INTO call_batch_texts (batch_key, number, label_id, label_name, call_reason) "
        "SELECT DISTINCT g.key, dense_rank() OVER (PARTITION BY g.key ORDER BY r.label_id, r.label_name, "
        "r.call_reason), r.label_id, r.label_name, r.call_reason "
        f"FROM call_records{OLD} r JOIN call_batches g ON g.id = coalesce(r.batch_id, r.id) WHERE r.sent IS NULL"
    )
    same_reason = "t.call_reason IS NOT DISTINCT FROM r.call_reason" if postgresql else "t.call_reason IS r.call_reason"
    if postgresql:
        arrival_ms = "floor(extract(epoch FROM r.created_at) * 1000)::bigint"
        problem = "json_build_object('field', r.field, 'message', r.message, 'sent', r.sent)"
    else:  # SQLAlchemy keeps a SQLite datetime as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
        arrival_ms = (
            "CAST(strftime('%s', r.created_at) AS INTEGER) * 1000 + CAST(substr(r.created_at, 21, 3) AS INTEGER)"
        )
        problem = "json_object('field', r.field, 'message', r.message, 'sent', json(r.sent))"
    outcome_states = " ".join(f"WHEN r.reason = '{reason}' THEN {state}" for reason, state in _STATES.items())
    op.execute(
        "INSERT INTO call_records (id, caller, receiver, starts_at, ends_at, display, state, problem, legacy_id) "
        f"SELECT g.key * {GROUP_SPAN} + CASE WHEN r.batch_id IS NULL THEN 0 ELSE r.position END, "
        "CAST(r.caller AS BIGINT), CAST(r.receiver AS BIGINT), r.starts_at, "
        f"CASE WHEN r.sent IS NULL THEN r.ends_at ELSE {arrival_ms} END, t.number, "
        # A batch's records are pending until their batch has outcomes (below); an R2 record has its own.
        "CASE WHEN r.sent IS NOT NULL THEN 2 WHEN r.batch_id IS NOT NULL OR r.status = 'pending' THEN 0 "
        f"WHEN r.status = 'success' THEN 1 {outcome_states} ELSE {_STATES['failed_to_push']} END, "
        f"CASE WHEN r.sent IS NULL THEN NULL ELSE {problem} END, r.id "
        f"FROM call_records{OLD} r JOIN call_batches g ON g.id = coalesce(r.batch_id, r.id) "
        "LEFT JOIN call_batch_texts t ON r.sent IS NULL AND t.batch_key = g.key AND t.label_id = r.label_id "
        f"AND t.label_name = r.label_name AND {same_reason}"
    )
    _copy_outcomes()
    if postgresql:  # explicit keys were given: the next batch's comes after them
        op.execute(
            "SELECT setval(pg_get_serial_sequence('call_batches', 'key'), coalesce(max(key), 0) + 1, false) "
            "FROM call_batches"
        )


def _copy_outcomes() -> None:
    """Each delivered batch's outcomes, from its records to the batch (``callerid.personalisation.outcomes``), read
    a few hundred batches at a time (a server-side cursor would stay open on PostgreSQL until the migration ends)."""
    bind = op.get_bind()
    old_batches = sa.table(f"call_batches{OLD}", sa.column("id", sa.Uuid()))
    old = sa.table(
        f"call_records{OLD}",
        sa.column("batch_id", sa.Uuid()),
        sa.column("position", sa.Integer()),
        sa.column("status", sa.String()),
        sa.column("reason", sa.String()),
        sa.column("message", sa.String()),
        sa.column("sent", sa.JSON()),
    )
    batches = sa.table("call_batches", sa.column("id", sa.Uuid()), sa.column("outcomes", sa.JSON(none_as_null=True)))
    next_batches = (
        sa.select(old_batches.c.id)
        .where(old_batches.c.id > sa.bindparam("after"))
        .order_by(old_batches.c.id)
        .limit(_BATCHES_AT_ONCE)
    )
    delivered = (
        sa.select(old.c.batch_id, old.c.position, old.c.reason, old.c.message)
        .where(old.c.batch_id.in_(sa.bindparam("batch_ids", expanding=True)))
        .where(old.c.sent.is_(None), old.c.status != "pending")
        .order_by(old.c.batch_id, old.c.position)
    )
    update = (
        sa.update(batches).where(batches.c.id == sa.bindparam("batch_id")).values(outcomes=sa.bindparam("outcomes"))
    )
    after = uuid.UUID(int=0)
    while batch_ids := list(bind.execute(next_batches, {"after": after}).scalars()):
        after = batch_ids[-1]
        by_batch: dict[uuid.UUID, dict[tuple[str | None, str | None], list[int]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for row in bind.execute(delivered, {"batch_ids": batch_ids}):
            by_batch[row.batch_id][(row.reason, row.message)].append(row.position)
        if by_batch:
            outcomes = [
                {"batch_id": batch_id, "outcomes": [[r, m, _ranges(p)] for (r, m), p in positions.items()]}
                for batch_id, positions in by_batch.items()
            ]
            bind.execute(update, outcomes)


def _ranges(positions: list[int]) -> list[int]:
    """Sorted positions as flat half-open ranges (as callerid.personalisation.outcomes)."""
    ranges: list[int] = []
    for position in positions:
        if ranges and ranges[-1] == position:
            ranges[-1] = position + 1
        else:
            ranges += [position, position + 1]
    return ranges


def upgrade() -> None:
    _set_aside("call_records", OLD, ["ix_call_records_pair_newest", "ix_call_records_batch_position",
                                     "ix_call_records_ends_created"], ["pk_call_records"])  # fmt: skip
    _set_aside("call_batches", OLD, ["ix_call_batches_created_at", "ix_call_batches_account_id"], ["pk_call_batches"])
    _create_new_tables()
    _copy_rows()
    _create_new_indexes()
    op.drop_table(f"call_records{OLD}")
    op.drop_table(f"call_batches{OLD}")


# --- downgrade ---------------------------------------------------------------------------------------------------


def _create_old_tables() -> None:
    """The tables as 0003, 0008 and 0014 left them."""
    op.create_table(
        "call_batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.String(length=2), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_call_batches_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_batches")),
    )
    op.create_table(
        "call_records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=2), nullable=False),
        sa.Column("caller", sa.String(length=15), nullable=True),
        sa.Column("receiver", sa.String(length=15), nullable=True),
        sa.Column("label_id", sa.Uuid(), nullable=True),
        sa.Column("label_name", sa.String(length=40), nullable=True),
        sa.Column("call_reason", sa.String(length=100), nullable=True),
        sa.Column("starts_at", sa.BigInteger(), nullable=True),
        sa.Column("ends_at", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("field", sa.String(length=32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("sent", sa.JSON(), nullable=True),
        sa.Column("created_at", callerid.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["client_accounts.id"],
            name=op.f("fk_call_records_account_id_client_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["call_batches.id"], name=op.f("fk_call_records_batch_id_call_batches"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["label_id"], ["labels.id"], name=op.f("fk_call_records_label_id_labels")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_records")),
    )


def _create_old_indexes() -> None:
    op.create_index("ix_call_batches_account_id", "call_batches", ["account_id"], unique=False)
    op.create_index("ix_call_batches_created_at", "call_batches", ["created_at"], unique=False)
    op.create_index("ix_call_records_batch_position", "call_records", ["batch_id", "position"], unique=False)
    op.create_index(
        "ix_call_records_pair_newest", "call_records", ["caller", "receiver", "created_at", "position"], unique=False
    )
    op.create_index("ix_call_records_ends_created", "call_records", ["ends_at", "created_at"], unique=False)


_OLD_RECORDS = sa.table(
    "call_records",
    *(sa.column(name, sa.Uuid()) for name in ("id", "account_id", "batch_id", "label_id")),
    *(sa.column(name) for name in ("position", "version", "caller", "receiver", "label_name", "call_reason")),
    *(sa.column(name) for name in ("starts_at", "ends_at", "status", "reason", "field", "message")),
    sa.column("sent", sa.JSON(none_as_null=True)),
    sa.column("created_at", callerid.db.base.UtcDateTime()),
)


def _old_record(row: Any, outcomes: dict[int, tuple[str | None, str | None]]) -> dict[str, Any] | None:
    """The old row of one new record (joined with its group and text); None for one the old layout cannot hold."""
    batch = row.group_account_id is not None
    position = row.id - row.key * GROUP_SPAN
    account_id = row.group_account_id if batch else row.label_account_id
    if account_id is None:
        return None  # an invalid R2 record
    if row.legacy_id is not None:
        record_id = row.legacy_id
    else:  # a batch's record: the id it was shown with (callerid.personalisation.models.record_uuid)
        record_id = uuid.uuid5(row.group_id, str(position)) if batch else uuid.uuid4()
    old: dict[str, Any] = {
        "id": record_id,
        "account_id": account_id,
        "batch_id": row.group_id if batch else None,
        "position": position if batch else 0,
        "version": row.version,
        "caller": None if row.caller is None else str(row.caller),
        "receiver": None if row.receiver is None else str(row.receiver),
        "label_id": row.label_id,
        "label_name": row.label_name,
        "call_reason": row.call_reason,
        "starts_at": row.starts_at,
        "ends_at": None if row.state == 2 else row.ends_at,
        "status": "error",
        "reason": None,
        "field": None,
        "message": None,
        "sent": None,
        "created_at": row.created_at,
    }
    if row.state == 2:
        problem = row.problem
        old.update(reason="invalid_input", field=problem["field"], message=problem["message"], sent=problem["sent"])
    elif row.state == 0:
        if position in outcomes:
            reason, message = outcomes[position]
            old.update(status="success" if reason is None else "error", reason=reason, message=message)
        else:
            old["status"] = "pending"
    elif row.state == 1:
        old["status"] = "success"
    else:
        old["reason"] = next(reason for reason, state in _STATES.items() if state == row.state)
    return old


def _copy_back() -> None:
    bind = op.get_bind()
    op.execute(
        "INSERT INTO call_batches (id, account_id, version, record_count, created_at) "
        f"SELECT id, account_id, version, record_count, created_at FROM call_batches{NEW} WHERE account_id IS NOT NULL"
    )
    records = sa.table(
        f"call_records{NEW}",
        *(sa.column(name, sa.BigInteger()) for name in ("id", "caller", "receiver", "starts_at", "ends_at")),
        *(sa.column(name, sa.Integer()) for name in ("display", "state")),
        sa.column("problem", sa.JSON()),
        sa.column("legacy_id", sa.Uuid()),
    )
    groups = sa.table(
        f"call_batches{NEW}",
        sa.column("key", sa.BigInteger()),
        sa.column("id", sa.Uuid()),
        sa.column("account_id", sa.Uuid()),
        sa.column("version"),
        sa.column("created_at", callerid.db.base.UtcDateTime()),
        sa.column("outcomes", sa.JSON()),
    )
    texts = sa.table(
        "call_batch_texts",
        sa.column("batch_key", sa.BigInteger()),
        sa.column("number", sa.Integer()),
        sa.column("label_id", sa.Uuid()),
        sa.column("label_name"),
        sa.column("call_reason"),
    )
    labels = sa.table("labels", sa.column("id", sa.Uuid()), sa.column("account_id", sa.Uuid()))
    joined = (
        records.join(groups, groups.c.key == records.c.id // GROUP_SPAN)
        .outerjoin(texts, sa.and_(texts.c.batch_key == groups.c.key, texts.c.number == records.c.display))
        .outerjoin(labels, labels.c.id == texts.c.label_id)
    )
    rows = sa.select(
        records,
        groups.c.key,
        groups.c.id.label("group_id"),
        groups.c.account_id.label("group_account_id"),
        groups.c.version,
        groups.c.created_at,
        groups.c.outcomes,
        texts.c.label_id,
        texts.c.label_name,
        texts.c.call_reason,
        labels.c.account_id.label("label_account_id"),
    ).select_from(joined)
    page = rows.where(records.c.id > sa.bindparam("after")).order_by(records.c.id).limit(_RECORDS_AT_ONCE)
    outcomes_of: tuple[Any, dict[int, tuple[str | None, str | None]]] = (None, {})
    after = -1
    while found_rows := bind.execute(page, {"after": after}).all():
        after = found_rows[-1].id
        copied = []
        for row in found_rows:
            if outcomes_of[0] != row.key:
                by_position = {}
                for reason, message, ranges in row.outcomes or ():
                    for start, stop in zip(ranges[::2], ranges[1::2], strict=True):
                        by_position.update(dict.fromkeys(range(start, stop), (reason, message)))
                outcomes_of = (row.key, by_position)
            old = _old_record(row, outcomes_of[1])
            if old is not None:
                copied.append(old)
        if copied:
            bind.execute(sa.insert(_OLD_RECORDS), copied)


def downgrade() -> None:
    """Back to one row per record with its own UUID and texts. Records stored since 0016 get the UUID they were
    shown with (derived from their batch's); R2 records refused as invalid are not kept (nothing showed them, and the
    old layout needs their account, which is not stored); an R2 record's outcome message is not stored (NULL)."""
    _set_aside("call_records", NEW, ["ix_call_records_pair", "ix_call_records_ends_at"], ["pk_call_records"])
    _set_aside("call_batches", NEW, ["ix_call_batches_created_at"], ["pk_call_batches", "uq_call_batches_id"])
    _create_old_tables()
    _copy_back()
    _create_old_indexes()
    op.drop_table("call_batch_texts")
    op.drop_table(f"call_records{NEW}")
    op.drop_table(f"call_batches{NEW}")
