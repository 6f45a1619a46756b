"""The hot-path database helpers: statements compiled once (db/rawsql.py), point reads (db/pointread.py) and the
SQLite writer (db/sqlitewriter.py) give exactly what SQLAlchemy gives, and never leave partial writes."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, make_url, select, update
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from callerid import clock
from callerid.accounts.service import _TOKEN_QUERY
from callerid.config import Settings
from callerid.db import Database
from callerid.db.pointread import point_session
from callerid.db.rawsql import RawStatement
from callerid.db.sqlitewriter import MAX_VARIABLES, sqlite_writer
from callerid.jobs.models import QUEUED, Job
from callerid.jobs.service import INSERT_JOB, job_row
from callerid.labels.service import find_dynamic_labels
from callerid.personalisation.service import _ACTIVE_IDENTITY
from tests.conftest import Tenant, mint
from tests.personalisation.conftest import add_label

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
JOBS = Job.__table__


async def sqlalchemy_rows(db: Database, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    async with db.session() as session:
        return [tuple(row) for row in (await session.execute(statement, params)).all()]


async def point_rows(db: Database, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    async with point_session(db) as session:
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
    lookup = {"caller": "911234567890", "receiver": "919876543210", "at_ms": now_ms}
    found = await point_rows(db, _ACTIVE_IDENTITY, lookup)
    assert found == await sqlalchemy_rows(db, _ACTIVE_IDENTITY, lookup)
    assert len(found) == 1 and found[0][1] == str(label.id)  # ids read as their text


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


@SQLITE_ONLY
async def test_writer_transactions_commit_or_leave_nothing(db: Database) -> None:
    writer = sqlite_writer(db)
    assert writer is not None
    await writer.transaction(lambda tx: tx.execute(INSERT_JOB, job_row("test.kept", {})))

    def half_then_fail(tx: Any) -> None:
        tx.execute(INSERT_JOB, job_row("test.rolled_back", {}))
        raise RuntimeError("after the first insert")

    with pytest.raises(RuntimeError):
        await writer.transaction(half_then_fail)
    async with db.session() as session:
        kinds = list((await session.execute(select(Job.kind))).scalars())
    assert kinds == ["test.kept"]


@SQLITE_ONLY
async def test_a_batch_too_big_for_one_statement_goes_in_several(db: Database) -> None:
    writer = sqlite_writer(db)
    assert writer is not None
    count = MAX_VARIABLES // 6 + 7  # jobs rows have 6 columns here: more than one statement's worth
    rows = [{"kind": f"test.{i}", "payload": {"i": i}} for i in range(count)]
    now = clock.now()
    prepared = writer.prepare_insert(
        INSERT_JOB, rows, {"status": QUEUED, "due_at": now, "attempts": 0, "created_at": now}
    )
    assert len(prepared.statements) == 2
    await writer.transaction(lambda tx: tx.run(prepared))
    async with db.session() as session:
        stored = sorted((await session.execute(select(Job.kind, Job.payload))).all(), key=lambda r: r.payload["i"])
    assert [(row.kind, row.payload) for row in stored] == [(row["kind"], row["payload"]) for row in rows]
    async with db.session() as session:
        assert set((await session.execute(select(Job.attempts))).scalars()) == {0}


@SQLITE_ONLY
async def test_when_another_process_holds_the_lock_the_write_waits_off_the_loop(db: Database) -> None:
    writer = sqlite_writer(db)
    assert writer is not None
    other = sqlite3.connect(str(Path(make_url(db.url).database or "")), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        write = asyncio.create_task(writer.transaction(lambda tx: tx.execute(INSERT_JOB, job_row("test.waited", {}))))
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
