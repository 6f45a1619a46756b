"""Signing in: sessions (server-side, revocable, idle and absolute expiry), cookie flags, CSRF, throttling, sign
out, password change and reset, and two-factor sign-in with e-mailed codes and trusted browsers."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from callerid import clock
from callerid.accounts.models import ClientAccount, ConsoleSession, Member
from callerid.db import Database
from callerid.webhooks.models import OutboxMail
from tests.console.conftest import ConsoleAccount, browser, csrf_of, page_csrf, sign_in


async def mails_to(db: Database, address: str) -> list[OutboxMail]:
    async with db.session() as session:
        rows = await session.scalars(select(OutboxMail).order_by(OutboxMail.created_at))
        return [m for m in rows.all() if address in m.recipients]


async def session_count(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(ConsoleSession)) or 0)


def cookie_header(response: httpx.Response, name: str) -> str:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no {name} cookie set")


async def test_sign_in_sets_a_hardened_session_cookie_and_signs_out(
    app: Any, db: Database, console_account: ConsoleAccount
) -> None:
    async with browser(app) as http:
        response = await sign_in(http, console_account.email.upper(), console_account.password)
        assert response.status_code == 303 and response.headers["location"] == "/console"
        cookie = cookie_header(response, "callerid_session")
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # the public base URL of the test settings is http
        assert (await http.get("/console")).status_code == 200
        assert await session_count(db) == 1
        # Sign out ends the session on the server: the same cookie no longer opens anything.
        token = http.cookies.get("callerid_session")
        out = await http.post("/console/sign-out", data={"csrf_token": await page_csrf(http)})
        assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
        assert await session_count(db) == 0
        http.cookies.set("callerid_session", token or "", domain="testserver", path="/console")
        assert (await http.get("/console")).status_code == 303


@pytest.mark.parametrize("settings_overrides", [{"public_base_url": "https://callerid.example.com"}])
async def test_cookies_are_secure_behind_https(app: Any, console_account: ConsoleAccount) -> None:
    async with browser(app, base_url="https://testserver") as http:
        form = await http.get("/console/sign-in")
        assert "Secure" in cookie_header(form, "callerid_csrf")
        response = await sign_in(http, console_account.email, console_account.password)
        assert "Secure" in cookie_header(response, "callerid_session")


async def test_wrong_password_and_unknown_address_get_the_same_answer(
    app: Any, console_account: ConsoleAccount
) -> None:
    async with browser(app) as http:
        wrong = await sign_in(http, console_account.email, "not the password")
        unknown = await sign_in(http, "nobody@example.com", "not the password")
    for response in (wrong, unknown):
        assert response.status_code == 400
        assert '<p class="error" id="password-error">Email or password is incorrect</p>' in response.text
        assert "callerid_session" not in response.headers.get("set-cookie", "")
    # The form keeps what was typed (but never the password).
    assert f'value="{console_account.email}"' in wrong.text
    assert "not the password" not in wrong.text


async def test_sign_in_without_the_csrf_token_is_refused(app: Any, console_account: ConsoleAccount) -> None:
    async with browser(app) as http:
        await http.get("/console/sign-in")
        response = await http.post(
            "/console/sign-in", data={"email": console_account.email, "password": console_account.password}
        )
        assert response.status_code == 403
        assert "callerid_session" not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    "settings_overrides",
    [{"console_sign_in_failures_per_email": "3/15 minutes", "console_sign_in_failures_per_address": "5/15 minutes"}],
)
async def test_sign_in_is_throttled_per_address_and_per_client(app: Any, console_account: ConsoleAccount) -> None:
    async with browser(app) as http:
        for _ in range(3):
            assert (await sign_in(http, console_account.email, "wrong password!")).status_code == 400
        # Over the limit even the right password is refused, with a clear message.
        blocked = await sign_in(http, console_account.email, console_account.password)
        assert blocked.status_code == 429
        assert "Too many failed sign-ins from this e-mail address. Try again in 15 minutes." in blocked.text
        # Other addresses from the same client: 2 more failures reach the per-client limit of 5.
        for _ in range(2):
            assert (await sign_in(http, "someone@example.com", "wrong password!")).status_code == 400
        blocked = await sign_in(http, "else@example.com", "wrong password!")
        assert blocked.status_code == 429
        assert "Too many failed sign-ins from your network address." in blocked.text


async def test_sessions_end_when_idle_and_at_their_absolute_expiry(
    app: Any, console_account: ConsoleAccount, settings: Any
) -> None:
    async with browser(app) as http:
        await sign_in(http, console_account.email, console_account.password)
        clock.advance(timedelta(minutes=settings.console_session_idle_minutes - 1))
        assert (await http.get("/console")).status_code == 200  # activity keeps it alive
        clock.advance(timedelta(minutes=settings.console_session_idle_minutes + 1))
        idle = await http.get("/console/api-keys")
        assert idle.status_code == 303
        assert idle.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fapi-keys"

        await sign_in(http, console_account.email, console_account.password)
        for _ in range(settings.console_session_max_hours * 2):  # active every 30 minutes
            clock.advance(timedelta(minutes=30))
            response = await http.get("/console")
        assert response.status_code == 303  # ended at the absolute expiry despite the activity


async def test_sign_in_returns_to_the_page_asked_for_and_never_elsewhere(
    app: Any, console_account: ConsoleAccount
) -> None:
    async with browser(app) as http:
        page = await http.get("/console/sign-in?next=/console/webhooks")
        data = {"email": console_account.email, "password": console_account.password, "csrf_token": csrf_of(page.text)}
        response = await http.post("/console/sign-in", data={**data, "next": "/console/webhooks"})
        assert response.headers["location"] == "/console/webhooks"
    async with browser(app) as http:
        page = await http.get("/console/sign-in")
        data = {"email": console_account.email, "password": console_account.password, "csrf_token": csrf_of(page.text)}
        response = await http.post("/console/sign-in", data={**data, "next": "https://evil.example.com/"})
        assert response.headers["location"] == "/console"


async def test_changing_the_password_ends_every_other_session(
    app: Any, db: Database, console_account: ConsoleAccount
) -> None:
    async with browser(app) as laptop, browser(app) as phone:
        await sign_in(laptop, console_account.email, console_account.password)
        await sign_in(phone, console_account.email, console_account.password)
        csrf = await page_csrf(laptop, "/console/settings")
        short = await laptop.post(
            "/console/settings/password",
            data={
                "csrf_token": csrf,
                "current_password": console_account.password,
                "new_password": "short",
                "confirm_password": "short",
            },
        )
        assert short.status_code == 400
        assert '<p class="error" id="new_password-error">password must be at least 10 characters</p>' in short.text
        wrong = await laptop.post(
            "/console/settings/password",
            data={
                "csrf_token": csrf,
                "current_password": "not it at all",
                "new_password": "a new long password",
                "confirm_password": "a new long password",
            },
        )
        assert "current password is not right" in wrong.text
        changed = await laptop.post(
            "/console/settings/password",
            data={
                "csrf_token": csrf,
                "current_password": console_account.password,
                "new_password": "a new long password",
                "confirm_password": "a new long password",
            },
        )
        assert changed.status_code == 303
        assert (await laptop.get("/console")).status_code == 200  # this browser got a new session
        assert (await phone.get("/console")).status_code == 303  # the other one is signed out
        assert await session_count(db) == 1
    async with browser(app) as http:
        assert (await sign_in(http, console_account.email, console_account.password)).status_code == 400
        assert (await sign_in(http, console_account.email, "a new long password")).status_code == 303


async def test_forgotten_password_link_works_once_for_an_hour(
    app: Any, db: Database, console_account: ConsoleAccount
) -> None:
    async with browser(app) as signed_in:
        await sign_in(signed_in, console_account.email, console_account.password)
        async with browser(app) as http:
            form = await http.get("/console/forgot-password")
            answer = await http.post(
                "/console/forgot-password", data={"email": console_account.email, "csrf_token": csrf_of(form.text)}
            )
            assert answer.status_code == 200
            assert "a link to choose a new password is on its way" in answer.text
            # An unknown address gets the same answer and no mail.
            unknown = await http.post(
                "/console/forgot-password", data={"email": "nobody@example.com", "csrf_token": csrf_of(form.text)}
            )
            assert "a link to choose a new password is on its way" in unknown.text
            assert await mails_to(db, "nobody@example.com") == []

            [mail] = await mails_to(db, console_account.email)
            assert mail.subject == "Reset your callerid console password"
            link = re.search(r"http://testserver(/console/reset-password/\S+)", mail.body)
            assert link is not None
            page = await http.get(link.group(1))
            assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
            mismatch = await http.post(
                link.group(1),
                data={"csrf_token": csrf_of(page.text), "password": "brand new secret", "confirm_password": "other"},
            )
            assert "the two passwords are not the same" in mismatch.text
            done = await http.post(
                link.group(1),
                data={
                    "csrf_token": csrf_of(page.text),
                    "password": "brand new secret",
                    "confirm_password": "brand new secret",
                },
            )
            assert done.status_code == 303 and done.headers["location"] == "/console/sign-in"
            # Used once: the link is dead, and the session opened with the old password ended.
            assert (await http.get(link.group(1))).status_code == 404
            assert (await signed_in.get("/console")).status_code == 303
            assert (await sign_in(http, console_account.email, "brand new secret")).status_code == 303

        # A new link expires after an hour.
        async with browser(app) as http:
            form = await http.get("/console/forgot-password")
            await http.post(
                "/console/forgot-password", data={"email": console_account.email, "csrf_token": csrf_of(form.text)}
            )
            latest = (await mails_to(db, console_account.email))[-1]
            link = re.search(r"http://testserver(/console/reset-password/\S+)", latest.body)
            assert link is not None
            clock.advance(timedelta(minutes=61))
            assert (await http.get(link.group(1))).status_code == 404


async def two_factor_code(db: Database, email: str) -> str:
    mail = (await mails_to(db, email))[-1]
    found = re.search(r"\b(\d{6})\b", mail.body)
    assert found is not None and mail.subject == f"Your callerid sign-in code: {found.group(1)}"
    return found.group(1)


async def enter_code(http: httpx.AsyncClient, code: str, remember: bool = True) -> httpx.Response:
    page = await http.get("/console/sign-in/code")
    assert page.status_code == 200
    data = {"csrf_token": csrf_of(page.text), "code": code, "next": "/console"}
    if remember:
        data["remember"] = "yes"
    return await http.post("/console/sign-in/code", data=data)


async def test_two_factor_asks_a_new_browser_for_an_emailed_code(
    app: Any, db: Database, console_account: ConsoleAccount
) -> None:
    async with db.transaction() as session:
        await session.execute(update(Member).where(Member.email == console_account.email).values(two_factor=True))
    async with browser(app) as http:
        response = await sign_in(http, console_account.email, console_account.password)
        assert response.headers["location"] == "/console/sign-in/code?next=%2Fconsole"
        # Pending a code, the session opens nothing.
        assert (await http.get("/console")).status_code == 303
        code = await two_factor_code(db, console_account.email)
        wrong = await enter_code(http, "000000" if code != "000000" else "111111")
        assert wrong.status_code == 400 and "That code is not right (4 tries left)" in wrong.text
        right = await enter_code(http, code)
        assert right.status_code == 303
        assert "callerid_browser=" in right.headers.get("set-cookie", "")
        assert (await http.get("/console")).status_code == 200
        # The same browser later: no code.
        await http.post("/console/sign-out", data={"csrf_token": await page_csrf(http)})
        again = await sign_in(http, console_account.email, console_account.password)
        assert again.headers["location"] == "/console"
    # Another browser: asked again; five wrong codes end the attempt.
    async with browser(app) as http:
        response = await sign_in(http, console_account.email, console_account.password)
        assert response.headers["location"].startswith("/console/sign-in/code")
        code = await two_factor_code(db, console_account.email)
        for _ in range(4):
            await enter_code(http, "999999" if code != "999999" else "888888")
        last = await enter_code(http, "999999" if code != "999999" else "888888")
        assert last.status_code == 303 and last.headers["location"] == "/console/sign-in"
        assert (await enter_code_status(http)) == 303  # the pending sign-in is gone


async def enter_code_status(http: httpx.AsyncClient) -> int:
    return (await http.get("/console/sign-in/code")).status_code


async def test_an_admin_can_require_two_factor_for_everyone(
    app: Any, db: Database, console_account: ConsoleAccount
) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(ClientAccount).where(ClientAccount.id == console_account.account_id).values(require_two_factor=True)
        )
    async with browser(app) as http:
        response = await sign_in(http, console_account.email, console_account.password)
        assert response.headers["location"].startswith("/console/sign-in/code")
        # A code expires after its lifetime.
        code = await two_factor_code(db, console_account.email)
        clock.advance(timedelta(minutes=11))
        expired = await enter_code(http, code)
        assert expired.status_code == 303 and expired.headers["location"] == "/console/sign-in"


async def test_revoking_a_member_ends_their_sessions_at_once(app: Any, db: Database, settings: Any) -> None:
    from tests.console.conftest import build_world

    world = await build_world(db, settings, "Acme")
    owner = world.people["process_owner"]
    async with browser(app) as admin, browser(app) as victim:
        await sign_in(admin, world.people["admin"].email, world.people["admin"].password)
        await sign_in(victim, owner.email, owner.password)
        assert (await victim.get("/console")).status_code == 200
        csrf = await page_csrf(admin, f"/console/members/{owner.member_id}")
        revoked = await admin.post(f"/console/members/{owner.member_id}/revoke", data={"csrf_token": csrf})
        assert revoked.status_code == 303
        assert (await victim.get("/console")).status_code == 303
        assert (await sign_in(victim, owner.email, owner.password)).status_code == 400
        member_page = await admin.get(f"/console/members/{owner.member_id}")
        assert "Revoked" in member_page.text and "Restore access" in member_page.text
