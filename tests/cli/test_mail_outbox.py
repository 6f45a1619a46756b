"""``callerid mail outbox``: the notice e-mails a developer without SMTP reads, through the real command.

Mails are queued in-process on the test database (SQLite and PostgreSQL); the command runs in a subprocess on it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from callerid import clock, secretbox
from callerid.accounts import service as accounts
from callerid.config import Settings
from callerid.db import Database
from callerid.timefmt import iso_z
from callerid.webhooks import mail
from callerid.webhooks.models import OutboxMail
from tests.cli.conftest import Cli, clean_env

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def cli_on(cli: Cli, database_url: str, settings: Settings) -> Cli:
    # PostgreSQL requires CALLERID_SECRET_KEY (see test_secretbox): the key the in-process app uses.
    key = secretbox.load_or_create_key_file(secretbox.key_file_path(settings.data_dir))
    env = clean_env(CALLERID_DATABASE_URL=database_url, CALLERID_DATA_DIR=str(settings.data_dir))
    return Cli(cli.cwd, {**env, "CALLERID_SECRET_KEY": key})


async def queue(db: Database, minutes: int, account_id: uuid.UUID | None, recipients: list[str], subject: str) -> str:
    """A mail queued at T0 + ``minutes``, with a body that names its subject; returns its id."""
    clock.freeze(T0 + timedelta(minutes=minutes))
    async with db.transaction() as session:
        queued = await mail.queue_mail(
            session, account_id=account_id, recipients=recipients, subject=subject, body=f"Body of {subject}.\nLine 2"
        )
    return str(queued.id)


async def rows_json(db: Database, *mail_ids: str) -> list[dict[str, Any]]:
    """What the command must print for these mails, in this order, read from the database."""
    async with db.session() as session:
        rows = [await session.get(OutboxMail, uuid.UUID(mail_id)) for mail_id in mail_ids]
    return [
        {
            "id": str(row.id),
            "account_id": str(row.account_id) if row.account_id else None,
            "recipients": row.recipients,
            "subject": row.subject,
            "body": row.body,
            "attachments": row.attachments or [],
            "status": row.status,
            "error": row.error,
            "created_at": iso_z(row.created_at),
            "sent_at": None,
        }
        for row in rows
        if row is not None
    ]


async def test_mail_outbox_lists_filters_and_bounds(
    cli: Cli, db: Database, settings: Settings, database_url: str
) -> None:
    async with db.transaction() as session:
        acme = (await accounts.create_account(session, name="Acme", admin_email="owner@acme.example")).account.id
        other = (await accounts.create_account(session, name="Other", admin_email="boss@other.example")).account.id
    code = await queue(db, 0, acme, ["ops_team@acme.example"], "Your callerid sign-in code: 123456")
    # `_` is a LIKE wildcard: opsXteam must not match ops_team; nor must an address that merely ends with it.
    reset = await queue(db, 1, acme, ["Owner@Acme.Example", "opsXteam@acme.example"], "Reset your password")
    invite = await queue(db, 2, other, ["alice.ops_team@acme.example"], "You are invited to Other on callerid")
    notice = await queue(db, 3, None, ["ops@other.example"], "Webhook failed")
    clock.reset()
    await mail.deliver_mail(db, settings, uuid.UUID(code))  # no SMTP settings: it stays, as status "outbox"

    run = cli_on(cli, database_url, settings)
    (
        everything, to_ops_team, to_owner, newest_two, acme_only, acme_to_other, text,
        bad_account, unknown_account, bad_limit, empty_to,
    ) = await asyncio.gather(
        run.arun("mail", "outbox", "--json"),
        run.arun("mail", "outbox", "--to", " OPS_TEAM@acme.EXAMPLE ", "--json"),
        run.arun("mail", "outbox", "--to", "owner@acme.example", "--json"),
        run.arun("mail", "outbox", "--limit", "2", "--json"),
        run.arun("mail", "outbox", "--account", str(acme).upper(), "--json"),
        run.arun("mail", "outbox", "--account", str(acme), "--to", "ops@other.example", "--json"),
        run.arun("mail", "outbox", "--to", "ops_team@acme.example", "--limit", "1"),
        run.arun("mail", "outbox", "--account", "not-a-uuid", "--json"),
        run.arun("mail", "outbox", "--account", str(uuid.UUID(int=7)), "--json"),
        run.arun("mail", "outbox", "--limit", "0", "--json"),
        run.arun("mail", "outbox", "--to", " ", "--json"),
    )  # fmt: skip

    all_rows = await rows_json(db, notice, invite, reset, code)  # newest first
    assert [row["status"] for row in all_rows] == ["queued", "queued", "queued", "outbox"]
    assert all_rows[3] == {
        "id": code,
        "account_id": str(acme),
        "recipients": ["ops_team@acme.example"],
        "subject": "Your callerid sign-in code: 123456",
        "body": "Body of Your callerid sign-in code: 123456.\nLine 2",
        "attachments": [],
        "status": "outbox",
        "error": None,
        "created_at": "2026-03-01T09:00:00.0Z",
        "sent_at": None,
    }
    assert everything.json() == {"mails": all_rows}
    assert to_ops_team.json() == {"mails": await rows_json(db, code)}
    assert to_owner.json() == {"mails": await rows_json(db, reset)}
    assert newest_two.json() == {"mails": await rows_json(db, notice, invite)}
    assert acme_only.json() == {"mails": await rows_json(db, reset, code)}
    assert acme_to_other.json() == {"mails": []}

    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "mails: 1"
    assert f"- id: {code}" in lines
    assert "  body: Body of Your callerid sign-in code: 123456." in lines
    assert "Line 2" in lines

    assert "--account 'not-a-uuid' is not a UUID" in bad_account.failed()
    assert f"account {uuid.UUID(int=7)} not found" in unknown_account.failed()
    assert "--limit" in bad_limit.failed()
    assert "--to must be an e-mail address" in empty_to.failed()

    async with db.session() as session:  # reading changed nothing
        assert [str(m.id) for m in await mail.list_outbox(session)] == [notice, invite, reset, code]
        assert [m.status for m in await mail.list_outbox(session)] == ["queued", "queued", "queued", "outbox"]


async def test_list_outbox_recipient_is_a_whole_address(db: Database) -> None:
    """In-process: wildcards and quotes in the filter are literal; the limit counts matching mails only."""
    matching = [await queue(db, n, None, ["a%b@x.example"], f"match {n}") for n in range(3)]
    await queue(db, 10, None, ["aXXb@x.example", "x.a%b@x.example"], "newer, not a match")
    clock.reset()
    async with db.session() as session:
        found = await mail.list_outbox(session, recipient="A%B@X.example", limit=2)
        assert [str(m.id) for m in found] == [matching[2], matching[1]]
        assert await mail.list_outbox(session, recipient="%") == []
        assert await mail.list_outbox(session, recipient='"') == []
        assert await mail.list_outbox(session, recipient="x.example") == []
