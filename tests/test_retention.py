"""Data retention (callerid.jobs.purge and every domain's purge): rows just inside their retention stay, rows just
outside go, related rows go together, live data never goes, and purges run in chunks within a time budget.
Every test runs on SQLite and on PostgreSQL; time is moved with callerid.clock, never slept."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from callerid import clock
from callerid.accounts.jobs import CONSOLE_PURGES, TOKEN_PURGES
from callerid.accounts.models import AccessToken, ConsoleSession, Member, MemberToken, TrustedBrowser
from callerid.app import load_job_handlers
from callerid.config import Settings
from callerid.db import Database
from callerid.engagement import service as engagement
from callerid.engagement.jobs import ENGAGEMENT_PURGES
from callerid.engagement.models import CmbRequest, ExportFile, SurveyResponse
from callerid.jobs.models import QUEUED, Job
from callerid.jobs.purge import purge
from callerid.jobs.registry import registry
from callerid.jobs.runner import JobRunner
from callerid.numbers.jobs import NUMBER_JOB_PURGES
from callerid.numbers.models import DELIST, JOB_DONE, JOB_PROCESSING, LIST, NumberJob
from callerid.personalisation.jobs import RECORD_PURGES
from callerid.personalisation.models import (
    DELIVERED_STATE,
    ERROR,
    GROUP_SPAN,
    INVALID_STATE,
    OUTCOME_STATES,
    PENDING,
    PENDING_STATE,
    SUCCESS,
    CallBatch,
    CallRecord,
)
from callerid.personalisation.service import epoch_ms
from callerid.runtime import Runtime
from tests.conftest import Tenant
from tests.engagement.conftest import make_feature_set, make_org
from tests.engagement.test_surveys import make_survey

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
PURGE_KINDS = {
    "accounts.purge_console_sessions",
    "accounts.purge_tokens",
    "delivery.purge_devices",
    "engagement.purge",
    "jobs.purge_dead",
    "numbers.purge_jobs",
    "personalisation.purge",
    "webhooks.purge_logs",
}


@pytest.fixture(autouse=True)
def frozen() -> None:
    clock.freeze(NOW)


def tuned(settings: Settings, **values: Any) -> Settings:
    return settings.model_copy(update=values)


async def count(db: Database, model: Any, *where: Any) -> int:
    async with db.session() as session:
        return int((await session.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


# --- call records and batches ------------------------------------------------------------------------------------


def record(
    account_id: uuid.UUID,
    *,
    ends: datetime | None,
    status: str = SUCCESS,
    batch_id: uuid.UUID | None = None,
    created: datetime | None = None,
    position: int = 0,
) -> dict[str, Any]:
    """A call record whose window ends at ``ends`` (None: refused as invalid, no window), in a batch or not (R2).
    ``store`` gives it its ``id``."""
    usable = ends is not None
    arrived = created or ((ends - timedelta(hours=2)) if ends is not None else NOW)
    ends_ms = epoch_ms(ends) if ends is not None else epoch_ms(arrived)  # an invalid record's: its arrival
    states = {PENDING: PENDING_STATE, SUCCESS: DELIVERED_STATE, ERROR: OUTCOME_STATES["not_app_user"]}
    return {
        "account_id": account_id,
        "batch_id": batch_id,
        "position": position,
        "caller": 911234567890 if usable else None,
        "receiver": 919_000_000_000 + position if usable else None,
        "starts_at": ends_ms - 3_600_000 if usable else None,
        "ends_at": ends_ms,
        "state": states[status] if usable else INVALID_STATE,
        "problem": None if usable else {"field": "caller_number", "message": "x", "sent": {"caller": "x"}},
    }


async def store(db: Database, rows: list[dict[str, Any]], batches: dict[uuid.UUID, datetime] | None = None) -> None:
    """``rows`` in their batches (``batches``: their arrival), the others in one R2 group that arrived now."""
    groups, records = CallBatch.__table__, CallRecord.__table__
    realtime = uuid.uuid4()
    async with db.transaction() as session:
        keys = {}
        for batch_id, at in [*(batches or {}).items(), (realtime, NOW)]:
            values = {"id": batch_id, "version": "v2", "record_count": 2, "created_at": at}
            values["account_id"] = rows[0]["account_id"] if batch_id != realtime else None
            keys[batch_id] = (await session.execute(insert(groups).values(values).returning(groups.c.key))).scalar_one()
        for index, row in enumerate(rows):
            group = row.pop("batch_id") or realtime
            position = row.pop("position") if group != realtime else index
            row.pop("account_id")
            row["id"] = keys[group] * GROUP_SPAN + position
        await session.execute(insert(records), rows)


async def deliver(db: Database, batch_id: uuid.UUID) -> None:
    """The batch's outcomes written (its pending records are not pending any more)."""
    async with db.transaction() as session:
        await session.execute(
            update(CallBatch.__table__)
            .where(CallBatch.__table__.c.id == batch_id)
            .values(outcomes=[["not_app_user", "Not an app user", [0, 2]]])
        )


