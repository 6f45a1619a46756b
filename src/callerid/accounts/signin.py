"""Console sign-in: passwords, e-mailed codes, server-side sessions and password resets.

- Sessions live in ``console_sessions`` (the cookie holds a random token, the table its SHA-256), so signing out,
  revoking a member or changing a password ends them at once on every process. They end after
  ``console_session_idle_minutes`` without a request and ``console_session_max_hours`` after sign-in.
- Failed sign-ins are counted per e-mail address and per client address (shared through Redis in production);
  past the limit the form says how long to wait, whether or not the address has an account.
- Two-factor sign-in: when the member asked for it or the account requires it, a browser that has not confirmed
  a code before gets a 6-digit code by e-mail; the session grants nothing until the code is entered.
- Passwords are checked with Argon2 off the event loop (argon2-cffi releases the GIL), and an unknown address
  costs the same hashing as a known one, so timing does not tell who has an account.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from limits import parse
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.accounts import members
from callerid.accounts.models import (
    MEMBER_ACTIVE,
    ClientAccount,
    ConsoleSession,
    Member,
    TrustedBrowser,
)
from callerid.accounts.ratelimit import RateLimiter
from callerid.accounts.secrets import (
    hash_password,
    new_session_token,
    new_sign_in_code,
    sha256_hex,
    verify_password,
)
from callerid.accounts.service import AccountsError
from callerid.config import Settings
from callerid.db import Database
from callerid.display_text import unstorable
from callerid.failures import LimitExceeded
from callerid.webhooks import mail

if TYPE_CHECKING:
    from callerid.runtime import Runtime

ACTIVE = "active"
PENDING_CODE = "pending_code"
# Touching last_seen_at on every page view would be a write per request; a minute's precision is plenty.
TOUCH_EVERY = timedelta(minutes=1)
WRONG_CREDENTIALS = "Email or password is incorrect"
# Verified against when the address has no account, so both cases cost one Argon2 check.
_DUMMY_HASH = hash_password("callerid-timing-equaliser")


class Throttled(LimitExceeded, AccountsError):
    """Too many attempts; ``retry_after`` seconds until the next is allowed (a form shows it like any other)."""

    def __init__(self, message: str, retry_after: int):
        LimitExceeded.__init__(self, message, retry_after=retry_after)


@dataclass(frozen=True)
class Client:
    """The browser as the request shows it (kept on the session so a member can recognise their sign-ins)."""

    address: str
    user_agent: str


@dataclass(frozen=True)
class Started:
    """A session was created: set ``token`` as the session cookie (and ``trusted_browser`` when given)."""

    token: str
    state: str
    csrf_token: str
    trusted_browser: str | None = None


@dataclass(frozen=True)
class AccountChoice:
    member_id: uuid.UUID
    account_name: str


@dataclass(frozen=True)
class Current:
    """A live session with its member and account, as a console request sees them."""

    token_hash: str
    state: str
    csrf_token: str
    member: Member
    account: ClientAccount
    code_sent_at: object | None


def _minutes(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


async def _check_throttle(limiter: RateLimiter, settings: Settings, email: str, address: str) -> None:
    for spec, identity, whom in (
        (settings.console_sign_in_failures_per_email, f"console-signin-email:{email}", "this e-mail address"),
        (settings.console_sign_in_failures_per_address, f"console-signin-address:{address}", "your network address"),
    ):
        wait = await limiter.blocked(parse(spec), identity)
        if wait is not None:
            raise Throttled(f"Too many failed sign-ins from {whom}. Try again in {_minutes(wait)}.", wait)


async def _count_failure(limiter: RateLimiter, settings: Settings, email: str, address: str) -> None:
    await limiter.hit(parse(settings.console_sign_in_failures_per_email), f"console-signin-email:{email}")
    await limiter.hit(parse(settings.console_sign_in_failures_per_address), f"console-signin-address:{address}")


async def throttle_mail(limiter: RateLimiter, settings: Settings, email: str) -> None:
    """At most ``console_mail_requests_per_email`` reset/code e-mails per address (counted on every request)."""
    wait = await limiter.hit(parse(settings.console_mail_requests_per_email), f"console-mail:{email}")
    if wait is not None:
        raise Throttled(f"Too many e-mails were sent to this address. Try again in {_minutes(wait)}.", wait)


def _check_lookup(email: str) -> None:
    """No member's address holds a NUL, and PostgreSQL could not even compare one (callerid.display_text)."""
    if unstorable(email) is not None:
        raise AccountsError("Enter a valid e-mail address", field="email")


