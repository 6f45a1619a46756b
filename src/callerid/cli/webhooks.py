"""``callerid webhooks``: manage an account's webhooks, send test events, read the delivery log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from callerid.cli.common import JSON_OPTION, emit, fail, parse_uuid_option, run_with_db
from callerid.config import Settings
from callerid.db import Database
from callerid.runtime import Runtime
from callerid.timefmt import iso_z
from callerid.webhooks import mail, service
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
        async with db.transaction() as session:
            created = await service.create_webhook(
                session, settings, account_id=account_id, name=name, url=url, events=events
            )
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
        async with db.transaction() as session:
            updated = await service.update_webhook(
                session, settings, account_id=account_id, webhook_id=webhook_id, name=name, url=url, events=events
            )
        return webhook_json(updated)

    emit(run_with_db(run), as_json, title="Webhook updated")


@webhooks_app.command("delete")
def delete(account: str = ACCOUNT_OPTION, webhook: str = WEBHOOK_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Delete a webhook; its undelivered events end as webhook_deleted at their next attempt."""
    account_id = parse_uuid_option(account, "--account")
    webhook_id = parse_uuid_option(webhook, "--id")

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.transaction() as session:
            await service.delete_webhook(session, account_id=account_id, webhook_id=webhook_id)
        return {"id": str(webhook_id), "deleted": True}

    emit(run_with_db(run), as_json)


@webhooks_app.command("rotate-secret")
def rotate_secret(account: str = ACCOUNT_OPTION, webhook: str = WEBHOOK_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Give a webhook a new signing secret (shown once); the old one also signs until the overlap ends."""
    account_id = parse_uuid_option(account, "--account")
    webhook_id = parse_uuid_option(webhook, "--id")

    async def run(settings: Settings, db: Database) -> dict[str, Any]:
        async with db.transaction() as session:
            rotated = await service.rotate_secret(session, settings, account_id=account_id, webhook_id=webhook_id)
        expires = rotated.webhook.previous_secret_expires_at
        return {
            **webhook_json(rotated.webhook, secret=rotated.secret),
            "previous_secret_expires_at": iso_z(expires) if expires is not None else None,
        }

    emit(run_with_db(run), as_json, title="New signing secret (not shown again); the old one signs too until expiry")


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
        runtime = Runtime.build(settings, db)
        try:
            sent = await service.send_test_event(
                runtime, account_id=account_id, webhook_id=webhook_id, event_type=event_type
            )
        finally:
            await runtime.close()  # its HTTP client; the database is run_with_db's
        return {
            "event_id": str(sent.event.id),
            "webhook_id": str(webhook_id),
            "event_type": sent.event.event_type,
            "state": sent.state,
            "outcome": sent.attempt.outcome,
            "status_code": sent.attempt.status_code,
            "error": sent.attempt.error,
            "duration_ms": sent.attempt.duration_ms,
            "response_excerpt": sent.attempt.response_excerpt,
        }

    emit(run_with_db(run), as_json, title="Test event sent")


@webhooks_app.command("resend")
def resend(
    account: str = ACCOUNT_OPTION,
    event_id: str = typer.Option(..., "--event", help="id of a delivered or failed event"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send a delivered or failed event once more (one attempt, no retries, no failure e-mail)."""
    account_id = parse_uuid_option(account, "--account")
    parsed_event_id = parse_uuid_option(event_id, "--event")

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.transaction() as session:
            await service.resend_event(session, account_id=account_id, event_id=parsed_event_id)
        return {"event_id": str(parsed_event_id), "state": "pending", "queued": True}

    emit(run_with_db(run), as_json, title="Event queued to be sent again (a worker or serve delivers it)")


def _parse_since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"--since {value!r} is not an ISO 8601 time, e.g. 2026-03-01T09:00:00Z")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@webhooks_app.command("retry-failed")
def retry_failed(
    account: str = ACCOUNT_OPTION,
    since: str = typer.Option(..., "--since", help="ISO 8601 time (UTC when no offset is given)"),
    webhook: str | None = typer.Option(None, "--id", help="only this webhook's events"),
    dry_run: bool = typer.Option(False, "--dry-run", help="only count the events that would be sent again"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send again every failed event created since a time (not test events; newest first, up to a limit)."""
    account_id = parse_uuid_option(account, "--account")
    webhook_id = parse_uuid_option(webhook, "--id") if webhook is not None else None
    since_at = _parse_since(since)

    async def run(settings: Settings, db: Database) -> dict[str, Any]:
        limit = settings.webhook_retry_all_max_events
        async with db.transaction() as session:
            matching = await service.count_failed_since(
                session, account_id=account_id, since=since_at, webhook_id=webhook_id
            )
            if dry_run:
                return {"since": iso_z(since_at), "failed_events": matching, "would_retry": min(matching, limit)}
            retry = await service.retry_failed_since(
                session, settings, account_id=account_id, since=since_at, created_by_email="", webhook_id=webhook_id
            )
        return {
            "run_id": str(retry.id),
            "since": iso_z(since_at),
            "failed_events": matching,
            "queued": len(retry.event_ids),
            "limit": limit,
        }

    emit(run_with_db(run), as_json, title="Failed events queued to be sent again (newest first, up to the limit)")


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
        async with db.session() as session:
            details = await service.get_event(session, settings, account_id=account_id, event_id=parsed_event_id)
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
