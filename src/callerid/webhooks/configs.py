"""Webhook configs: create, read, update, delete, rotate their signing secrets; the domain's errors and limits."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock, failures
from callerid.accounts import service as accounts
from callerid.config import Settings
from callerid.display_text import storage_problem
from callerid.webhooks import secrets_at_rest, signing
from callerid.webhooks.models import (
    EVENT_TYPES,
    WebhookConfig,
)
from callerid.webhooks.safety import UnsafeUrl, check_destination, check_url_syntax
from callerid.webhooks.schedule import parse_schedule

DELIVER_JOB = "webhooks.deliver"
# How long a delivery job waits for its webhook's concurrency limit before giving its slot back.
BUSY_WAIT_SECONDS = 2.0
BUSY_RETRY_DELAY = timedelta(seconds=1)
MAX_NAME_LENGTH = 50


class WebhooksError(failures.InvalidInput):
    """A rule of this domain was broken; the message says which, for a person to read."""


class NotFound(failures.NotFound, WebhooksError):
    """No such webhook or event in the account."""


class LimitReached(WebhooksError):
    """A count the account may not exceed (webhooks, retries)."""


@dataclass(frozen=True)
class CreatedWebhook:
    webhook: WebhookConfig
    secret: str  # shown once


def _clean_name(name: str) -> str:
    name = name.strip()
    if name == "":
        raise WebhooksError("name is required")
    if len(name) > MAX_NAME_LENGTH:
        raise WebhooksError(f"name must be at most {MAX_NAME_LENGTH} characters")
    problem = storage_problem(name, "name")
    if problem is not None:
        raise WebhooksError(problem)
    return name


def parse_event_types(value: str | list[str]) -> list[str]:
    """``"cmb,user_feedback"`` or a list -> the distinct types in canonical order."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    chosen = {p.strip() for p in parts if p.strip()}
    unknown = sorted(chosen - set(EVENT_TYPES))
    if not chosen or unknown:
        shown = f" ({', '.join(unknown)} is not one)" if unknown else ""
        raise WebhooksError(f"events must be one or both of cmb, user_feedback{shown}")
    return [t for t in EVENT_TYPES if t in chosen]


async def _clean_url(settings: Settings, url: str) -> str:
    try:
        url = check_url_syntax(url, require_https=settings.webhook_require_https)
        await check_destination(url, allow_private=settings.webhook_allow_private)
    except UnsafeUrl as exc:
        raise WebhooksError(str(exc)) from None
    return url


async def _name_taken(session: AsyncSession, account_id: uuid.UUID, name: str, *, except_id: uuid.UUID | None) -> bool:
    query = select(WebhookConfig.id).where(
        WebhookConfig.account_id == account_id, WebhookConfig.name_key == name.casefold()
    )
    if except_id is not None:
        query = query.where(WebhookConfig.id != except_id)
    return (await session.scalar(query)) is not None


async def _lock_account(session: AsyncSession, account_id: uuid.UUID) -> None:
    """Serialise config changes of one account (the account's lock, owned by accounts)."""
    try:
        await accounts.lock_account(session, account_id)
    except failures.NotFound:
        raise NotFound(f"account {account_id} not found") from None


async def create_webhook(
    session: AsyncSession,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    name: str,
    url: str,
    events: str | list[str],
) -> CreatedWebhook:
    name = _clean_name(name)
    event_types = parse_event_types(events)
    url = await _clean_url(settings, url)
    await _lock_account(session, account_id)
    count = await session.scalar(select(func.count()).where(WebhookConfig.account_id == account_id))
    if (count or 0) >= settings.max_webhooks_per_account:
        raise LimitReached(f"an account can have at most {settings.max_webhooks_per_account} webhooks")
    if await _name_taken(session, account_id, name, except_id=None):
        raise WebhooksError(f"a webhook named {name!r} already exists")
    now = clock.now()
    secret = signing.new_secret()
    webhook_id = uuid.uuid4()
    webhook = WebhookConfig(
        id=webhook_id,
        account_id=account_id,
        name=name,
        name_key=name.casefold(),
        url=url,
        events=event_types,
        secret=secrets_at_rest.seal(settings, webhook_id, secret),  # encrypted at rest; shown in clear once
        created_at=now,
        updated_at=now,
    )
    session.add(webhook)
    await session.flush()
    return CreatedWebhook(webhook, secret)


