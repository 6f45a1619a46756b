"""The database seam: statements compiled once (db/rawsql.py), point reads (db/pointread.py) and writes
(``Database.write``/``transact``) give exactly what SQLAlchemy gives on both databases, never leave partial writes,
wake the job runners after (and only after) a commit that enqueued work, and serialise on ``Database.lock``."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, make_url, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from callerid import clock
from callerid.accounts.service import _TOKEN_QUERY
from callerid.config import Settings
from callerid.db import Database
from callerid.db.keyedreads import KeyedQuery
from callerid.db.rawsql import RawStatement
from callerid.db.sqlitewriter import MAX_VARIABLES
from callerid.db.values import in_values
from callerid.db.write import Step, WriteTx, add_local_waker, remove_local_waker
from callerid.db.writers import SqliteWrites, one_statement
from callerid.jobs import enqueue, enqueue_in, enqueue_step
from callerid.jobs.models import QUEUED, Job
from callerid.labels.service import find_dynamic_labels
from callerid.personalisation.reading import _ACTIVE_IDENTITY
from tests.conftest import Tenant, mint
from tests.personalisation.conftest import add_label

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
JOBS = Job.__table__


async def sqlalchemy_rows(db: Database, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    async with db.session() as session:
        return [tuple(row) for row in (await session.execute(statement, params)).all()]


async def point_rows(db: Database, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    async with db.point_session() as session:
        return [tuple(row) for row in (await session.execute(statement, params)).all()]


async def test_point_reads_return_what_sqlalchemy_returns(
    client: Any, db: Database, settings: Settings, tenant: Tenant
) -> None:
    token = await mint(client, tenant)
    from callerid.accounts.secrets import sha256_hex

    params = {"token_hash": sha256_hex(token)}
    expected = await sqlalchemy_rows(db, _TOKEN_QUERY, params)
    assert expected and isinstance(expected[0][0], uuid.UUID) and isinstance(expected[0][4], dict)
    assert await point_rows(db, _TOKEN_QUERY, params) == expected
    assert await point_rows(db, _TOKEN_QUERY, params) == expected  # again: the converted row may be reused
    assert await point_rows(db, _TOKEN_QUERY, {"token_hash": "0" * 64}) == []

    label = await add_label(db, settings, tenant.account_id)
    from callerid.personalisation.service import submit_v2_batch

    now_ms = int(clock.now().timestamp() * 1000)
    record = {
        "label_id": str(label.id),
        "caller_number": "911234567890",
        "receiver_number": "919876543210",
        "starts_at": now_ms - 1000,
        "ends_at": now_ms + 60_000,
    }
    await submit_v2_batch(db, tenant.account_id, [record])
    lookup = {"caller": 911234567890, "receiver": 919876543210, "at_ms": now_ms}  # numbers stored as numbers
    found = await point_rows(db, _ACTIVE_IDENTITY.one, lookup)
    assert found == await sqlalchemy_rows(db, _ACTIVE_IDENTITY.one, lookup)
    assert len(found) == 1 and found[0][0] == str(label.id)  # ids read as their text
    # The list form (lookups read together) finds the same row for the same key, and nothing for others.
    pairs = {"pairs": [tuple(lookup.values()), (911234567890, 910000000000, now_ms), (*lookup.values(),)]}
    many = await point_rows(db, _ACTIVE_IDENTITY.many, pairs)
    assert many == await sqlalchemy_rows(db, _ACTIVE_IDENTITY.many, pairs)
    assert [row[3:] for row in many] == found * 2 and [row[:3] for row in many] == [tuple(lookup.values())] * 2


def test_compiled_statements_keep_literals_and_refuse_expanding_parameters() -> None:
    dialect = SQLiteDialect_pysqlite()
    statement = select(JOBS.c.id).where(JOBS.c.status == QUEUED, JOBS.c.kind == bindparam("kind"))
    raw = RawStatement.compile(statement, dialect)
    assert raw is not None
    assert raw.parameters({"kind": "k"}) == (QUEUED, "k")  # the literal status, then the bound kind
    with pytest.raises(KeyError):
        raw.parameters({})
    assert RawStatement.compile(select(JOBS.c.id).where(JOBS.c.id.in_([1, 2])), dialect) is None
    returning = RawStatement.compile(update(JOBS).values(status="x").returning(JOBS.c.id, JOBS.c.kind), dialect)
    assert returning is not None and returning.row_type is not None
    assert returning.row_type._fields == ("id", "kind")


def test_many_row_parameters_convert_shared_values_once_and_match_single_rows() -> None:
    raw = RawStatement.compile(insert(JOBS), SQLiteDialect_pysqlite(), ("kind", "payload", "status", "due_at"))
    assert raw is not None
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    rows = [{"kind": f"k{i}", "payload": {"n": i}} for i in range(3)]
    shared = {"status": QUEUED, "due_at": at}
    many = raw.parameters_many(rows, shared)
    assert many == [raw.parameters({**row, **shared}) for row in rows]
    assert raw.parameters({**rows[0], **shared})[-1] == 0  # attempts, added by SQLAlchemy: the column's default
    assert raw.multi_row(2).endswith("VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)")


async def test_writes_commit_or_leave_nothing(db: Database) -> None:
    await db.write([enqueue_step("test.kept", {})])

    async def half_then_fail(tx: WriteTx) -> None:
        await enqueue_in(tx, "test.rolled_back", {})
        raise RuntimeError("after the first insert")

    with pytest.raises(RuntimeError):
        await db.transact(half_then_fail)
    async with db.session() as session:
        kinds = list((await session.execute(select(Job.kind))).scalars())
    assert kinds == ["test.kept"]


async def test_a_write_returns_rows_and_counts_per_step(db: Database) -> None:
    rows = [{"kind": f"test.{i}", "payload": {"i": i}} for i in range(3)]
    now = clock.now()
    shared = {"status": QUEUED, "due_at": now, "attempts": 0, "created_at": now}
    stamp = update(JOBS).where(in_values(JOBS.c.kind, "kinds")).values(attempts=bindparam("n"))
    kinds = select(JOBS.c.kind).where(in_values(JOBS.c.kind, "kinds", negate=True)).order_by(JOBS.c.kind)
    results = await db.write(
        [
            Step(insert(JOBS), rows=rows, shared=shared),
            Step(stamp, {"kinds": ["test.0", "test.2", "absent"], "n": 5}),
            Step(kinds, {"kinds": ["test.0"]}, returning=True),
            Step(kinds, {"kinds": []}, returning=True),
        ]
    )
    assert results[1] == 2  # rows changed
    assert [row.kind for row in results[2]] == ["test.1", "test.2"]
    assert [row.kind for row in results[3]] == ["test.0", "test.1", "test.2"]  # an empty list excludes nothing
    async with db.session() as session:
        stored = dict((await session.execute(select(Job.kind, Job.attempts))).all())
    assert stored == {"test.0": 5, "test.1": 0, "test.2": 5}


async def test_enqueuing_wakes_this_process_runners_after_commit_only(db: Database) -> None:
    woken: list[str] = []

    def waker() -> None:
        woken.append("woken")

    add_local_waker(waker)
    try:

        async def enqueue_then_fail(tx: WriteTx) -> None:
            await enqueue_in(tx, "test.never", {})
            assert woken == []  # not before the commit
            raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            await db.transact(enqueue_then_fail)
        assert woken == []  # nothing committed: nothing to wake for
        await db.write([enqueue_step("test.a", {})])
        assert woken == ["woken"]
        async with db.transaction() as session:
            await enqueue(session, "test.b", {})
            assert woken == ["woken"]
        assert woken == ["woken", "woken"]
        with pytest.raises(RuntimeError):
            async with db.transaction() as session:
                await enqueue(session, "test.never", {})
                raise RuntimeError("rolled back")
        async with db.transaction() as session:
            await session.execute(select(Job.id))  # a transaction that enqueued nothing
        assert woken == ["woken", "woken"]
    finally:
        remove_local_waker(waker)


@POSTGRES_ONLY
async def test_other_processes_hear_of_enqueued_work(db: Database, settings: Settings) -> None:
    other_process = Database(settings.database_url)
    heard = asyncio.Event()
    close = await other_process.listen_for_jobs(heard.set)
    assert close is not None
    try:
        await db.write([enqueue_step("test.heard", {})])
        await asyncio.wait_for(heard.wait(), 5)
    finally:
        await close()
        await other_process.dispose()


async def test_a_lock_serialises_transactions_on_its_key(db: Database) -> None:
    order: list[str] = []
    first_has_it = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as session:
            await db.lock(session, "test-key")
            first_has_it.set()
            await asyncio.sleep(0.2)
            order.append("first done")

    async def second() -> None:
        await first_has_it.wait()
        async with db.transaction() as session:
            await db.lock(session, "test-key")
            order.append("second has it")

    await asyncio.gather(first(), second())
    assert order == ["first done", "second has it"]


@SQLITE_ONLY
async def test_a_sqlite_write_must_not_await_anything_else(db: Database) -> None:
    async def suspends(tx: WriteTx) -> None:
        await enqueue_in(tx, "test.never", {})
        await asyncio.sleep(0)  # would hold the write lock across other tasks' turns

    with pytest.raises(RuntimeError, match="awaited something other"):
        await db.transact(suspends)
    async with db.session() as session:
        assert list((await session.execute(select(Job.kind))).scalars()) == []


@SQLITE_ONLY
async def test_a_batch_too_big_for_one_statement_goes_in_several(db: Database) -> None:
    assert isinstance(db.writer, SqliteWrites)
    count = MAX_VARIABLES // 6 + 7  # jobs rows have 6 columns here: more than one statement's worth
    rows = [{"kind": f"test.{i}", "payload": {"i": i}} for i in range(count)]
    now = clock.now()
    shared = {"status": QUEUED, "due_at": now, "attempts": 0, "created_at": now}
    assert len(db.writer.sqlite.prepare_insert(insert(JOBS), rows, shared).statements) == 2
    await db.write([Step(insert(JOBS), rows=rows, shared=shared)])
    async with db.session() as session:
        stored = sorted((await session.execute(select(Job.kind, Job.payload))).all(), key=lambda r: r.payload["i"])
    assert [(row.kind, row.payload) for row in stored] == [(row["kind"], row["payload"]) for row in rows]
    async with db.session() as session:
        assert set((await session.execute(select(Job.attempts))).scalars()) == {0}


@SQLITE_ONLY
async def test_when_another_process_holds_the_lock_the_write_waits_off_the_loop(db: Database) -> None:
    other = sqlite3.connect(str(Path(make_url(db.url).database or "")), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        write = asyncio.create_task(db.write([enqueue_step("test.waited", {})]))
        ticks = 0
        while not write.done() and ticks < 20:  # the loop keeps running meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert not write.done() and ticks == 20
    finally:
        other.execute("COMMIT")
        other.close()
    await asyncio.wait_for(write, 10)
    async with db.session() as session:
        assert list((await session.execute(select(Job.kind))).scalars()) == ["test.waited"]


async def test_dynamic_labels_found_are_remembered_and_missing_ones_are_not(
    db: Database, settings: Settings, tenant: Tenant
) -> None:
    missing = uuid.uuid4()
    assert await find_dynamic_labels(db, tenant.account_id, {missing}) == {}
    label = await add_label(db, settings, tenant.account_id)
    found = await find_dynamic_labels(db, tenant.account_id, {label.id})
    assert found[label.id].name == label.name
    assert await find_dynamic_labels(db, uuid.uuid4(), {label.id}) == {}  # another account's label is not theirs
    # Remembered: answered without the database (a label never changes), until the entry is 30 s old.
    async with db.transaction() as session:
        await session.execute(update(type(label)).values(name="Changed behind our back"))
    assert (await find_dynamic_labels(db, tenant.account_id, {label.id}))[label.id].name == label.name
    clock.freeze(clock.now() + timedelta(seconds=31))
    assert (await find_dynamic_labels(db, tenant.account_id, {label.id}))[label.id].name == "Changed behind our back"


@SQLITE_ONLY
async def test_a_list_parameter_leaves_the_column_to_its_index(db: Database) -> None:
    """``in_values`` must not render as ``<condition> = 1`` on SQLite: that hides the column from the planner, and
    every statement with a list (job claims, webhook loads, device look-ups) scanned its whole table."""
    from callerid.delivery.service import _DEVICES_BY_NUMBERS

    raw = RawStatement.compile(_DEVICES_BY_NUMBERS.many, SQLiteDialect_pysqlite())
    assert raw is not None and "= 1" not in raw.sql
    connection = sqlite3.connect(str(Path(make_url(db.url).database or "")))
    try:
        plan = [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + raw.sql, ["[]"])]
    finally:
        connection.close()
    assert any(step.startswith("SEARCH devices USING") for step in plan), plan


async def test_keyed_reads_give_each_reader_its_own_rows_and_share_statements_where_reads_cost_a_round_trip(
    db: Database,
) -> None:
    now = clock.now()
    shared = {"status": QUEUED, "due_at": now, "payload": {}, "attempts": 0, "created_at": now}
    await db.write([Step(insert(JOBS), rows=[{"kind": f"test.{i % 5}"} for i in range(10)], shared=shared)])
    by_kinds = KeyedQuery(
        many=select(JOBS.c.kind, JOBS.c.id).where(in_values(JOBS.c.kind, "kinds")), parameter="kinds", key="kind"
    )
    statements: list[int] = []
    keyed = db.keyed_reads
    original = keyed.sessions

    def counted() -> Any:
        statements.append(1)
        return original()

    keyed.sessions = counted  # type: ignore[method-assign]
    wanted = [["test.0"], ["test.1", "test.0"], ["absent"], ["test.4", "test.4"], [], ["test.3"]] * 5
    found = await asyncio.gather(*(db.read_keyed(by_kinds, kinds) for kinds in wanted))
    for kinds, rows in zip(wanted, found, strict=True):
        # Every row of each distinct wanted kind (two jobs per kind), and nothing else.
        assert sorted(row.kind for row in rows) == sorted([kind for kind in set(kinds) if kind != "absent"] * 2)
    reads = len([kinds for kinds in wanted if kinds])
    if db.concurrent_writes:  # PostgreSQL: the reads that arrived together went in a few statements
        assert len(statements) <= 4 < reads
    else:  # SQLite: a read is a function call on the loop thread; nothing to share
        assert len(statements) == reads


async def test_reads_of_one_key_that_arrive_together_get_its_rows(db: Database) -> None:
    """Regression: two lookups of the same key in the same group (the same phone, caller and millisecond) made the
    group's one distinct key go through the single-key form, whose rows lack the key columns: a 500 for both."""
    now = clock.now()
    shared = {"status": QUEUED, "due_at": now, "payload": {}, "attempts": 0, "created_at": now}
    await db.write([Step(insert(JOBS), rows=[{"kind": "test.same"}, {"kind": "test.other"}], shared=shared)])
    by_kind = KeyedQuery(
        many=select(JOBS.c.kind, JOBS.c.id).where(in_values(JOBS.c.kind, "kinds")),
        one=select(JOBS.c.id).where(JOBS.c.kind == bindparam("kind")),
        parameter="kinds",
        key="kind",
    )
    found = await asyncio.gather(*(db.read_keyed(by_kind, ["test.same"]) for _ in range(6)))
    assert [len(rows) for rows in found] == [1] * 6
    assert len({row.id for rows in found for row in rows}) == 1