async def record_ids(db: Database) -> set[int]:
    async with db.session() as session:
        return set((await session.scalars(select(CallRecord.id))).all())


async def batch_ids(db: Database) -> set[uuid.UUID]:
    """The batches of B1/B2 requests (not R2 groups)."""
    async with db.session() as session:
        return set((await session.scalars(select(CallBatch.id).where(CallBatch.account_id.is_not(None)))).all())


async def test_call_records_go_30_days_after_their_window_and_a_batch_with_its_last_record(
    db: Database, settings: Settings, tenant: Tenant
) -> None:
    cutoff = NOW - timedelta(days=settings.call_record_retention_days)
    a = tenant.account_id
    both_gone, half_gone, stuck, delivered = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    rows = {
        "ended": record(a, ends=cutoff - timedelta(milliseconds=1)),
        "ended_with_outcome": record(a, ends=cutoff - timedelta(days=3), status=ERROR),
        "inside": record(a, ends=cutoff + SECOND),
        "pending": record(a, ends=cutoff - timedelta(days=10), status=PENDING),  # delivery still to come
        "invalid_old": record(a, ends=None, created=cutoff - SECOND),
        "invalid_new": record(a, ends=None, created=cutoff + SECOND),
        "both_1": record(a, ends=cutoff - SECOND, batch_id=both_gone, position=0),
        "both_2": record(a, ends=None, batch_id=both_gone, position=1, created=cutoff - 2 * SECOND),
        "half_1": record(a, ends=cutoff - SECOND, batch_id=half_gone, position=0),
        "half_2": record(a, ends=cutoff + SECOND, batch_id=half_gone, position=1),
        "stuck": record(a, ends=cutoff - timedelta(days=5), status=PENDING, batch_id=stuck),
        # stored pending, then its batch was delivered (the outcomes are the batch's: a record row never changes)
        "delivered": record(a, ends=cutoff - timedelta(days=4), status=PENDING, batch_id=delivered),
    }
    old_batch = cutoff - timedelta(days=2)
    batches = dict.fromkeys([both_gone, half_gone, stuck, delivered], old_batch)
    await store(db, list(rows.values()), batches)
    await deliver(db, delivered)

    run = await purge(db, settings, RECORD_PURGES)

    assert run.finished
    assert run.deleted == {"call_records": 7, "call_batches": 2}  # invalid records by arrival, as ended ones
    kept = {"inside", "pending", "invalid_new", "half_2", "stuck"}
    assert await record_ids(db) == {rows[name]["id"] for name in kept}
    assert await batch_ids(db) == {half_gone, stuck}

    clock.advance(2 * SECOND)  # now the rest of half_gone's window is over too: the batch goes with it
    run = await purge(db, settings, RECORD_PURGES)
    assert run.deleted == {"call_records": 3, "call_batches": 1}
    assert await record_ids(db) == {rows["pending"]["id"], rows["stuck"]["id"]}
    assert await batch_ids(db) == {stuck}