async def get_webhook(session: AsyncSession, *, account_id: uuid.UUID, webhook_id: uuid.UUID) -> WebhookConfig:
    webhook = await session.get(WebhookConfig, webhook_id)
    if webhook is None or webhook.account_id != account_id:
        raise NotFound(f"webhook {webhook_id} not found")
    return webhook


async def list_webhooks(session: AsyncSession, account_id: uuid.UUID) -> list[WebhookConfig]:
    query = select(WebhookConfig).where(WebhookConfig.account_id == account_id).order_by(WebhookConfig.created_at)
    return list((await session.scalars(query)).all())


async def update_webhook(
    session: AsyncSession,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    name: str | None = None,
    url: str | None = None,
    events: str | list[str] | None = None,
) -> WebhookConfig:
    """Change any of name, URL, event types; later attempts of pending events use the new values."""
    new_name = _clean_name(name) if name is not None else None
    new_events = parse_event_types(events) if events is not None else None
    new_url = await _clean_url(settings, url) if url is not None else None
    await _lock_account(session, account_id)
    webhook = await get_webhook(session, account_id=account_id, webhook_id=webhook_id)
    if new_name is not None:
        if await _name_taken(session, account_id, new_name, except_id=webhook_id):
            raise WebhooksError(f"a webhook named {new_name!r} already exists")
        webhook.name, webhook.name_key = new_name, new_name.casefold()
    if new_url is not None:
        webhook.url = new_url
    if new_events is not None:
        webhook.events = new_events
    webhook.updated_at = clock.now()
    await session.flush()
    return webhook


async def delete_webhook(session: AsyncSession, *, account_id: uuid.UUID, webhook_id: uuid.UUID) -> None:
    """Delete the config. Its events stay in the log; their next attempt ends them as webhook_deleted."""
    webhook = await get_webhook(session, account_id=account_id, webhook_id=webhook_id)
    await session.delete(webhook)
    await session.flush()


async def rotate_secret(
    session: AsyncSession, settings: Settings, *, account_id: uuid.UUID, webhook_id: uuid.UUID
) -> CreatedWebhook:
    """Give the webhook a new signing secret, returned once.

    The secret it replaces keeps signing beside the new one (two ``v1,`` signatures per delivery) for
    ``webhook_secret_overlap_hours``, so that the receiver can switch without rejecting deliveries. A second
    rotation within that time replaces the kept secret with the one current until then.
    """
    # Locked and read afresh: a concurrent rotation waits, then moves on from this one's secret.
    webhook = await session.get(WebhookConfig, webhook_id, with_for_update=True, populate_existing=True)
    if webhook is None or webhook.account_id != account_id:
        raise NotFound(f"webhook {webhook_id} not found")
    now = clock.now()
    overlap = timedelta(hours=settings.webhook_secret_overlap_hours)
    secret = signing.new_secret()
    # The kept secret is re-encrypted with the current key (legacy clear text too); one that no longer decrypts
    # could not sign anyway, and rotating is the way out of that, so it is dropped rather than failing.
    kept = secrets_at_rest.resealed(settings, webhook.id, webhook.secret) if overlap > timedelta(0) else None
    webhook.previous_secret = kept
    webhook.previous_secret_expires_at = now + overlap if kept is not None else None
    webhook.secret = secrets_at_rest.seal(settings, webhook.id, secret)
    webhook.secret_rotated_at = now
    webhook.updated_at = now
    await session.flush()
    return CreatedWebhook(webhook, secret)


def retry_schedule(settings: Settings) -> list[timedelta]:
    return list(_parsed_schedule(settings.webhook_retry_schedule))


@functools.lru_cache(maxsize=16)
def _parsed_schedule(value: str) -> tuple[timedelta, ...]:
    """Parsed once per setting value (every attempt asks: it was ~3 % of a delivery's CPU)."""
    return tuple(parse_schedule(value))
