"""The weekly report e-mail (issue 13 §5): sent once, on Monday morning in the account's timezone, to the members who
switched it on, with last week's summary (owners: their subtree) and the CSV by day attached; by SMTP when set up."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from callerid import clock
from callerid.accounts.models import Member
from callerid.analytics import queries, weekly_report
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.registry import registry
from callerid.jobs.runner import JobRunner
from callerid.webhooks.models import OutboxMail
from tests.console.test_analytics_page import Figures, figures_world
from tests.webhooks.test_mail import Inbox, free_port

MONDAY = date(2026, 12, 7)
# 07:00 on Monday in Asia/Kolkata (UTC+5:30) is 01:30 UTC, still before 07:00 in UTC: the account's clock decides.
DUE = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)
JUST_BEFORE = datetime(2026, 12, 7, 1, 29, tzinfo=UTC)
WEEK_START, WEEK_END = date(2026, 11, 30), date(2026, 12, 6)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def settings_overrides(smtp: tuple[Inbox, int]) -> dict[str, Any]:
    return {
        "webhook_allow_private": True,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp[1],
        "smtp_starttls": False,
        "smtp_from": "reports@callerid.test",
    }


@pytest.fixture
async def figures(db: Database, settings: Settings) -> Figures:
    figures = await figures_world(db, settings)
    opted_in = [figures.world.people[role].member_id for role in ("admin", "process_owner")]
    async with db.transaction() as session:
        await session.execute(update(Member).where(Member.id.in_(opted_in)).values(weekly_report=True))
    return figures


async def reports(db: Database) -> dict[str, OutboxMail]:
    async with db.session() as session:
        mails = (await session.scalars(select(OutboxMail).where(OutboxMail.subject.like("Weekly report%")))).all()
    return {mail.recipients[0]: mail for mail in mails}


async def test_the_job_is_registered_as_periodic() -> None:
    assert weekly_report.JOB_KIND in registry.periodic
    assert registry.handlers[weekly_report.JOB_KIND] is weekly_report.weekly_reports


def test_due_week_follows_the_account_timezone() -> None:
    assert weekly_report.due_week(JUST_BEFORE, "Asia/Kolkata") is None
    week = weekly_report.due_week(DUE, "Asia/Kolkata")
    assert week is not None and (week.start, week.end) == (WEEK_START, WEEK_END)
    assert weekly_report.due_week(DUE, "UTC") is None  # 01:30 on Monday in UTC: not yet morning there
    assert weekly_report.due_week(datetime(2026, 12, 7, 7, 0, tzinfo=UTC), "UTC") is not None
    assert weekly_report.due_week(datetime(2026, 12, 8, 9, 0, tzinfo=UTC), "UTC") is None  # Tuesday


async def test_sent_once_on_monday_morning_to_those_who_opted_in(
    db: Database, settings: Settings, figures: Figures
) -> None:
    world = figures.world
    admin, owner = world.people["admin"], world.people["process_owner"]
    for instant in (datetime(2026, 12, 6, 12, 0, tzinfo=UTC), JUST_BEFORE):  # Sunday; Monday 06:59 in Kolkata
        clock.freeze(instant)
        assert await weekly_report.send_due_reports(db, settings) == 0
    clock.freeze(DUE)
    assert await weekly_report.send_due_reports(db, settings) == 2
    mails = await reports(db)
    assert set(mails) == {admin.email, owner.email}  # not the operation owner, who did not switch it on
    assert mails[admin.email].subject == "Weekly report for Acme Flowers: 30 Nov to 06 Dec 2026"
    # Later that Monday, and in another process at the same time: nothing more.
    clock.freeze(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    assert await asyncio.gather(*(weekly_report.send_due_reports(db, settings) for _ in range(3))) == [0, 0, 0]
    assert len(await reports(db)) == 2
    async with db.session() as session:
        sent_at = await session.scalar(select(Member.weekly_report_sent_at).where(Member.id == admin.member_id))
    assert sent_at == DUE


async def test_several_processes_claim_each_report_once(db: Database, settings: Settings, figures: Figures) -> None:
    clock.freeze(DUE)
    claimed = await asyncio.gather(*(weekly_report.send_due_reports(db, settings) for _ in range(4)))
    assert sum(claimed) == 2
    assert len(await reports(db)) == 2
    # The next Monday is another week.
    clock.freeze(datetime(2026, 12, 14, 2, 0, tzinfo=UTC))
    assert await weekly_report.send_due_reports(db, settings) == 2


async def test_summary_and_csv_attached_owner_sees_subtree_only(
    db: Database, settings: Settings, figures: Figures, runner: JobRunner, smtp: tuple[Inbox, int]
) -> None:
    world = figures.world
    admin, owner = world.people["admin"], world.people["process_owner"]
    clock.freeze(DUE)
    await weekly_report.send_due_reports(db, settings)
    mails = await reports(db)
    admin_body, owner_body = mails[admin.email].body, mails[owner.email].body
    assert "Calls answered:           14" in admin_body and "Blocked attempts:         9" in admin_body
    assert "Answer rate:              53.8 %" in admin_body
    assert "Calls answered:           4" in owner_body and "Blocked attempts:         2" in owner_body
    assert "your part of the organisation" in owner_body and "Answer rate:              66.7 %" in owner_body
    # The attachment is the analytics API's CSV by day for the week (the owner's: their feature sets only).
    for person, subtree in ((admin, None), (owner, frozenset({figures.inside}))):
        [attachment] = mails[person.email].attachments or []
        scope = queries.Scope(world.account_id, WEEK_START, WEEK_END, feature_set_ids=subtree)
        expected = queries.to_csv(await queries.figures(db, scope, "day"), "day")
        assert attachment == {
            "filename": "callerid-report-2026-11-30-2026-12-06.csv",
            "content_type": "text/csv",
            "content": expected,
        }
    # Sent by SMTP (configured here), the CSV as a real attachment.
    await runner.run_until_idle()
    inbox, _ = smtp
    sent: dict[str, Message] = {rcpt[0]: message_from_bytes(raw) for rcpt, raw in inbox.messages}
    message = sent[owner.email]
    assert message["From"] == "reports@callerid.test"
    assert message.is_multipart()
    [body_part, csv_part] = message.get_payload()  # type: ignore[misc]
    assert "Calls answered:           4" in body_part.get_payload(decode=True).decode()
    assert csv_part.get_filename() == "callerid-report-2026-11-30-2026-12-06.csv"
    assert csv_part.get_content_type() == "text/csv"
    assert csv_part.get_payload(decode=True).decode() == mails[owner.email].attachments[0]["content"]  # type: ignore[index]
    assert (await reports(db))[owner.email].status == "sent"


async def test_switched_off_or_revoked_members_get_nothing(db: Database, settings: Settings, figures: Figures) -> None:
    people = figures.world.people
    async with db.transaction() as session:
        await session.execute(update(Member).where(Member.id == people["admin"].member_id).values(weekly_report=False))
        await session.execute(
            update(Member).where(Member.id == people["process_owner"].member_id).values(status="revoked")
        )
    clock.freeze(DUE)
    assert await weekly_report.send_due_reports(db, settings) == 0
    assert await reports(db) == {}
