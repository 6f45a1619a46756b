"""Settings: the account's (name, timezone, who gets webhook-failure e-mails, two-factor policy; admins) and the
member's own (password, two-factor sign-in, other signed-in browsers; everyone)."""

from __future__ import annotations

import uuid
from zoneinfo import available_timezones

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.responses import Response

from callerid.accounts import members, signin
from callerid.accounts.models import MEMBER_REVOKED, Member
from callerid.accounts.permissions import ADMIN, Permission
from callerid.accounts.service import AccountsError
from callerid.analytics import weekly_report as analytics_report
from callerid.console import web

router = APIRouter()
TIMEZONES = sorted(available_timezones())


async def _context(page: web.Page) -> dict[str, object]:
    admins: list[Member] = []
    if page.can(Permission.MANAGE_ACCOUNT):
        async with page.runtime.db.session() as session:
            admins = list(
                (
                    await session.scalars(
                        select(Member)
                        .where(
                            Member.account_id == page.account_id, Member.role == ADMIN, Member.status != MEMBER_REVOKED
                        )
                        .order_by(Member.email)
                    )
                ).all()
            )
    account = page.current.account
    return {
        "admins": admins,
        "timezones": [(tz, tz) for tz in TIMEZONES],
        "values": {"name": account.name, "timezone": account.timezone},
        "chosen": {str(a.id) for a in admins if a.failure_emails},
        "other_sessions": await signin.other_sessions(page.runtime.db, page.actor.member_id, page.current.token_hash),
        "errors": {},
    }


@router.get("/console/settings")
async def settings_page(request: Request) -> Response:
    page = await web.page_for(request, Permission.OWN_PROFILE)
    return web.render(request, "settings.html", await _context(page), page=page)


@router.post("/console/settings/account")
async def save_account(request: Request) -> Response:
    page, form = await web.form_for(request, Permission.MANAGE_ACCOUNT)
    chosen: list[uuid.UUID] = []
    for value in form.getlist("failure_emails"):
        try:
            chosen.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    try:
        async with page.runtime.db.transaction() as session:
            await members.update_account_settings(
                session,
                page.actor,
                name=web.text(form, "name"),
                timezone=web.text(form, "timezone"),
                failure_email_member_ids=chosen,
                require_two_factor=web.text(form, "require_two_factor") == "yes",
            )
    except AccountsError as exc:
        context = await _context(page)
        context.update(
            values={"name": web.text(form, "name"), "timezone": web.text(form, "timezone")},
            chosen={str(c) for c in chosen},
            errors={exc.field or "form": exc.message},
        )
        return web.render(request, "settings.html", context, page=page, status_code=400)
    return web.redirect("/console/settings", flash="Account settings saved")


@router.post("/console/settings/password")
async def change_password(request: Request) -> Response:
    page, form = await web.form_for(request, Permission.OWN_PROFILE)
    new_password = web.text(form, "new_password")
    try:
        if new_password != web.text(form, "confirm_password"):
            raise AccountsError("the two passwords are not the same", field="confirm_password")
        started = await signin.change_password(
            page.runtime.db,
            page.settings,
            member_id=page.actor.member_id,
            current_password=web.text(form, "current_password"),
            new_password=new_password,
            client=web.client_of(request),
        )
    except AccountsError as exc:
        context = await _context(page)
        context["errors"] = {exc.field or "form": exc.message}
        return web.render(request, "settings.html", context, page=page, status_code=400)
    response = web.redirect("/console/settings", flash="Password changed: every other browser was signed out")
    web.set_session_cookie(response, page.settings, started.token)
    return response


@router.post("/console/settings/two-factor")
async def two_factor(request: Request) -> Response:
    page, form = await web.form_for(request, Permission.OWN_PROFILE)
    enabled = web.text(form, "two_factor") == "on"
    async with page.runtime.db.transaction() as session:
        await members.set_own_two_factor(session, page.actor, enabled=enabled)
    message = (
        "Two-factor sign-in is on: new browsers will ask for an e-mailed code"
        if enabled
        else ("Two-factor sign-in is off")
    )
    return web.redirect("/console/settings", flash=message)


@router.post("/console/settings/weekly-report")
async def weekly_report(request: Request) -> Response:
    """The member's own weekly analytics e-mail, on or off (``analytics.weekly_report`` sends it on Mondays)."""
    page, form = await web.form_for(request, Permission.OWN_PROFILE)
    enabled = web.text(form, "weekly_report") == "on"
    async with page.runtime.db.transaction() as session:
        await analytics_report.set_weekly_report(session, page.actor, enabled=enabled)
    message = (
        "Weekly report on: you will get last week's figures by e-mail every Monday morning"
        if enabled
        else "Weekly report off"
    )
    return web.redirect("/console/settings", flash=message)


@router.post("/console/settings/sessions/end-others")
async def end_other_sessions(request: Request) -> Response:
    page, _ = await web.form_for(request, Permission.OWN_PROFILE)
    ended = await signin.end_other_sessions(page.runtime.db, page.actor.member_id, page.current.token_hash)
    return web.redirect("/console/settings", flash=f"Signed out of {ended} other browser{'s' if ended != 1 else ''}")
