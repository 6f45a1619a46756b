"""Webhook configs (SPEC §9.1): limits, names, URLs, event types, and SSRF refusals at creation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from callerid.config import Settings
from callerid.db import Database
from callerid.webhooks import secrets_at_rest, service
from callerid.webhooks.models import WebhookConfig
from callerid.webhooks.safety import check_url_syntax
from tests.conftest import Tenant, create_tenant
from tests.webhooks.conftest import make_webhook

URL = "https://hooks.example.com/tcbiz-webhook?key=abc123"


async def count_webhooks(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookConfig)) or 0)


async def test_create_returns_secret_and_keeps_url_exactly(db: Database, settings: Settings, tenant: Tenant) -> None:
    created = await make_webhook(db, settings, tenant.account_id, f"  {URL}  ", events="user_feedback,cmb")
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", created.secret)
    assert created.webhook.url == URL  # query-string key kept, only surrounding spaces dropped
    assert created.webhook.events == ["cmb", "user_feedback"]
    async with db.session() as session:
        listed = await service.list_webhooks(session, tenant.account_id)
    # Stored encrypted (see test_secrets_at_rest); opened, it is the secret shown once.
    assert [(w.name, w.url, w.events, secrets_at_rest.unseal(settings, w.id, w.secret)) for w in listed] == [
        ("Orders", URL, ["cmb", "user_feedback"], created.secret)
    ]


async def test_at_most_five_per_account(db: Database, settings: Settings, tenant: Tenant) -> None:
    for n in range(5):
        await make_webhook(db, settings, tenant.account_id, URL, name=f"hook {n}")
    with pytest.raises(service.LimitReached, match=r"^an account can have at most 5 webhooks$"):
        await make_webhook(db, settings, tenant.account_id, URL, name="hook 6")
    assert await count_webhooks(db) == 5
    other = await create_tenant(db, settings, name="Other")
    await make_webhook(db, settings, other.account_id, URL, name="hook 6")  # the limit is per account
    async with db.transaction() as session:
        first = (await service.list_webhooks(session, tenant.account_id))[0]
        await service.delete_webhook(session, account_id=tenant.account_id, webhook_id=first.id)
    await make_webhook(db, settings, tenant.account_id, URL, name="hook 6")  # "at a time"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "name is required"),
        ("   ", "name is required"),
        ("x" * 51, "name must be at most 50 characters"),
        ("Ord\x00ers", "name contains characters that cannot be stored"),  # PostgreSQL cannot hold a NUL
    ],
)
async def test_bad_names(db: Database, settings: Settings, tenant: Tenant, name: str, message: str) -> None:
    with pytest.raises(service.WebhooksError, match=f"^{message}$"):
        await make_webhook(db, settings, tenant.account_id, URL, name=name)
    assert await count_webhooks(db) == 0


async def test_names_unique_case_insensitive(db: Database, settings: Settings, tenant: Tenant) -> None:
    created = await make_webhook(db, settings, tenant.account_id, URL, name="x" * 50)
    with pytest.raises(service.WebhooksError, match="already exists"):
        await make_webhook(db, settings, tenant.account_id, URL, name="X" * 50)
    second = await make_webhook(db, settings, tenant.account_id, URL, name="Second")
    async with db.transaction() as session:
        with pytest.raises(service.WebhooksError, match="already exists"):
            await service.update_webhook(
                session, settings, account_id=tenant.account_id, webhook_id=second.webhook.id, name="XX" * 25
            )
    async with db.transaction() as session:  # renaming to its own name in another case is fine
        renamed = await service.update_webhook(
            session, settings, account_id=tenant.account_id, webhook_id=created.webhook.id, name="X" * 50
        )
    assert renamed.name == "X" * 50
    assert await count_webhooks(db) == 2


@pytest.mark.parametrize("events", ["", "sms", "cmb,sms", " , "])
async def test_bad_event_types(db: Database, settings: Settings, tenant: Tenant, events: str) -> None:
    with pytest.raises(service.WebhooksError, match=r"^events must be one or both of cmb, user_feedback"):
        await make_webhook(db, settings, tenant.account_id, URL, events=events)
    assert await count_webhooks(db) == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "url is required"),
        ("ftp://hooks.example.com/x", "url must be an absolute http or https URL"),
        ("/relative/path", "url must be an absolute http or https URL"),
        ("hooks.example.com/x", "url must be an absolute http or https URL"),
        ("https://hooks.example.com/a b", "url must not contain spaces"),
        ("https:///nohost", "url must name a host"),
        ("https://example.com/" + "a" * 2048, "url must be at most 2048 characters"),
    ],
)
async def test_bad_urls(db: Database, settings: Settings, tenant: Tenant, url: str, message: str) -> None:
    with pytest.raises(service.WebhooksError, match=f"^{re.escape(message)}"):
        await make_webhook(db, settings, tenant.account_id, url)
    assert await count_webhooks(db) == 0


def test_https_can_be_required() -> None:
    assert check_url_syntax("https://a.example/x", require_https=True) == "https://a.example/x"
    with pytest.raises(Exception, match="url must use https"):
        check_url_syntax("http://a.example/x", require_https=True)


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": False}])
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
        ("http://192.168.1.20:8080/hook", "192.168.1.20 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
        ("http://169.254.10.1/", "169.254.10.1 is a link-local address"),
        ("http://127.0.0.1:9/hook", "127.0.0.1 is a loopback address"),
        ("http://[::1]:9/hook", "host ::1 is a loopback address"),
        ("http://[fd00:ec2::254]/", "host fd00:ec2::254 is a cloud metadata address"),
        ("http://[::ffff:127.0.0.1]/", "is a loopback address"),
        ("http://0.0.0.0/", "0.0.0.0 is an unspecified address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://localhost:9/hook", "is a loopback address"),
    ],
)
async def test_private_destinations_refused_at_creation(
    db: Database, settings: Settings, tenant: Tenant, url: str, reason: str, settings_overrides: dict[str, Any]
) -> None:
    with pytest.raises(service.WebhooksError, match=re.escape(reason)):
        await make_webhook(db, settings, tenant.account_id, url)
    assert await count_webhooks(db) == 0
    # ... and on update too
    created = await make_webhook(db, settings, tenant.account_id, "http://93.184.215.14/hook")
    async with db.transaction() as session:
        with pytest.raises(service.WebhooksError, match=re.escape(reason)):
            await service.update_webhook(
                session, settings, account_id=tenant.account_id, webhook_id=created.webhook.id, url=url
            )
    async with db.session() as session:
        stored = await service.get_webhook(session, account_id=tenant.account_id, webhook_id=created.webhook.id)
    assert stored.url == "http://93.184.215.14/hook"


async def test_private_destinations_allowed_by_operator(db: Database, settings: Settings, tenant: Tenant) -> None:
    assert settings.webhook_allow_private is True
    created = await make_webhook(db, settings, tenant.account_id, "http://127.0.0.1:9/hook")
    assert created.webhook.url == "http://127.0.0.1:9/hook"


async def test_update_and_delete(db: Database, settings: Settings, tenant: Tenant) -> None:
    created = await make_webhook(db, settings, tenant.account_id, URL)
    async with db.transaction() as session:
        updated = await service.update_webhook(
            session,
            settings,
            account_id=tenant.account_id,
            webhook_id=created.webhook.id,
            url="https://other.example.com/h?key=z",
            events="user_feedback",
        )
    assert (updated.name, updated.url, updated.events) == (
        "Orders",
        "https://other.example.com/h?key=z",
        ["user_feedback"],
    )
    async with db.transaction() as session:
        with pytest.raises(service.WebhooksError, match="events must be"):
            await service.update_webhook(
                session, settings, account_id=tenant.account_id, webhook_id=created.webhook.id, events="nope"
            )
    other = await create_tenant(db, settings, name="Other")
    async with db.transaction() as session:
        with pytest.raises(service.NotFound, match="not found"):
            await service.delete_webhook(session, account_id=other.account_id, webhook_id=created.webhook.id)
    async with db.transaction() as session:
        await service.delete_webhook(session, account_id=tenant.account_id, webhook_id=created.webhook.id)
    assert await count_webhooks(db) == 0
    async with db.transaction() as session:
        with pytest.raises(service.NotFound):
            await service.delete_webhook(session, account_id=tenant.account_id, webhook_id=created.webhook.id)