async def test_a_purge_deletes_in_chunks_until_done(db: Database, settings: Settings, tenant: Tenant) -> None:
    old = NOW - timedelta(days=40)
    await store(db, [record(tenant.account_id, ends=old, position=i) for i in range(10)])
    await store(db, [record(tenant.account_id, ends=NOW + SECOND)])

    run = await purge(db, tuned(settings, retention_chunk_rows=3), RECORD_PURGES)

    # 3 + 3 + 3 + 1 records, then one statement for batches (none).
    assert (run.finished, run.statements, run.deleted["call_records"]) == (True, 5, 10)
    assert await count(db, CallRecord) == 1


async def test_a_purge_over_its_time_budget_continues_in_a_later_run(
    db: Database, settings: Settings, tenant: Tenant
) -> None:
    """With no time budget every run deletes one full chunk and puts its job back a second later; the job ends
    (and is due again an hour later) once nothing is left."""
    batch = uuid.uuid4()
    old = NOW - timedelta(days=40)
    await store(db, [record(tenant.account_id, ends=old, batch_id=batch, position=i) for i in range(7)], {batch: old})
    load_job_handlers()
    runner = JobRunner(
        Runtime.build(tuned(settings, retention_chunk_rows=3, retention_run_seconds=0), db), registry=registry
    )
    await runner.schedule_periodic()

    left = []
    for _ in range(5):
        await runner.run_until_idle()
        left.append(await count(db, CallRecord))
        clock.advance(SECOND)
    assert left == [4, 1, 0, 0, 0]
    assert await batch_ids(db) == set()  # gone in the run that deleted its last record
    async with db.session() as session:
        job = (await session.scalars(select(Job).where(Job.kind == "personalisation.purge"))).one()
    assert (job.status, job.attempts, job.last_error) == (QUEUED, 0, None)
    assert job.due_at == NOW + 2 * SECOND + timedelta(hours=1)  # finished in the third run


def test_every_purge_runs_on_the_retention_interval() -> None:
    load_job_handlers()
    assert set(registry.periodic) >= PURGE_KINDS
    for kind in PURGE_KINDS:
        assert registry.periodic[kind].every(Settings()) == timedelta(hours=1)
        assert registry.periodic[kind].every(Settings(retention_interval_minutes=5)) == timedelta(minutes=5)


def test_retention_defaults() -> None:
    defaults = Settings()
    assert defaults.call_record_retention_days == 30
    assert defaults.device_retention_days == 180
    # CMB / UF exports read requests and answers by date range: kept three months.
    assert (defaults.cmb_request_retention_days, defaults.survey_response_retention_days) == (90, 90)
    assert defaults.number_job_retention_days == 30
    assert defaults.dead_job_retention_days == 30
    assert defaults.webhook_log_retention_days == 30  # SPEC §9.7
    assert (defaults.retention_chunk_rows, defaults.retention_run_seconds) == (1000, 10.0)


# --- engagement: CMB requests, survey answers, export links -------------------------------------------------------


def cmb_request(account_id: uuid.UUID, feature_set_id: uuid.UUID, at: datetime) -> CmbRequest:
    return CmbRequest(
        account_id=account_id,
        feature_set_id=feature_set_id,
        business_number="910987654321",
        feature_set_name="Fresh Flower Delivery",
        client_number="911234567890",
        requested_at=at,
        requested_date=at.strftime("%d/%m/%Y"),
        requested_slot="",
        is_interested=True,
        cmb_config_name="Call me back",
    )


def survey_answer(account_id: uuid.UUID, survey_id: str, at: datetime) -> SurveyResponse:
    return SurveyResponse(
        account_id=account_id,
        survey_id=uuid.UUID(survey_id),
        survey_name="Flower Quality Check",
        business_number="910987654321",
        feature_set_name="Fresh Flower Delivery",
        client_number="911234567890",
        requested_at=at,
        answers=["Yes"],
    )


