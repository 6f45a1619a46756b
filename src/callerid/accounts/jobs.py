"""Background work of the accounts domain: retention of access tokens and of the console's sign-in state."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam

from callerid.accounts.models import AccessToken, ConsoleSession, MemberToken, TrustedBrowser
from callerid.config import Settings
from callerid.jobs import JobContext, handler
from callerid.jobs.purge import Purge, retention_every, run_purges

_TOKENS = AccessToken.__table__
_SESSIONS, _BROWSERS, _LINKS = ConsoleSession.__table__, TrustedBrowser.__table__, MemberToken.__table__
# Idle console sessions are dropped when next seen, or here a day later; one-time links a day after they expired.
GRACE = timedelta(days=1)


def _token_cutoffs(settings: Settings, now: datetime) -> dict[str, Any]:
    # A token past its expiry still counts towards the mint limit while inside the mint window.
    kept = timedelta(seconds=max(settings.token_mint_window_seconds, settings.token_ttl_seconds))
    return {"expired_before": now - kept}


def _console_cutoffs(_settings: Settings, now: datetime) -> dict[str, Any]:
    return {"now": now, "grace_before": now - GRACE}


# These tables hold only minutes to days of rows, so their purges need no index of their own.
TOKEN_PURGES = (Purge("access_tokens", _TOKENS, _TOKENS.c.expires_at < bindparam("expired_before"), _token_cutoffs),)
CONSOLE_PURGES = (
    Purge(
        "console_sessions",
        _SESSIONS,
        (_SESSIONS.c.expires_at <= bindparam("now")) | (_SESSIONS.c.last_seen_at <= bindparam("grace_before")),
        _console_cutoffs,
    ),
    Purge("trusted_browsers", _BROWSERS, _BROWSERS.c.expires_at <= bindparam("now"), _console_cutoffs),
    Purge("member_tokens", _LINKS, _LINKS.c.expires_at <= bindparam("grace_before"), _console_cutoffs),
)


@handler("accounts.purge_tokens", every=retention_every)
async def purge_tokens(ctx: JobContext, _payload: dict[str, Any]) -> None:
    """Access tokens past expiry and outside the mint window: of no further use."""
    await run_purges(ctx, TOKEN_PURGES)


@handler("accounts.purge_console_sessions", every=retention_every)
async def purge_console_sessions(ctx: JobContext, _payload: dict[str, Any]) -> None:
    """Console sessions, trusted browsers and one-time links past their expiry."""
    await run_purges(ctx, CONSOLE_PURGES)
