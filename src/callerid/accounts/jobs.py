"""Background work of the accounts domain."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from callerid.accounts.service import purge_expired_tokens
from callerid.accounts.signin import purge_expired
from callerid.jobs import JobContext, handler


@handler("accounts.purge_tokens", every=lambda _settings: timedelta(hours=1))
async def purge_tokens(ctx: JobContext, _payload: dict[str, Any]) -> None:
    async with ctx.db.transaction() as session:
        await purge_expired_tokens(session, ctx.settings)


@handler("accounts.purge_console_sessions", every=lambda _settings: timedelta(hours=1))
async def purge_console_sessions(ctx: JobContext, _payload: dict[str, Any]) -> None:
    """Console sessions, trusted browsers and one-time links past their expiry."""
    async with ctx.db.transaction() as session:
        await purge_expired(session)