def test_postgresql_inserts_many_rows_as_one_statement_of_column_arrays() -> None:
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    keys = ("kind", "payload", "status", "due_at", "attempts", "created_at")
    raw = RawStatement.compile(insert(JOBS), PGDialect_asyncpg(), keys)
    assert raw is not None
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [{"kind": "a", "payload": {}, "attempts": 0}, {"kind": "b", "payload": {"x": 1}, "attempts": 2}]
    columnar = raw.columnar(rows, {"status": QUEUED, "due_at": now, "created_at": now})
    assert columnar is not None
    sql, arguments = columnar
    # Values that differ between rows as arrays; the shared ones once, as plain parameters.
    assert sql == (
        "INSERT INTO jobs (kind, payload, status, due_at, attempts, created_at) "
        "SELECT u.p1::VARCHAR, u.p2::JSON, $4::VARCHAR, $5::TIMESTAMP WITH TIME ZONE, u.p5::INTEGER, "
        "$6::TIMESTAMP WITH TIME ZONE FROM unnest($1::VARCHAR(64)[], $2::JSON[], $3::INTEGER[]) AS u(p1, p2, p5)"
    )
    assert arguments == [["a", "b"], ["{}", '{"x": 1}'], [0, 2], QUEUED, now, now]
    # An upsert (the daily figures of an R2 group) as rows of VALUES, numbered on, its ON CONFLICT clause after them
    # (column arrays would be planned afresh at each execution where a value is a subquery).
    upsert = RawStatement.compile(postgresql_insert(JOBS).on_conflict_do_nothing(), PGDialect_asyncpg(), keys)
    assert upsert is not None and upsert.insert_parts is not None
    shared = {"status": QUEUED, "due_at": now, "created_at": now}
    upsert_written = upsert.for_rows(rows, shared)
    assert upsert_written is not None
    assert upsert_written[0] == (
        "INSERT INTO jobs (kind, payload, status, due_at, attempts, created_at) VALUES "
        "($1::VARCHAR, $2::JSON, $3::VARCHAR, $4::TIMESTAMP WITH TIME ZONE, $5::INTEGER, "
        "$6::TIMESTAMP WITH TIME ZONE), ($7::VARCHAR, $8::JSON, $9::VARCHAR, $10::TIMESTAMP WITH TIME ZONE, "
        "$11::INTEGER, "
        "$12::TIMESTAMP WITH TIME ZONE) ON CONFLICT DO NOTHING"
    )
    assert upsert_written[1] == ["a", "{}", QUEUED, now, 0, now, "b", '{"x": 1}', QUEUED, now, 2, now]
    # Not for an INSERT that returns rows (one per row given), nor an upsert whose ON CONFLICT clause takes a
    # parameter (the arrays' numbering would not reach it), nor on SQLite.
    returning = insert(JOBS).returning(JOBS.c.id)
    assert RawStatement.compile(returning, PGDialect_asyncpg(), keys).insert_parts is None  # type: ignore[union-attr]
    statement = postgresql_insert(JOBS)
    with_parameter = statement.on_conflict_do_update(index_elements=[JOBS.c.id], set_={"attempts": bindparam("n")})
    assert RawStatement.compile(with_parameter, PGDialect_asyncpg(), keys).insert_parts is None  # type: ignore[union-attr]
    assert RawStatement.compile(insert(JOBS), SQLiteDialect_pysqlite(), keys).insert_parts is None  # type: ignore[union-attr]


