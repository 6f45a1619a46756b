"""JSON shapes of webhook configs, events and attempts (CLI ``--json`` output; the console reuses them)."""

from __future__ import annotations

from typing import Any

import orjson

from callerid.timefmt import iso_z
from callerid.webhooks.models import OutboxMail, WebhookAttempt, WebhookConfig, WebhookEvent
from callerid.webhooks.service import EventDetails


def webhook_json(webhook: WebhookConfig, *, secret: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": str(webhook.id), "name": webhook.name, "url": webhook.url, "events": webhook.events}
    if secret is not None:
        body["secret"] = secret
    return body


def webhook_listing_json(webhook: WebhookConfig) -> dict[str, Any]:
    return {**webhook_json(webhook), "created_at": iso_z(webhook.created_at), "updated_at": iso_z(webhook.updated_at)}


def event_json(event: WebhookEvent) -> dict[str, Any]:
    return {
        "event_id": str(event.id),
        "webhook_id": str(event.webhook_id),
        "webhook_name": event.webhook_name,
        "event_type": event.event_type,
        "state": event.state,
        "is_test": event.is_test,
        "attempts": event.attempts_made,
        "next_attempt_at": iso_z(event.next_attempt_at) if event.next_attempt_at else None,
        "created_at": iso_z(event.created_at),
    }


def attempt_json(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "url": attempt.url,
        "started_at": iso_z(attempt.started_at),
        "duration_ms": attempt.duration_ms,
        "outcome": attempt.outcome,
        "status_code": attempt.status_code,
        "error": attempt.error,
    }


def event_details_json(details: EventDetails) -> dict[str, Any]:
    return {
        **event_json(details.event),
        "payload": orjson.loads(details.event.body),
        "attempt_log": [attempt_json(a) for a in details.attempts],
        "planned_retries": [iso_z(t) for t in details.planned_retries],
    }


def mail_json(message: OutboxMail) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "account_id": str(message.account_id) if message.account_id else None,
        "recipients": message.recipients,
        "subject": message.subject,
        "body": message.body,
        "attachments": message.attachments or [],
        "status": message.status,
        "error": message.error,
        "created_at": iso_z(message.created_at),
        "sent_at": iso_z(message.sent_at) if message.sent_at else None,
    }
