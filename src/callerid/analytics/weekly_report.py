"""The weekly report e-mail (issue 13 §5): each member who switched it on gets, on Monday morning in their account's
timezone, last week's figures (Monday to Sunday) in words and, attached, the same CSV by day as the analytics API's.
Owners get the figures of their subtree only (``access``), as on the Analytics page.

A periodic job looks every ``CHECK_EVERY`` for members whose report is due. Each send is claimed first with a
conditional UPDATE of ``members.weekly_report_sent_at`` (only if it is still before this Monday's report time), in the
same transaction that queues the mail: with several processes running the job, exactly one claims a member's week,
and a crash between the two loses neither nor sends twice. The mail goes by SMTP when configured, else stays in the
outbox (``webhooks.mail``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.accounts import members as members_service
from callerid.accounts import permissions
from callerid.accounts.models import MEMBER_ACTIVE, ClientAccount, Member
from callerid.accounts.permissions import Actor, Permission
from callerid.analytics import access, queries
from callerid.config import Settings
from callerid.db import Database
from callerid.jobs import JobContext, handler
from callerid.webhooks.mail import Attachment, queue_mail

JOB_KIND = "analytics.weekly_reports"
CHECK_EVERY = timedelta(minutes=15)
REPORT_WEEKDAY = 0  # Monday
REPORT_HOUR = 7  # local time: the report is due from 07:00 on Monday in the account's timezone


@dataclass(frozen=True)
class Week:
    """The week a report covers (Monday..Sunday, inclusive) and the instant from which it is due."""

    start: date
    end: date
    due_at: datetime


def due_week(now: datetime, timezone: str) -> Week | None:
    """The week whose report is due at ``now`` in ``timezone``: only on Monday from ``REPORT_HOUR`` (a report not
    sent that Monday, the server being down all day, is skipped rather than sent late in the week)."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    if local.weekday() != REPORT_WEEKDAY or local.hour < REPORT_HOUR:
        return None
    monday = local.date()
    return Week(
        start=monday - timedelta(days=7),
        end=monday - timedelta(days=1),
        due_at=datetime.combine(monday, time(REPORT_HOUR), tzinfo=zone),
    )


async def set_weekly_report(session: AsyncSession, actor: Actor, *, enabled: bool) -> None:
    """A member switches their own weekly report on or off."""
    permissions.authorize(actor, Permission.OWN_PROFILE)
    permissions.authorize(actor, Permission.VIEW_ANALYTICS)
    await session.execute(update(Member).where(Member.id == actor.member_id).values(weekly_report=enabled))


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


def _talk(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def report_body(account_name: str, week: Week, total: queries.FigureRow, whole_account: bool, console_url: str) -> str:
    """The mail's text: the week's headline figures in words (the CSV attached has them day by day)."""
    counts = total.counts
    part = "" if whole_account else " (the feature sets of your part of the organisation)"
    lines = [
        f"Weekly report for {account_name}{part}: {week.start:%a %d %b %Y} to {week.end:%a %d %b %Y}.",
        "",
        f"Call records sent:        {total.records_total:,} ({counts['records_delivered']:,} delivered to a phone)",
        f"Verified identity shown:  {counts['shown']:,}",
        f"Calls answered:           {counts['answered']:,}",
        f"Calls missed:             {counts['missed']:,}",
        f"Calls rejected:           {counts['rejected']:,}",
        f"Answer rate:              {percent(total.answer_rate)}",
        f"Average talk time:        {_talk(total.average_talk_seconds)}",
        f"Blocked attempts:         {counts['blocked']:,} (possible spoofed calls refused by secure branding)",
        f"Call Me Back requests:    {counts['call_me_back_requests']:,}",
        f"Survey responses:         {counts['survey_responses']:,}",
        "",
        "The attached CSV has these figures day by day (the same columns as the analytics API's CSV).",
        f"Charts and drill-down: {console_url}/analytics",
        "",
        "You get this e-mail because you switched on the weekly report in the console's Settings; switch it off there.",
    ]
    return "\n".join(lines) + "\n"


async def _due_members(db: Database, now: datetime) -> list[tuple[Member, ClientAccount, Week]]:
    async with db.session() as session:
        rows = (
            await session.execute(
                select(Member, ClientAccount)
                .join(ClientAccount, ClientAccount.id == Member.account_id)
                .where(Member.weekly_report.is_(True), Member.status == MEMBER_ACTIVE)
                .order_by(Member.account_id, Member.id)
            )
        ).all()
    due = []
    for member, account in rows:
        week = due_week(now, account.timezone)
        if week is None or (member.weekly_report_sent_at is not None and member.weekly_report_sent_at >= week.due_at):
            continue
        due.append((member, account, week))
    return due


async def send_due_reports(db: Database, settings: Settings) -> int:
    """Queue every report due now; how many this call claimed (another process may have claimed others)."""
    now = clock.now()
    sent = 0
    for member, account, week in await _due_members(db, now):
        async with db.session() as session:
            actor = await members_service.actor_of(session, member)
            visible = await access.visible_feature_sets(session, actor)
        if not permissions.allowed(actor, Permission.VIEW_ANALYTICS):
            continue
        scope = queries.Scope(account.id, week.start, week.end, feature_set_ids=visible.scope_ids)
        by_day, total = await queries.report(db, scope, "day")
        body = report_body(account.name, week, total, visible.whole_account, settings.base_url.rstrip("/") + "/console")
        attachment = Attachment(f"callerid-report-{week.start}-{week.end}.csv", queries.to_csv(by_day, "day"))
        async with db.transaction() as session:
            claimed = await session.execute(
                update(Member)
                .where(
                    Member.id == member.id,
                    Member.weekly_report.is_(True),
                    Member.status == MEMBER_ACTIVE,
                    or_(Member.weekly_report_sent_at.is_(None), Member.weekly_report_sent_at < week.due_at),
                )
                .values(weekly_report_sent_at=now)
            )
            if int(getattr(claimed, "rowcount", 0) or 0) != 1:
                continue  # another process sent it, or the member switched it off meanwhile
            await queue_mail(
                session,
                account_id=account.id,
                recipients=[member.email],
                subject=f"Weekly report for {account.name}: {week.start:%d %b} to {week.end:%d %b %Y}",
                body=body,
                attachments=[attachment],
            )
        sent += 1
    return sent


@handler(JOB_KIND, every=lambda _settings: CHECK_EVERY)
async def weekly_reports(ctx: JobContext, _payload: dict[str, Any]) -> None:
    await send_due_reports(ctx.db, ctx.settings)