def test_postgresql_column_arrays_keep_expressions_of_the_values() -> None:
    """An INSERT whose values are expressions (a record's id from its group's key) keeps them, per row."""
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    from callerid.personalisation.storing import _INSERT_RECORDS

    keys = ("position", "caller", "receiver", "starts_at", "ends_at", "display", "state", "problem", "group_id")
    raw = RawStatement.compile(_INSERT_RECORDS, PGDialect_asyncpg(), keys)
    assert raw is not None and raw.insert_parts is not None
    sql = raw.insert_parts.columnar(frozenset(index for index, name in enumerate(raw._binds) if name[0] == "group_id"))
    assert "unnest(" in sql and "(SELECT call_batches.key" in sql and "call_batches.id = $" in sql
    assert "u.p" in sql and "::BIGINT[]" in sql


def _group_of_three(group_id: uuid.UUID, label_id: uuid.UUID, *, bad_last: bool = False) -> list[Step]:
    from callerid.personalisation.storing import NewRecord, group_steps

    records = [
        NewRecord(state=1, ends_at=2000, caller=14155550001 + i, receiver=919000000001, starts_at=1000,
                  text=(label_id, f"Name {i % 2}", None))
        for i in range(3)
    ]  # fmt: skip
    if bad_last:  # a record breaking a constraint (state is NOT NULL): the whole write must fail
        records[-1] = NewRecord(state=None, ends_at=2000)  # type: ignore[arg-type]
    return group_steps(group_id, None, "v2", clock.now(), records)