async def sign_in(
    runtime: Runtime,
    *,
    email: str,
    password: str,
    client: Client,
    trusted_browser: str | None = None,
    member_id: uuid.UUID | None = None,
) -> Started | list[AccountChoice]:
    """Check e-mail and password and start a session (pending a code when two-factor applies).

    When the same e-mail and password open several accounts, returns the choices; call again with ``member_id``.
    """
    db, settings = runtime.db, runtime.settings
    email = email.strip().lower()
    if not email:
        raise AccountsError("Enter your e-mail address", field="email")
    _check_lookup(email)
    if not password:
        raise AccountsError("Enter your password", field="password")
    await _check_throttle(runtime.limiter, settings, email, client.address)
    async with db.session() as session:
        candidates = (
            await session.execute(
                select(Member, ClientAccount.name)
                .join(ClientAccount, ClientAccount.id == Member.account_id)
                .where(func.lower(Member.email) == email, Member.status == MEMBER_ACTIVE)
                .order_by(ClientAccount.name, Member.id)
            )
        ).all()
    matched: list[tuple[Member, str]] = []
    for member, account_name in candidates:
        if await asyncio.to_thread(verify_password, member.password_hash, password):
            matched.append((member, account_name))
    if not candidates:
        await asyncio.to_thread(verify_password, _DUMMY_HASH, password)
    if not matched:
        await _count_failure(runtime.limiter, settings, email, client.address)
        raise AccountsError(WRONG_CREDENTIALS, field="password")
    if member_id is not None:
        matched = [(m, name) for m, name in matched if m.id == member_id] or matched
    if len(matched) > 1:
        return [AccountChoice(m.id, name) for m, name in matched]
    member = matched[0][0]
    async with db.transaction() as session:
        started = await _start(session, settings, member, client, trusted_browser=trusted_browser)
    return started


async def _trusted(session: AsyncSession, member_id: uuid.UUID, token: str | None) -> bool:
    if not token:
        return False
    row = await session.get(TrustedBrowser, sha256_hex(token))
    return row is not None and row.member_id == member_id and row.expires_at > clock.now()


async def _start(
    session: AsyncSession, settings: Settings, member: Member, client: Client, *, trusted_browser: str | None
) -> Started:
    account = await session.get(ClientAccount, member.account_id)
    assert account is not None
    needs_code = (member.two_factor or account.require_two_factor) and not await _trusted(
        session, member.id, trusted_browser
    )
    if needs_code:
        started = await _new_session(session, settings, member, client, PENDING_CODE)
        await _send_code(session, settings, started.token, member, account)
        return started
    started = await _new_session(session, settings, member, client, ACTIVE)
    await _signed_in(session, member)
    return started


async def _new_session(
    session: AsyncSession, settings: Settings, member: Member, client: Client, state: str
) -> Started:
    token = new_session_token()
    now = clock.now()
    csrf_token = new_session_token()
    session.add(
        ConsoleSession(
            token_hash=sha256_hex(token),
            member_id=member.id,
            account_id=member.account_id,
            state=state,
            csrf_token=csrf_token,
            code_tries=0,
            user_agent=client.user_agent[:300],
            client_address=client.address[:64],
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=settings.console_session_max_hours),
        )
    )
    await session.flush()
    return Started(token, state, csrf_token)


async def _trust_browser(session: AsyncSession, settings: Settings, member_id: uuid.UUID) -> str:
    """A browser that proved it reads the member's e-mail (a code, an invitation link): not asked again for a while."""
    token = new_session_token()
    now = clock.now()
    session.add(
        TrustedBrowser(
            token_hash=sha256_hex(token),
            member_id=member_id,
            created_at=now,
            expires_at=now + timedelta(days=settings.console_trusted_browser_days),
        )
    )
    await session.flush()
    return token


async def _signed_in(session: AsyncSession, member: Member) -> None:
    await session.execute(
        Member.__table__.update().where(Member.__table__.c.id == member.id).values(last_sign_in_at=clock.now())
    )


def _code_hash(token_hash: str, code: str) -> str:
    # Bound to the session: a code is only good for the sign-in it was sent for.
    return sha256_hex(f"{token_hash}:{code}")


