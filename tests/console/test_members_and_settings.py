"""Members and settings through the console: invitations by e-mail, roles with a scope, revoke / restore /
delete, account settings (name, timezone, failure e-mails, two-factor policy) and the member's own two-factor."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callerid import clock
from callerid.accounts import members
from callerid.accounts.models import ClientAccount, Member
from callerid.db import Database
from tests.console.conftest import World, browser, build_world, csrf_of, page_csrf, sign_in
from tests.console.test_sign_in import mails_to


async def invite(admin: httpx.AsyncClient, email: str, role: str, scope: str = "") -> httpx.Response:
    csrf = await page_csrf(admin, "/console/members/invite")
    return await admin.post(
        "/console/members/invite", data={"csrf_token": csrf, "email": email, "role": role, "scope": scope}
    )


async def invitation_link(db: Database, email: str) -> str:
    mail = (await mails_to(db, email))[-1]
    found = re.search(r"http://testserver(/console/invitation/\S+)", mail.body)
    assert found is not None
    return found.group(1)


@pytest.fixture
async def world(db: Database, settings: Any) -> World:
    return await build_world(db, settings, "Acme")


@pytest.fixture
async def admin(app: Any, world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as http:
        await sign_in(http, world.people["admin"].email, world.people["admin"].password)
        yield http


async def test_an_invited_owner_sets_a_password_and_is_signed_in(
    app: Any, db: Database, settings: Any, world: World, admin: httpx.AsyncClient
) -> None:
    sent = await invite(admin, "New.Owner@Example.com", "operation_owner", str(world.nodes["delivery"]))
    assert sent.status_code == 303
    page = await admin.get(sent.headers["location"])
    assert "Invitation sent to new.owner@example.com" in page.text
    assert "Operation Owner · responsible for Sales / Delivery" in page.text and "Invited" in page.text
    again = await invite(admin, "new.owner@example.com", "process_owner", str(world.nodes["returns"]))
    assert '<p class="error" id="email-error">new.owner@example.com is already a member of this account</p>' in (
        again.text
    )
    missing_scope = await invite(admin, "other@example.com", "department_owner")
    assert "choose the department this Department Owner is responsible for" in missing_scope.text
    link = await invitation_link(db, "new.owner@example.com")
    async with browser(app) as http:
        form = await http.get(link)
        assert "Join Acme" in form.text and "Operation Owner" in form.text
        assert form.headers["referrer-policy"] == "no-referrer"
        short = await http.post(
            link, data={"csrf_token": csrf_of(form.text), "password": "short", "confirm_password": "short"}
        )
        assert '<p class="error" id="password-error">password must be at least 10 characters</p>' in short.text
        accepted = await http.post(
            link,
            data={
                "csrf_token": csrf_of(form.text),
                "password": "owner password 1",
                "confirm_password": "owner password 1",
            },
        )
        assert accepted.status_code == 303 and accepted.headers["location"] == "/console"
        home = await http.get("/console")
        assert "Welcome to callerid: your password is set" in home.text
        # An operation owner's navigation: no API keys, webhooks or account settings.
        navigation = re.findall(r'<li><a href="(/console[^"]*)"', home.text)
        assert navigation == [
            "/console",
            "/console/organisation",
            "/console/caller-id",
            "/console/feature-sets",
            "/console/numbers",
            "/console/activity",
            "/console/analytics",
            "/console/members",
            "/console/settings",
        ]
        assert (await http.get("/console/api-keys")).status_code == 403
        # The link works once.
        assert (await http.get(link)).status_code == 404
    async with db.session() as session:
        member = await session.scalar(select(Member).where(Member.email == "new.owner@example.com"))
    assert member is not None and member.status == "active" and member.invited_by_email == world.people["admin"].email


async def test_invitations_expire_and_can_be_sent_again(
    app: Any, db: Database, settings: Any, world: World, admin: httpx.AsyncClient
) -> None:
    sent = await invite(admin, "late@example.com", "admin")
    first = await invitation_link(db, "late@example.com")
    clock.advance(timedelta(days=settings.console_invite_days, minutes=1))
    async with browser(app) as http:
        expired = await http.get(first)
        assert expired.status_code == 404 and "This invitation does not work any more" in expired.text
    await sign_in(admin, world.people["admin"].email, world.people["admin"].password)
    member_page = sent.headers["location"]
    resent = await admin.post(f"{member_page}/resend-invitation", data={"csrf_token": await page_csrf(admin)})
    assert resent.status_code == 303
    second = await invitation_link(db, "late@example.com")
    assert second != first
    async with browser(app) as http:
        assert (await http.get(second)).status_code == 200


async def test_roles_change_and_access_is_revoked_restored_and_deleted(
    app: Any, world: World, admin: httpx.AsyncClient
) -> None:
    owner = world.people["process_owner"]
    page = await admin.get(f"/console/members/{owner.member_id}")
    changed = await admin.post(
        f"/console/members/{owner.member_id}/role",
        data={"csrf_token": csrf_of(page.text), "role": "operation_owner", "scope": str(world.nodes["delivery"])},
    )
    assert changed.status_code == 303
    assert "is now Operation Owner" in (await admin.get(changed.headers["location"])).text
    wrong_kind = await admin.post(
        f"/console/members/{owner.member_id}/role",
        data={"csrf_token": csrf_of(page.text), "role": "department_owner", "scope": str(world.nodes["delivery"])},
    )
    assert '<p class="error" id="scope-error">choose a department of this account</p>' in wrong_kind.text
    own = await admin.post(
        f"/console/members/{world.people['admin'].member_id}/role",
        data={"csrf_token": csrf_of(page.text), "role": "process_owner", "scope": str(world.nodes["returns"])},
    )
    assert "you cannot change your own role; ask another admin" in own.text

    confirm = await admin.get(f"/console/members/{owner.member_id}/revoke")
    assert f"Revoke access for {owner.email}?" in confirm.text
    await admin.post(f"/console/members/{owner.member_id}/revoke", data={"csrf_token": csrf_of(page.text)})
    async with browser(app) as http:
        assert (await sign_in(http, owner.email, owner.password)).status_code == 400
    restored = await admin.post(f"/console/members/{owner.member_id}/restore", data={"csrf_token": csrf_of(page.text)})
    assert restored.status_code == 303
    async with browser(app) as http:
        assert (await sign_in(http, owner.email, owner.password)).status_code == 303

    deleted = await admin.post(f"/console/members/{owner.member_id}/delete", data={"csrf_token": csrf_of(page.text)})
    assert deleted.status_code == 303
    listing = await admin.get("/console/members")
    assert f"{owner.email} was deleted" in listing.text
    assert f'href="/console/members/{owner.member_id}"' not in listing.text
    assert (await admin.get(f"/console/members/{owner.member_id}")).status_code == 404
    roles = await admin.get("/console/members/roles")
    assert "Create, regenerate and delete API keys" in roles.text


async def test_account_settings_and_who_gets_failure_emails(
    app: Any, db: Database, settings: Any, world: World, admin: httpx.AsyncClient
) -> None:
    second = await invite(admin, "second.admin@example.com", "admin")
    assert second.status_code == 303
    page = await admin.get("/console/settings")
    csrf = csrf_of(page.text)
    async with db.session() as session:
        second_id = await session.scalar(select(Member.id).where(Member.email == "second.admin@example.com"))
    bad = await admin.post(
        "/console/settings/account",
        data={"csrf_token": csrf, "name": "Acme Gifts", "timezone": "Mars/Olympus"},
    )
    assert bad.status_code == 400
    assert "timezone &#39;Mars/Olympus&#39; is not an IANA timezone (e.g. Asia/Kolkata)" in bad.text
    none_chosen = await admin.post(
        "/console/settings/account",
        data={"csrf_token": csrf, "name": "Acme Gifts", "timezone": "Europe/Paris"},
    )
    assert "choose at least one admin to receive webhook-failure e-mails" in none_chosen.text
    saved = await admin.post(
        "/console/settings/account",
        data={
            "csrf_token": csrf,
            "name": "Acme Gifts",
            "timezone": "Europe/Paris",
            "failure_emails": str(second_id),
            "require_two_factor": "yes",
        },
    )
    assert saved.status_code == 303
    shown = await admin.get("/console/settings")
    assert "Account settings saved" in shown.text and 'value="Acme Gifts"' in shown.text
    assert re.search(r'<time datetime="[^"]+" title="[^"]+ UTC">', (await admin.get("/console/members")).text)
    async with db.session() as session:
        account = await session.get(ClientAccount, world.account_id)
        assert account is not None
        assert (account.name, account.timezone, account.require_two_factor) == ("Acme Gifts", "Europe/Paris", True)
        # The invited admin has not accepted yet: until then every active admin is warned.
        assert await members.failure_notice_recipients(session, world.account_id) == [world.people["admin"].email]


async def test_a_member_turns_two_factor_on_for_themselves(app: Any, world: World) -> None:
    owner = world.people["department_owner"]
    async with browser(app) as http:
        await sign_in(http, owner.email, owner.password)
        page = await http.get("/console/settings")
        assert "Save account settings" not in page.text  # the account's settings are for admins
        on = await http.post(
            "/console/settings/two-factor", data={"csrf_token": csrf_of(page.text), "two_factor": "on"}
        )
        assert on.status_code == 303
        assert "Turn off two-factor sign-in" in (await http.get("/console/settings")).text
    async with browser(app) as http:
        response = await sign_in(http, owner.email, owner.password)
        assert response.headers["location"].startswith("/console/sign-in/code")


async def test_choosing_a_role_narrows_the_nodes_offered(app: Any, world: World) -> None:
    async with browser(app) as http:
        owner = world.people["department_owner"]  # of Sales: Support is not theirs to give
        await sign_in(http, owner.email, owner.password)
        field = await http.get("/console/members/scope-field?role=process_owner", headers={"HX-Request": "true"})
        assert field.text.startswith('<div id="scope-field">')
        offered = re.findall(r'<option value="([0-9a-f-]{36})"[^>]*>([^<]+)</option>', field.text)
        assert [name for _, name in offered] == ["Sales / Delivery / Returns", "Sales / Delivery / Returns / Refunds"]
        departments = await http.get("/console/members/scope-field?role=department_owner")
        assert re.findall(r'<option value="[0-9a-f-]{36}"[^>]*>([^<]+)</option>', departments.text) == ["Sales"]
    async with browser(app) as http:
        admin = world.people["admin"]
        await sign_in(http, admin.email, admin.password)
        admins = await http.get("/console/members/scope-field?role=admin")
        assert "Admins are responsible for the whole account." in admins.text
        assert '<input type="hidden" name="scope" value="">' in admins.text
