"""Background work of the accounts domain."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from callerid.accounts.service import purge_expired_tokens
from callerid.jobs import JobContext, handler


@handler("accounts.purge_tokens", every=lambda _settings: timedelta(hours=1))
async def purge_tokens(ctx: JobContext, _payload: dict[str, Any]) -> None:
    async with ctx.db.transaction() as session:
        await purge_expired_tokens(session, ctx.settings)