async def _send_code(
    session: AsyncSession, settings: Settings, token: str, member: Member, account: ClientAccount
) -> None:
    code = new_sign_in_code()
    row = await session.get(ConsoleSession, sha256_hex(token))
    assert row is not None
    row.code_hash = _code_hash(row.token_hash, code)
    row.code_sent_at = clock.now()
    row.code_tries = 0
    await mail.queue_mail(
        session,
        account_id=member.account_id,
        recipients=[member.email],
        subject=f"Your callerid sign-in code: {code}",
        body=(
            f"Your code to sign in to the callerid console of {account.name} is:\n\n    {code}\n\n"
            f"It is valid for {settings.console_code_ttl_minutes} minutes. If you did not try to sign in, "
            "change your password: someone knows it.\n"
        ),
    )
    await session.flush()


async def verify_code(
    db: Database, settings: Settings, *, token: str, code: str, remember_browser: bool, client: Client
) -> Started:
    """Finish a two-factor sign-in. A wrong code counts a try; after ``console_code_max_tries`` or once the code
    expired the sign-in starts over. The session gets a new token (the pending one is dropped)."""
    code = code.strip().replace(" ", "")
    async with db.transaction() as session:
        row = await session.get(ConsoleSession, sha256_hex(token), with_for_update=True)
        if row is None or row.state != PENDING_CODE:
            raise AccountsError("This sign-in has ended. Sign in again.", field="code")
        now = clock.now()
        sent = row.code_sent_at
        expired = sent is None or sent + timedelta(minutes=settings.console_code_ttl_minutes) <= now
        if not expired and len(code) == 6 and code.isdigit() and row.code_hash == _code_hash(row.token_hash, code):
            member = await session.get(Member, row.member_id)
            assert member is not None
            await session.delete(row)
            await session.flush()
            started = await _new_session(session, settings, member, client, ACTIVE)
            await _signed_in(session, member)
            trusted = await _trust_browser(session, settings, member.id) if remember_browser else None
            return Started(started.token, ACTIVE, started.csrf_token, trusted)
        row.code_tries += 1
        if expired or row.code_tries >= settings.console_code_max_tries:
            await session.delete(row)
            ended = True
        else:
            ended = False
    if ended:
        reason = "The code has expired" if expired else "Too many wrong codes"
        raise AccountsError(f"{reason}. Sign in again to get a new code.", field="code")
    left = settings.console_code_max_tries - row.code_tries
    raise AccountsError(f"That code is not right ({left} tr{'ies' if left != 1 else 'y'} left)", field="code")


async def resend_code(runtime: Runtime, *, token: str) -> None:
    db, settings, limiter = runtime.db, runtime.settings, runtime.limiter
    async with db.transaction() as session:
        row = await session.get(ConsoleSession, sha256_hex(token), with_for_update=True)
        if row is None or row.state != PENDING_CODE:
            raise AccountsError("This sign-in has ended. Sign in again.", field="code")
        if row.code_sent_at is not None:
            wait = (row.code_sent_at + timedelta(seconds=settings.console_code_resend_seconds)) - clock.now()
            if wait.total_seconds() > 0:
                seconds = int(wait.total_seconds()) + 1
                raise Throttled(f"A code was just sent. You can ask for another in {seconds} seconds.", seconds)
        member = await session.get(Member, row.member_id)
        account = await session.get(ClientAccount, row.account_id)
        assert member is not None and account is not None
        await throttle_mail(limiter, settings, member.email)
        await _send_code(session, settings, token, member, account)


async def current(db: Database, settings: Settings, token: str | None) -> Current | None:
    """The live session of a cookie, or None (unknown, expired, idle too long, member no longer active)."""
    if not token or len(token) > 100:
        return None
    token_hash = sha256_hex(token)
    async with db.session() as session:
        found = (
            await session.execute(
                select(ConsoleSession, Member, ClientAccount)
                .join(Member, Member.id == ConsoleSession.member_id)
                .join(ClientAccount, ClientAccount.id == ConsoleSession.account_id)
                .where(ConsoleSession.token_hash == token_hash)
            )
        ).first()
    if found is None:
        return None
    row, member, account = found
    now = clock.now()
    idle_end = row.last_seen_at + timedelta(minutes=settings.console_session_idle_minutes)
    if row.expires_at <= now or idle_end <= now or member.status != MEMBER_ACTIVE:
        async with db.transaction() as session:
            await session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash))
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        async with db.transaction() as session:
            await session.execute(
                ConsoleSession.__table__.update()
                .where(ConsoleSession.__table__.c.token_hash == token_hash)
                .values(last_seen_at=now)
            )
    return Current(token_hash, row.state, row.csrf_token, member, account, row.code_sent_at)