async def test_inserts_written_together_store_parent_and_children_atomically(
    db: Database, settings: Settings, tenant: Tenant
) -> None:
    """``write(steps, together=True)``: on PostgreSQL one statement (children find their new parent's key through the
    parent's WITH part), elsewhere a transaction; the same rows either way, and nothing of a write that fails."""
    from callerid.personalisation.models import GROUP_SPAN, CallBatch, CallBatchText, CallRecord

    label = await add_label(db, settings, tenant.account_id, "Together")
    group_id = uuid.uuid4()
    steps = _group_of_three(group_id, label.id)
    if db.concurrent_writes:  # PostgreSQL: the write really is one statement
        combined = one_statement(db.reader.raw, steps)  # type: ignore[union-attr]
        assert combined is not None and combined[0].startswith("WITH s0 AS (INSERT INTO call_batches")
        assert "FROM s0 AS call_batches" in combined[0]
    assert await db.write(steps, together=True) == [1, None, None]
    async with db.session() as session:
        key = (await session.execute(select(CallBatch.key).where(CallBatch.id == group_id))).scalar_one()
        texts = (await session.execute(select(CallBatchText.number, CallBatchText.label_name).where(
            CallBatchText.batch_key == key).order_by(CallBatchText.number))).all()  # fmt: skip
        records = (await session.execute(select(CallRecord.id, CallRecord.caller, CallRecord.display).order_by(
            CallRecord.id))).all()  # fmt: skip
    assert [tuple(t) for t in texts] == [(0, "Name 0"), (1, "Name 1")]
    assert [tuple(r) for r in records] == [(key * GROUP_SPAN + i, 14155550001 + i, i % 2) for i in range(3)]

    failing = uuid.uuid4()
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error for the broken constraint
        await db.write(_group_of_three(failing, label.id, bad_last=True), together=True)
    async with db.session() as session:
        assert (await session.execute(select(CallBatch.key).where(CallBatch.id == failing))).first() is None
        assert len((await session.execute(select(CallRecord.id))).all()) == 3
    # With a job enqueued (its wake-up is not an INSERT): written as a transaction, with the same result.
    later = uuid.uuid4()
    with_job = [*_group_of_three(later, label.id), enqueue_step("test.together", {"group": str(later)})]
    if db.concurrent_writes:
        assert one_statement(db.reader.raw, with_job) is None  # type: ignore[union-attr]
    await db.write(with_job, together=True)
    async with db.session() as session:
        assert len((await session.execute(select(CallRecord.id))).all()) == 6
        assert (await session.execute(select(Job.kind).where(Job.kind == "test.together"))).scalar_one()


