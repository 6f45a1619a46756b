"""Signing in and out, the e-mailed sign-in code, forgotten passwords and invitations (pages before a session)."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from callerid.accounts import members, signin
from callerid.accounts.models import MEMBER_INVITED
from callerid.accounts.service import AccountsError, get_account
from callerid.console import web
from callerid.runtime import runtime_of

router = APIRouter()

# One-time links carry their token in the path: never sent on as a Referer, never logged (the access log writes
# the route template), never cached.
LINK_HEADERS = {"Referrer-Policy": "no-referrer"}


@router.get("/")
async def root() -> Response:
    return RedirectResponse("/console", status_code=307)


def _signed_out_page(request: Request, template: str, context: dict[str, object], status_code: int = 200) -> Response:
    context = {"csrf_token": web.signed_out_csrf(request), **context}
    response = web.render(request, template, context, status_code=status_code, headers=LINK_HEADERS)
    return web.with_csrf_cookie(request, response)


@router.get("/console/sign-in")
async def sign_in_form(request: Request) -> Response:
    runtime = runtime_of(request)
    current = await signin.current(runtime.db, runtime.settings, request.cookies.get(web.SESSION_COOKIE))
    if current is not None and current.state == signin.ACTIVE:
        return web.redirect(web.safe_next(request.query_params.get("next")))
    return _signed_out_page(
        request, "sign_in.html", {"email": "", "next": web.safe_next(request.query_params.get("next")), "choices": []}
    )


@router.post("/console/sign-in")
async def sign_in(request: Request) -> Response:
    runtime = runtime_of(request)
    form = await web.signed_out_form(request)
    email = web.text(form, "email")
    next_path = web.safe_next(web.text(form, "next"))
    chosen = web.text(form, "account")
    try:
        member_id = uuid.UUID(chosen) if chosen else None
    except ValueError:
        member_id = None
    try:
        outcome = await signin.sign_in(
            runtime,
            email=email,
            password=web.text(form, "password"),
            client=web.client_of(request),
            trusted_browser=request.cookies.get(web.BROWSER_COOKIE),
            member_id=member_id,
        )
    except AccountsError as exc:
        errors = {exc.field or "form": exc.message}
        status = 429 if isinstance(exc, signin.Throttled) else 400
        return _signed_out_page(
            request, "sign_in.html", {"email": email, "next": next_path, "errors": errors, "choices": []}, status
        )
    if isinstance(outcome, list):
        return _signed_out_page(request, "sign_in.html", {"email": email, "next": next_path, "choices": outcome})
    target = next_path if outcome.state == signin.ACTIVE else "/console/sign-in/code?" + _next_query(next_path)
    response = web.redirect(target)
    web.set_session_cookie(response, runtime.settings, outcome.token)
    return response


def _next_query(next_path: str) -> str:
    return urlencode({"next": next_path})


async def _pending(request: Request) -> signin.Current | None:
    runtime = runtime_of(request)
    current = await signin.current(runtime.db, runtime.settings, request.cookies.get(web.SESSION_COOKIE))
    return current if current is not None and current.state == signin.PENDING_CODE else None


@router.get("/console/sign-in/code")
async def code_form(request: Request) -> Response:
    pending = await _pending(request)
    if pending is None:
        return web.redirect("/console/sign-in")
    return web.render(
        request,
        "sign_in_code.html",
        {
            "csrf_token": pending.csrf_token,
            "email": pending.member.email,
            "next": web.safe_next(request.query_params.get("next")),
        },
    )


@router.post("/console/sign-in/code")
async def code_submit(request: Request) -> Response:
    runtime = runtime_of(request)
    pending = await _pending(request)
    if pending is None:
        return web.redirect("/console/sign-in", flash="Your sign-in ended. Sign in again.")
    form = await web.read_form(request)
    web.check_csrf(request, form, pending.csrf_token)
    next_path = web.safe_next(web.text(form, "next"))
    try:
        started = await signin.verify_code(
            runtime.db,
            runtime.settings,
            token=request.cookies.get(web.SESSION_COOKIE, ""),
            code=web.text(form, "code"),
            remember_browser=web.text(form, "remember") == "yes",
            client=web.client_of(request),
        )
    except AccountsError as exc:
        if await _pending(request) is None:
            response = web.redirect("/console/sign-in", flash=exc.message)
            web.clear_session_cookie(response, runtime.settings)
            return response
        context = {"csrf_token": pending.csrf_token, "email": pending.member.email, "next": next_path}
        return web.render(request, "sign_in_code.html", {**context, "errors": {"code": exc.message}}, status_code=400)
    response = web.redirect(next_path)
    web.set_session_cookie(response, runtime.settings, started.token)
    if started.trusted_browser:
        web.set_browser_cookie(response, runtime.settings, started.trusted_browser)
    return response


@router.post("/console/sign-in/code/resend")
async def code_resend(request: Request) -> Response:
    runtime = runtime_of(request)
    pending = await _pending(request)
    if pending is None:
        return web.redirect("/console/sign-in")
    form = await web.read_form(request)
    web.check_csrf(request, form, pending.csrf_token)
    try:
        await signin.resend_code(runtime, token=request.cookies.get(web.SESSION_COOKIE, ""))
    except AccountsError as exc:
        context = {"csrf_token": pending.csrf_token, "email": pending.member.email, "next": "/console"}
        status = 429 if isinstance(exc, signin.Throttled) else 400
        return web.render(
            request, "sign_in_code.html", {**context, "errors": {"code": exc.message}}, status_code=status
        )
    return web.redirect("/console/sign-in/code", flash=f"A new code was sent to {pending.member.email}")


@router.post("/console/sign-out")
async def sign_out(request: Request) -> Response:
    runtime = runtime_of(request)
    token = request.cookies.get(web.SESSION_COOKIE)
    current = await signin.current(runtime.db, runtime.settings, token)
    if current is not None:
        form = await web.read_form(request)
        web.check_csrf(request, form, current.csrf_token)
        await signin.sign_out(runtime.db, token)
    response = web.redirect("/console/sign-in", flash="You are signed out")
    web.clear_session_cookie(response, runtime.settings)
    return response


# --- forgotten password -------------------------------------------------------------------------------------------


@router.get("/console/forgot-password")
async def forgot_form(request: Request) -> Response:
    return _signed_out_page(request, "forgot_password.html", {"email": "", "sent": False})


@router.post("/console/forgot-password")
async def forgot_submit(request: Request) -> Response:
    runtime = runtime_of(request)
    form = await web.signed_out_form(request)
    email = web.text(form, "email")
    try:
        await signin.request_password_reset(runtime, email=email)
    except AccountsError as exc:
        status = 429 if isinstance(exc, signin.Throttled) else 400
        context = {"email": email, "sent": False, "errors": {exc.field or "email": exc.message}}
        return _signed_out_page(request, "forgot_password.html", context, status)
    # The same answer whether or not the address has an account: nothing to learn here.
    return _signed_out_page(request, "forgot_password.html", {"email": email, "sent": True})


@router.get("/console/reset-password/{token}")
async def reset_form(request: Request, token: str) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.session() as session:
        member = await members.peek_link(session, token, members.RESET)
    return _signed_out_page(
        request,
        "reset_password.html",
        {"valid": member is not None, "email": member.email if member else ""},
        200 if member is not None else 404,
    )


@router.post("/console/reset-password/{token}")
async def reset_submit(request: Request, token: str) -> Response:
    runtime = runtime_of(request)
    form = await web.signed_out_form(request)
    password = web.text(form, "password")
    try:
        if password != web.text(form, "confirm_password"):
            raise AccountsError("the two passwords are not the same", field="confirm_password")
        member = await signin.reset_password(runtime.db, runtime.settings, token=token, password=password)
    except AccountsError as exc:
        async with runtime.db.session() as session:
            still = await members.peek_link(session, token, members.RESET)
        context = {"valid": still is not None, "email": still.email if still else "", "errors": {}}
        context["errors"] = {exc.field or "password": exc.message}
        return _signed_out_page(request, "reset_password.html", context, 400)
    return web.redirect("/console/sign-in", flash=f"Password changed for {member.email}. Sign in with it.")


# --- invitations -----------------------------------------------------------------------------------------------


async def _invitation(request: Request, token: str) -> dict[str, object] | None:
    """What the invitation page shows, or None when the link is not (or no longer) valid."""
    runtime = runtime_of(request)
    async with runtime.db.session() as session:
        member = await members.peek_link(session, token, members.INVITE)
        if member is None or member.status != MEMBER_INVITED:
            return None
        account = await get_account(session, member.account_id)
    return {"valid": True, "email": member.email, "account_name": account.name, "role": member.role}


@router.get("/console/invitation/{token}")
async def invitation_form(request: Request, token: str) -> Response:
    context = await _invitation(request, token)
    if context is None:
        return _signed_out_page(request, "invitation.html", {"valid": False}, 404)
    return _signed_out_page(request, "invitation.html", context)


@router.post("/console/invitation/{token}")
async def invitation_accept(request: Request, token: str) -> Response:
    runtime = runtime_of(request)
    form = await web.signed_out_form(request)
    password = web.text(form, "password")
    try:
        if password != web.text(form, "confirm_password"):
            raise AccountsError("the two passwords are not the same", field="confirm_password")
        started = await signin.accept_invitation(
            runtime.db, runtime.settings, token=token, password=password, client=web.client_of(request)
        )
    except AccountsError as exc:
        context = await _invitation(request, token)
        if context is None:
            return _signed_out_page(request, "invitation.html", {"valid": False}, 404)
        return _signed_out_page(
            request, "invitation.html", {**context, "errors": {exc.field or "password": exc.message}}, 400
        )
    response = web.redirect("/console", flash="Welcome to callerid: your password is set")
    web.set_session_cookie(response, runtime.settings, started.token)
    if started.trusted_browser:
        web.set_browser_cookie(response, runtime.settings, started.trusted_browser)
    return response