async def sign_out(db: Database, token: str | None) -> None:
    if not token:
        return
    async with db.transaction() as session:
        await session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == sha256_hex(token)))


async def other_sessions(db: Database, member_id: uuid.UUID, token_hash: str) -> int:
    async with db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(ConsoleSession)
            .where(ConsoleSession.member_id == member_id, ConsoleSession.token_hash != token_hash)
        )
    return int(count or 0)


async def end_other_sessions(db: Database, member_id: uuid.UUID, token_hash: str) -> int:
    async with db.transaction() as session:
        result = await session.execute(
            delete(ConsoleSession).where(ConsoleSession.member_id == member_id, ConsoleSession.token_hash != token_hash)
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def change_password(
    db: Database, settings: Settings, *, member_id: uuid.UUID, current_password: str, new_password: str, client: Client
) -> Started:
    """Check the current password, set the new one (every session ends), and sign this browser in again."""
    async with db.session() as session:
        member = await session.get(Member, member_id)
    if member is None or not await asyncio.to_thread(verify_password, member.password_hash, current_password):
        raise AccountsError("current password is not right", field="current_password")
    members.check_password(settings, new_password, email=member.email, field="new_password")
    new_hash = await asyncio.to_thread(hash_password, new_password)
    async with db.transaction() as session:
        member = await session.get(Member, member_id, with_for_update=True)
        assert member is not None
        await members.set_password(session, member, new_hash)
        return await _new_session(session, settings, member, client, ACTIVE)


async def request_password_reset(runtime: Runtime, *, email: str) -> None:
    """E-mail a one-time reset link (valid ``console_reset_link_minutes``) to every active member with this
    address. Says nothing about whether there is one: the caller shows the same answer either way."""
    db, settings = runtime.db, runtime.settings
    email = email.strip().lower()
    if not email:
        raise AccountsError("Enter your e-mail address", field="email")
    _check_lookup(email)
    await throttle_mail(runtime.limiter, settings, email)
    async with db.transaction() as session:
        found = (
            await session.execute(
                select(Member, ClientAccount.name)
                .join(ClientAccount, ClientAccount.id == Member.account_id)
                .where(func.lower(Member.email) == email, Member.status == MEMBER_ACTIVE)
            )
        ).all()
        for member, account_name in found:
            token = await members.issue_link(
                session, member, members.RESET, timedelta(minutes=settings.console_reset_link_minutes)
            )
            link = f"{settings.base_url}/console/reset-password/{token}"
            await mail.queue_mail(
                session,
                account_id=member.account_id,
                recipients=[member.email],
                subject="Reset your callerid console password",
                body=(
                    f"Someone asked to reset the password of {member.email} for the callerid console of "
                    f"{account_name}.\n\nChoose a new password here (the link works once, for "
                    f"{settings.console_reset_link_minutes} minutes):\n{link}\n\n"
                    "If it was not you, ignore this e-mail: your password stays as it is.\n"
                ),
            )


async def reset_password(db: Database, settings: Settings, *, token: str, password: str) -> Member:
    """Set a new password from a reset link; every session of the member ends."""
    async with db.session() as session:
        member = await members.peek_link(session, token, members.RESET)
    if member is None or member.status != MEMBER_ACTIVE:
        raise AccountsError("this reset link is not valid any more; ask for a new one", field="token")
    members.check_password(settings, password, email=member.email)
    new_hash = await asyncio.to_thread(hash_password, password)
    async with db.transaction() as session:
        redeemed = await members.redeem_link(session, token, members.RESET)
        if redeemed is None:
            raise AccountsError("this reset link is not valid any more; ask for a new one", field="token")
        await members.set_password(session, redeemed, new_hash)
        return redeemed


async def accept_invitation(db: Database, settings: Settings, *, token: str, password: str, client: Client) -> Started:
    """Set the invited member's password and sign this browser in (the link proved the e-mail address, so the
    browser is trusted for two-factor purposes too)."""
    async with db.transaction() as session:
        member = await members.accept_invitation(session, settings, token=token, password=password)
        started = await _new_session(session, settings, member, client, ACTIVE)
        await _signed_in(session, member)
        return Started(started.token, ACTIVE, started.csrf_token, await _trust_browser(session, settings, member.id))
