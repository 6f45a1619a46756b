"""``callerid webhooks``: manage an account's webhooks, send test events, read the delivery log."""

from __future__ import annotations

from typing import Any

import typer

from callerid.cli.common import JSON_OPTION, emit, fail, parse_uuid_option, run_with_db
from callerid.config import Settings
from callerid.db import Database
from callerid.webhooks import mail, service
from callerid.webhooks.delivery import close_deliverer
from callerid.webhooks.schemas import (
    event_details_json,
    event_json,
    mail_json,
    webhook_json,
    webhook_listing_json,
)

webhooks_app = typer.Typer(
    help="Webhooks of an account (at most 5): configs, tests, delivery log.", no_args_is_help=True
)

ACCOUNT_OPTION = typer.Option(..., "--account", help="client account id")
WEBHOOK_OPTION = typer.Option(..., "--id", help="webhook id")


@webhooks_app.command("create")
def create(
    account: str = ACCOUNT_OPTION,
    name: str = typer.Option(..., "--name", help="unique in the account, at most 50 characters"),
    url: str = typer.Option(..., "--url", help="http(s) URL, called exactly as given (a ?key=... is kept)"),
    events: str = typer.Option(..., "--events", help="cmb, user_feedback or cmb,user_feedback"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a webhook; its signing secret (whsec_...) is shown once."""
    account_id = parse_uuid_option(account, "--account")

    async def run(settings: Settings, db: Database) -> dict[str, Any]:
        try:
            async with db.transaction() as session:
                created = await service.create_webhook(
                    session, settings, account_id=account_id, name=name, url=url, events=events
                )
        except service.WebhooksError as exc:
            fail(str(exc))
        return webhook_json(created.webhook, secret=created.secret)

    emit(run_with_db(run), as_json, title="Webhook created (the secret is not shown again)")


@webhooks_app.command("update")
def update(
    account: str = ACCOUNT_OPTION,
    webhook: str = WEBHOOK_OPTION,
    name: str | None = typer.Option(None, "--name"),
    url: str | None = typer.Option(None, "--url"),
    events: str | None = typer.Option(None, "--events"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Change a webhook's name, URL or event types; pending retries use the new values."""
    account_id = parse_uuid_option(account, "--account")
    webhook_id = parse_uuid_option(webhook, "--id")
    if name is None and url is None and events is None:
        fail("nothing to change: give --name, --url or --events")

    async def run(settings: Settings, db: Database) -> dict[str, Any]:
        try:
            async with db.transaction() as session:
                updated = await service.update_webhook(
                    session, settings, account_id=account_id, webhook_id=webhook_id, name=name, url=url, events=events
                )
        except service.WebhooksError as exc:
            fail(str(exc))
        return webhook_json(updated)

    emit(run_with_db(run), as_json, title="Webhook updated")


@webhooks_app.command("delete")
def delete(account: str = ACCOUNT_OPTION, webhook: str = WEBHOOK_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Delete a webhook; its undelivered events end as webhook_deleted at their next attempt."""
    account_id = parse_uuid_option(account, "--account")
    webhook_id = parse_uuid_option(webhook, "--id")

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        try:
            async with db.transaction() as session:
                await service.delete_webhook(session, account_id=account_id, webhook_id=webhook_id)
        except service.WebhooksError as exc:
            fail(str(exc))
        return {"id": str(webhook_id), "deleted": True}

    emit(run_with_db(run), as_json)


@webhooks_app.command("list")
def list_(account: str = ACCOUNT_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List an account's webhooks (never their secrets)."""
    account_id = parse_uuid_option(account, "--account")

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.session() as session:
            return {"webhooks": [webhook_listing_json(w) for w in await service.list_webhooks(session, account_id)]}

    emit(run_with_db(run), as_json)


@webhooks_app.command("test")
def test(
    account: str = ACCOUNT_OPTION,
    webhook: str = WEBHOOK_OPTION,
    event_type: str = typer.Option("cmb", "--event-type", help="cmb or user_feedback"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send one sample event now (no retries) and show the result; it is logged as a test event."""
    account_id = parse_uuid_option(account, "--account")
    webhook_id = parse_uuid_option(webhook, "--id")

    async def run(settings: Settings, db: Database) -> dict[str, Any]:
        services: dict[str, Any] = {}
        try:
            sent = await service.send_test_event(
                db, settings, services, account_id=account_id, webhook_id=webhook_id, event_type=event_type
            )
        except service.WebhooksError as exc:
            fail(str(exc))
        finally:
            await close_deliverer(services)
        return {
            "event_id": str(sent.event.id),
            "webhook_id": str(webhook_id),
            "event_type": sent.event.event_type,
            "state": sent.state,
            "outcome": sent.attempt.outcome,
            "status_code": sent.attempt.status_code,
            "error": sent.attempt.error,
            "duration_ms": sent.attempt.duration_ms,
        }

    emit(run_with_db(run), as_json, title="Test event sent")


@webhooks_app.command("events")
def events(
    account: str = ACCOUNT_OPTION,
    webhook: str | None = typer.Option(None, "--id", help="only this webhook's events"),
    limit: int = typer.Option(50, "--limit", min=1, max=1000),
    page: int = typer.Option(1, "--page", min=1),
    as_json: bool = JSON_OPTION,
) -> None:
    """The delivery log, newest first (kept 30 days)."""
    account_id = parse_uuid_option(account, "--account")
    webhook_id = parse_uuid_option(webhook, "--id") if webhook is not None else None

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.session() as session:
            rows, total = await service.list_events(
                session, account_id=account_id, webhook_id=webhook_id, limit=limit, offset=(page - 1) * limit
            )
        return {"events": [event_json(e) for e in rows], "total": total, "page": page, "limit": limit}

    emit(run_with_db(run), as_json)


@webhooks_app.command("event")
def event(
    account: str = ACCOUNT_OPTION,
    event_id: str = typer.Option(..., "--event-id"),
    as_json: bool = JSON_OPTION,
) -> None:
    """One event: payload, state, every attempt and the planned retries."""
    account_id = parse_uuid_option(account, "--account")
    parsed_event_id = parse_uuid_option(event_id, "--event-id")

    async def run(settings: Settings, db: Database) -> dict[str, Any]:
        try:
            async with db.session() as session:
                details = await service.get_event(session, settings, account_id=account_id, event_id=parsed_event_id)
        except service.WebhooksError as exc:
            fail(str(exc))
        return event_details_json(details)

    emit(run_with_db(run), as_json)


@webhooks_app.command("outbox")
def outbox(
    account: str | None = typer.Option(None, "--account", help="only this account's mails"),
    limit: int = typer.Option(50, "--limit", min=1, max=1000),
    as_json: bool = JSON_OPTION,
) -> None:
    """Notice e-mails (webhook failures), newest first: sent ones and, without SMTP, the ones kept here."""
    account_id = parse_uuid_option(account, "--account") if account is not None else None

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.session() as session:
            return {
                "mails": [mail_json(m) for m in await mail.list_outbox(session, account_id=account_id, limit=limit)]
            }

    emit(run_with_db(run), as_json)