def export_link(account_id: uuid.UUID, expires: datetime) -> ExportFile:
    return ExportFile(
        token_hash=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
        account_id=account_id,
        kind="cmb",
        params={"from_us": 0, "to_us": 1},
        created_at=expires - timedelta(minutes=10),
        expires_at=expires,
    )


async def test_cmb_requests_and_survey_answers_stay_for_the_export_window(
    db: Database, settings: Settings, tenant: Tenant
) -> None:
    org = await make_org(db, tenant.account_id)
    fs = await make_feature_set(db, org, "Fresh Flower Delivery", call_me_back=True, survey=True)
    survey_id = await make_survey(db, org, fs)
    cmb_cutoff = NOW - timedelta(days=settings.cmb_request_retention_days)
    uf_cutoff = NOW - timedelta(days=settings.survey_response_retention_days)
    a = tenant.account_id
    async with db.transaction() as session:
        session.add_all([cmb_request(a, fs, cmb_cutoff - SECOND), cmb_request(a, fs, cmb_cutoff + SECOND)])
        session.add_all([survey_answer(a, survey_id, uf_cutoff - SECOND), survey_answer(a, survey_id, uf_cutoff)])
        session.add_all([export_link(a, NOW), export_link(a, NOW + SECOND)])

    run = await purge(db, settings, ENGAGEMENT_PURGES)

    assert run.deleted == {"cmb_requests": 1, "survey_responses": 1, "export_files": 1}
    async with db.session() as session:
        assert list((await session.scalars(select(CmbRequest.requested_at))).all()) == [cmb_cutoff + SECOND]
        assert list((await session.scalars(select(SurveyResponse.requested_at))).all()) == [uf_cutoff]
        assert list((await session.scalars(select(ExportFile.expires_at))).all()) == [NOW + SECOND]
    # What is inside the window still exports (SPEC §5.10, §5.11); an older range finds nothing.
    async with db.transaction() as session:
        assert await engagement.issue_cmb_export(session, settings, account_id=a, start=cmb_cutoff, end=NOW)
        assert await engagement.issue_feedback_export(
            session, settings, account_id=a, survey_id=uuid.UUID(survey_id), start=uf_cutoff, end=NOW
        )
        with pytest.raises(engagement.NothingInRange):
            await engagement.issue_cmb_export(session, settings, account_id=a, start=NOW - timedelta(days=365),
                                              end=cmb_cutoff)  # fmt: skip


# --- numbers: list/delist jobs -----------------------------------------------------------------------------------


async def test_finished_number_jobs_go_30_days_after_they_finished_unfinished_never(
    db: Database, settings: Settings, tenant: Tenant
) -> None:
    org = await make_org(db, tenant.account_id)
    fs = await make_feature_set(db, org, "Fresh Flower Delivery")
    cutoff = NOW - timedelta(days=settings.number_job_retention_days)

    def job(status: str, finished: datetime | None, action: str = LIST) -> NumberJob:
        return NumberJob(
            account_id=tenant.account_id, feature_set_id=fs, action=action, numbers=["910987654321"],
            status=status, created_at=cutoff - timedelta(days=100), finished_at=finished,
        )  # fmt: skip

    old, recent, running = job(JOB_DONE, cutoff - SECOND), job(JOB_DONE, cutoff + SECOND), job(JOB_PROCESSING, None)
    async with db.transaction() as session:
        session.add_all([old, recent, running, job(JOB_DONE, cutoff - timedelta(days=1), DELIST)])

    run = await purge(db, settings, NUMBER_JOB_PURGES)

    assert run.deleted == {"number_jobs": 2}
    async with db.session() as session:
        assert set((await session.scalars(select(NumberJob.id))).all()) == {recent.id, running.id}