async def test_many_rows_written_together_read_back_exactly(db: Database) -> None:
    now = clock.now()
    rows = [
        {"kind": "test.a", "payload": {"n": 1, "text": "é"}, "last_error": None},
        {"kind": "test.b", "payload": {}, "last_error": "x" * 100},
        {"kind": "test.c", "payload": {"list": [1, None]}, "last_error": ""},
    ]
    await db.write([Step(insert(JOBS), rows=rows, shared={"status": QUEUED, "due_at": now, "created_at": now})])
    async with db.session() as session:
        stored = (await session.execute(select(Job).order_by(Job.kind))).scalars().all()
    assert [(job.kind, job.payload, job.last_error, job.due_at, job.attempts) for job in stored] == [
        (row["kind"], row["payload"], row["last_error"], now, 0) for row in rows
    ]


@POSTGRES_ONLY
async def test_lookups_read_together_probe_the_pair_index_not_scan_the_table(db: Database) -> None:
    """Regression: with the keys as jsonb_to_recordset (taken for 100 rows) PostgreSQL hashed a full scan of
    call_records for every grouped lookup once the table held some ten thousand records."""
    import orjson
    from sqlalchemy import text
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO call_records (id, caller, receiver, starts_at, ends_at, display, state) "
                "SELECT (i / 500 + 1) * 65536 + i % 500, 14155550000 + i % 8, 16500000000 + i, 0, 10000000000000, 0, 1 "
                "FROM generate_series(0, 29999) i"
            )
        )
    async with db.session() as session:
        await session.execute(text("ANALYZE call_records"))
        sql = str(_ACTIVE_IDENTITY.many.compile(dialect=PGDialect_asyncpg()))
        keys = [{"caller": 14155550001, "receiver": 16500000001 + i, "at_ms": 5} for i in range(3)]
        connection = await session.connection()
        driver: Any = (await connection.get_raw_connection()).driver_connection
        plan = "\n".join(row[0] for row in await driver.fetch("EXPLAIN " + sql, orjson.dumps(keys).decode(), 1))
    assert "Seq Scan on call_records" not in plan, plan
    assert "ix_call_records_pair" in plan, plan
