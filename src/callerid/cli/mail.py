"""``callerid mail``: read the notice e-mails in the outbox (for a developer without SMTP)."""

from __future__ import annotations

from typing import Any

import typer

from callerid.accounts import service as accounts
from callerid.cli.common import JSON_OPTION, emit, fail, parse_uuid_option, run_with_db
from callerid.config import Settings
from callerid.db import Database
from callerid.webhooks import mail
from callerid.webhooks.schemas import mail_json

mail_app = typer.Typer(
    help="Notice e-mails: console invitations, password-reset links, sign-in codes, webhook-failure notices.",
    no_args_is_help=True,
)


@mail_app.command("outbox")
def outbox(
    account: str | None = typer.Option(None, "--account", help="only this account's mails (client account id)"),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="at most this many mails"),
    to: str | None = typer.Option(None, "--to", help="only mails to this address (case-insensitive)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """The newest notice e-mails first, with their bodies (sign-in codes, reset links, invitations, webhook failures).

    Without SMTP settings (CALLERID_SMTP_HOST) no mail leaves the server: each stays here with status "outbox".
    This is how a developer without SMTP reads the console's e-mails, e.g. the newest sign-in code or reset link:
    callerid mail outbox --to admin@demo.example.com --limit 1
    """
    account_id = parse_uuid_option(account, "--account") if account is not None else None
    recipient = to.strip() if to is not None else None
    if recipient == "":
        fail("--to must be an e-mail address")

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.session() as session:
            if account_id is not None:
                await accounts.get_account(session, account_id)
            mails = await mail.list_outbox(session, account_id=account_id, limit=limit, recipient=recipient)
        return {"mails": [mail_json(m) for m in mails]}

    emit(run_with_db(run), as_json)