# --- accounts: access tokens, console sign-in state ----------------------------------------------------------------


async def test_access_tokens_and_console_sign_in_state_go_when_of_no_further_use(
    db: Database, settings: Settings, tenant: Tenant
) -> None:
    kept_for = timedelta(seconds=max(settings.token_mint_window_seconds, settings.token_ttl_seconds))
    day = timedelta(days=1)
    async with db.session() as session:
        member_id = (await session.scalars(select(Member.id).where(Member.account_id == tenant.account_id))).one()

    def session_row(name: str, *, last_seen: datetime, expires: datetime) -> ConsoleSession:
        return ConsoleSession(
            token_hash=name, member_id=member_id, account_id=tenant.account_id, state="active", csrf_token="x",
            created_at=NOW - day, last_seen_at=last_seen, expires_at=expires,
        )  # fmt: skip

    def token_row(name: str, expires: datetime) -> AccessToken:
        return AccessToken(token_hash=name, account_id=tenant.account_id, created_at=expires, expires_at=expires)

    async with db.transaction() as session:
        session.add_all([token_row("t-old", NOW - kept_for - SECOND), token_row("t-counted", NOW - kept_for + SECOND)])
        session.add_all(
            [
                session_row("s-expired", last_seen=NOW - SECOND, expires=NOW),
                session_row("s-idle", last_seen=NOW - day, expires=NOW + day),
                session_row("s-live", last_seen=NOW - day + SECOND, expires=NOW + day),
            ]
        )
        session.add_all(
            [
                TrustedBrowser(token_hash="b-old", member_id=member_id, created_at=NOW - day, expires_at=NOW),
                TrustedBrowser(token_hash="b-live", member_id=member_id, created_at=NOW, expires_at=NOW + SECOND),
            ]
        )
        session.add_all(
            [
                MemberToken(
                    token_hash=name, member_id=member_id, purpose="reset", created_at=NOW - 2 * day, expires_at=expires
                )
                for name, expires in (("m-old", NOW - day), ("m-recent", NOW - day + SECOND))
            ]
        )

    assert (await purge(db, settings, TOKEN_PURGES)).deleted == {"access_tokens": 1}
    assert (await purge(db, settings, CONSOLE_PURGES)).deleted == {
        "console_sessions": 2,
        "trusted_browsers": 1,
        "member_tokens": 1,
    }
    async with db.session() as session:
        assert set((await session.scalars(select(AccessToken.token_hash))).all()) == {"t-counted"}
        assert set((await session.scalars(select(ConsoleSession.token_hash))).all()) == {"s-live"}
        assert set((await session.scalars(select(TrustedBrowser.token_hash))).all()) == {"b-live"}
        assert set((await session.scalars(select(MemberToken.token_hash))).all()) == {"m-recent"}


async def test_jobs_that_gave_up_go_after_the_retention_period_queued_ones_never(
    db: Database, settings: Settings
) -> None:
    from callerid.jobs.housekeeping import JOB_PURGES
    from callerid.jobs.models import DEAD

    clock.freeze(NOW)
    cutoff = NOW - timedelta(days=settings.dead_job_retention_days)

    def job(kind: str, status: str, due: datetime) -> dict[str, Any]:
        return {"kind": kind, "payload": {}, "status": status, "due_at": due, "attempts": 10, "created_at": due}

    async with db.transaction() as session:
        await session.execute(
            insert(Job),
            [
                job("old.dead", DEAD, cutoff - SECOND),
                job("recent.dead", DEAD, cutoff + SECOND),
                job("old.queued", QUEUED, cutoff - timedelta(days=400)),  # waiting, however long: never purged
            ],
        )
    run = await purge(db, settings, JOB_PURGES)
    assert run.finished and run.deleted["dead_jobs"] == 1
    async with db.session() as session:
        assert sorted((await session.scalars(select(Job.kind))).all()) == ["old.queued", "recent.dead"]
