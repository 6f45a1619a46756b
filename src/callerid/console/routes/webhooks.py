"""Webhooks (SPEC §9): endpoints, their secret (shown once, rotated with an overlap), Test webhook, the event log
with filters and CSV, an event's attempts with Resend, and "retry all failed since ..." with live progress.
Every rule is ``webhooks.service``; this module parses, calls and renders."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from callerid import clock
from callerid.accounts.permissions import Permission
from callerid.console import web
from callerid.http import Page
from callerid.timefmt import iso_z
from callerid.webhooks import service
from callerid.webhooks.models import EVENT_STATES, EVENT_TYPES, FAILED, SUCCESS, WebhookConfig

router = APIRouter()
ALLOW = Permission.MANAGE_WEBHOOKS
PER_PAGE = 50
EVENT_TYPE_TITLES = {"cmb": "Call Me Back", "user_feedback": "User feedback"}
STATE_TITLES = {
    "pending": "Pending",
    "success": "Delivered",
    "rescheduled": "Retrying",
    "failed": "Failed",
    "webhook_deleted": "Webhook deleted",
}
# Where each of the service's messages belongs on the form (its first words name the input).
FIELD_OF_MESSAGE = (
    ("name", "name"),
    ("a webhook named", "name"),
    ("url", "url"),
    ("host", "url"),
    ("events", "events"),
)


async def _webhook(page: web.Page, webhook_id: str) -> WebhookConfig:
    async with page.runtime.db.session() as session:
        try:
            return await service.get_webhook(session, account_id=page.account_id, webhook_id=web.path_uuid(webhook_id))
        except service.NotFound:
            raise web.not_found() from None


def _zone(page: web.Page) -> ZoneInfo:
    return ZoneInfo(page.current.account.timezone)


def _local_date(page: web.Page, raw: str, *, end: bool) -> datetime | None:
    """``YYYY-MM-DD`` in the account timezone -> the start of that day (or of the next one, for ``end``) in UTC."""
    try:
        day = datetime.strptime(raw, "%Y-%m-%d").date()
    except ValueError:
        return None
    if end:
        day += timedelta(days=1)
    return datetime.combine(day, time(0), tzinfo=_zone(page))


def _local_datetime(page: web.Page, raw: str) -> datetime | None:
    """``YYYY-MM-DDTHH:MM`` (a datetime-local input) in the account timezone."""
    for layout in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(raw, layout).replace(tzinfo=_zone(page))
        except ValueError:
            continue
    return None


def _events_of(form_values: dict[str, str]) -> list[str]:
    return [t for t in EVENT_TYPES if form_values.get(f"event_{t}") == "on"]


def _form_values(form: FormData) -> dict[str, str]:
    values = {name: web.text(form, name) for name in ("name", "url")}
    for event_type in EVENT_TYPES:
        values[f"event_{event_type}"] = "on" if web.text(form, f"event_{event_type}") else ""
    return values


def _form_context(values: dict[str, str], errors: dict[str, str]) -> dict[str, Any]:
    return {"values": values, "errors": errors, "event_types": EVENT_TYPE_TITLES}


# --- the event log (registered before /console/webhooks/{webhook_id}) --------------------------------------------


def _event_filters(page: web.Page, request: Request) -> tuple[dict[str, str], dict[str, Any], dict[str, str]]:
    """The filters as typed (for the form and links), as the service takes them, and any errors."""
    query = request.query_params
    shown = {name: query.get(name, "").strip()[:40] for name in ("webhook", "type", "state", "from", "to")}
    errors: dict[str, str] = {}
    applied: dict[str, Any] = {}
    if shown["webhook"]:
        try:
            applied["webhook_id"] = uuid.UUID(shown["webhook"])
        except ValueError:
            errors["webhook"] = "choose a webhook from the list"
    if shown["type"]:
        if shown["type"] in EVENT_TYPES:
            applied["event_type"] = shown["type"]
        else:
            errors["type"] = "choose an event type from the list"
    if shown["state"]:
        if shown["state"] in EVENT_STATES:
            applied["state"] = shown["state"]
        else:
            errors["state"] = "choose a state from the list"
    for name, end in (("from", False), ("to", True)):
        if shown[name]:
            when = _local_date(page, shown[name], end=end)
            if when is None:
                errors[name] = f"{name} must be a date (YYYY-MM-DD)"
            else:
                applied["created_from" if name == "from" else "created_to"] = when
    return shown, applied, errors


@router.get("/console/webhooks/events")
async def event_log(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    shown, applied, errors = _event_filters(page, request)
    number = web.page_number(request)
    async with page.runtime.db.session() as session:
        webhooks = await service.list_webhooks(session, page.account_id)
        events, total = ([], 0)
        if not errors:
            events, total = await service.list_events(
                session, account_id=page.account_id, limit=PER_PAGE, offset=(number - 1) * PER_PAGE, **applied
            )
    return web.render(
        request,
        "webhooks/events.html",
        {
            "events": events,
            "total": total,
            "current": number,
            "total_pages": Page(number, PER_PAGE).total_pages(total),
            "filters": shown,
            "errors": errors,
            "webhook_options": [("", "All webhooks")] + [(str(w.id), w.name) for w in webhooks],
            "type_options": [("", "All types"), *list(EVENT_TYPE_TITLES.items())],
            "state_options": [("", "All states")] + [(s, STATE_TITLES[s]) for s in EVENT_STATES],
            "type_titles": EVENT_TYPE_TITLES,
        },
        page=page,
        status_code=400 if errors else 200,
    )


@router.get("/console/webhooks/events/export.csv")
async def export_events(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    _shown, applied, errors = _event_filters(page, request)
    if errors:
        raise web.PageError(400, "Filters not valid", "; ".join(errors.values()))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["event_id", "webhook", "event_type", "state", "test", "attempts", "next_attempt_at", "created_at"])
    offset = 0
    async with page.runtime.db.session() as session:
        while True:  # in pages, so a month of events never sits in memory as objects at once
            events, _total = await service.list_events(
                session, account_id=page.account_id, limit=1000, offset=offset, **applied
            )
            for event in events:
                writer.writerow(
                    [
                        event.id,
                        event.webhook_name,
                        event.event_type,
                        event.state,
                        "yes" if event.is_test else "no",
                        event.attempts_made,
                        iso_z(event.next_attempt_at) if event.next_attempt_at else "",
                        iso_z(event.created_at),
                    ]
                )
            if len(events) < 1000:
                break
            offset += 1000
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={**web.SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="webhook-events.csv"'},
    )


def _since_default(page: web.Page) -> str:
    return (clock.now() - timedelta(days=1)).astimezone(_zone(page)).strftime("%Y-%m-%dT%H:%M")


@router.get("/console/webhooks/events/retry-failed")
async def retry_failed_preview(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    raw_since = request.query_params.get("since", "").strip() or _since_default(page)
    raw_webhook = request.query_params.get("webhook", "").strip()
    errors: dict[str, str] = {}
    since = _local_datetime(page, raw_since)
    webhook_id: uuid.UUID | None = None
    if since is None:
        errors["since"] = "since must be a date and time"
    if raw_webhook:
        try:
            webhook_id = uuid.UUID(raw_webhook)
        except ValueError:
            errors["webhook"] = "choose a webhook from the list"
    count = 0
    async with page.runtime.db.session() as session:
        webhooks = await service.list_webhooks(session, page.account_id)
        if not errors and since is not None:
            count = await service.count_failed_since(
                session, account_id=page.account_id, since=since, webhook_id=webhook_id
            )
    return web.render(
        request,
        "webhooks/retry_failed.html",
        {
            "since": raw_since,
            "webhook": raw_webhook,
            "count": count,
            "errors": errors,
            "limit": page.settings.webhook_retry_all_max_events,
            "webhook_options": [("", "All webhooks")] + [(str(w.id), w.name) for w in webhooks],
        },
        page=page,
        status_code=400 if errors else 200,
    )


@router.post("/console/webhooks/events/retry-failed")
async def retry_failed(request: Request) -> Response:
    page, form = await web.form_for(request, ALLOW)
    since = _local_datetime(page, web.text(form, "since"))
    raw_webhook = web.text(form, "webhook")
    try:
        webhook_id = uuid.UUID(raw_webhook) if raw_webhook else None
    except ValueError:
        webhook_id = None
    if since is None:
        return web.redirect("/console/webhooks/events/retry-failed", flash="Choose the time to retry from")
    try:
        async with page.runtime.db.transaction() as session:
            run = await service.retry_failed_since(
                session,
                page.settings,
                account_id=page.account_id,
                since=since,
                created_by_email=page.actor.email,
                webhook_id=webhook_id,
            )
    except service.WebhooksError as exc:
        return web.render(
            request,
            "webhooks/retry_failed.html",
            {
                "since": web.text(form, "since"),
                "webhook": raw_webhook,
                "count": 0,
                "errors": {"form": str(exc)},
                "limit": page.settings.webhook_retry_all_max_events,
                "webhook_options": [("", "All webhooks")],
            },
            page=page,
            status_code=400,
        )
    return web.redirect(f"/console/webhooks/retry-runs/{run.id}", flash=f"Retrying {len(run.event_ids)} failed events")


async def _progress(page: web.Page, run_id: str) -> service.RetryProgress:
    async with page.runtime.db.session() as session:
        try:
            return await service.retry_run_progress(session, account_id=page.account_id, run_id=web.path_uuid(run_id))
        except service.NotFound:
            raise web.not_found() from None


@router.get("/console/webhooks/retry-runs/{run_id}")
async def retry_run(request: Request, run_id: str) -> Response:
    page = await web.page_for(request, ALLOW)
    return web.render(request, "webhooks/retry_run.html", {"progress": await _progress(page, run_id)}, page=page)


@router.get("/console/webhooks/retry-runs/{run_id}/progress")
async def retry_run_progress(request: Request, run_id: str) -> Response:
    page = await web.page_for(request, ALLOW)
    progress = await _progress(page, run_id)
    return web.render_fragment(
        request, "webhooks/_retry_progress.html", {"progress": progress}, timezone=page.current.account.timezone
    )


async def _event(page: web.Page, event_id: str) -> service.EventDetails:
    async with page.runtime.db.session() as session:
        try:
            return await service.get_event(
                session, page.settings, account_id=page.account_id, event_id=web.path_uuid(event_id)
            )
        except service.NotFound:
            raise web.not_found() from None


def _pretty(body: str) -> str:
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return body


@router.get("/console/webhooks/events/{event_id}")
async def event_page(request: Request, event_id: str) -> Response:
    page = await web.page_for(request, ALLOW)
    details = await _event(page, event_id)
    return web.render(
        request,
        "webhooks/event.html",
        {
            "details": details,
            "event": details.event,
            "payload": _pretty(details.event.body),
            "type_titles": EVENT_TYPE_TITLES,
            "resendable": details.event.state in (SUCCESS, FAILED),
        },
        page=page,
    )


@router.post("/console/webhooks/events/{event_id}/resend")
async def resend(request: Request, event_id: str) -> Response:
    page, _ = await web.form_for(request, ALLOW)
    details = await _event(page, event_id)
    try:
        async with page.runtime.db.transaction() as session:
            await service.resend_event(session, account_id=page.account_id, event_id=details.event.id)
    except service.NotFound:
        raise web.not_found() from None
    except service.WebhooksError as exc:
        return web.redirect(f"/console/webhooks/events/{details.event.id}", flash=f"Not resent: {exc}")
    return web.redirect(f"/console/webhooks/events/{details.event.id}", flash="Event queued to be sent again")


# --- endpoints ------------------------------------------------------------------------------------------------


@router.get("/console/webhooks")
async def list_webhooks(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    async with page.runtime.db.session() as session:
        webhooks = await service.list_webhooks(session, page.account_id)
    return web.render(
        request,
        "webhooks/list.html",
        {"webhooks": webhooks, "limit": page.settings.max_webhooks_per_account, "type_titles": EVENT_TYPE_TITLES},
        page=page,
    )


@router.get("/console/webhooks/new")
async def new_webhook(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    values = {"name": "", "url": "", "event_cmb": "on", "event_user_feedback": "on"}
    return web.render(request, "webhooks/new.html", _form_context(values, {}), page=page)


@router.post("/console/webhooks")
async def create_webhook(request: Request) -> Response:
    page, form = await web.form_for(request, ALLOW)
    values = _form_values(form)
    try:
        async with page.runtime.db.transaction() as session:
            created = await service.create_webhook(
                session,
                page.settings,
                account_id=page.account_id,
                name=values["name"],
                url=values["url"],
                events=_events_of(values),
            )
    except service.WebhooksError as exc:
        errors = {web.field_of(str(exc), FIELD_OF_MESSAGE): str(exc)}
        return web.render(request, "webhooks/new.html", _form_context(values, errors), page=page, status_code=400)
    return web.render(
        request,
        "webhooks/secret.html",
        {"webhook": created.webhook, "secret": created.secret, "rotated": False},
        page=page,
    )


async def _webhook_context(page: web.Page, webhook: WebhookConfig, **extra: Any) -> dict[str, Any]:
    async with page.runtime.db.session() as session:
        events, total = await service.list_events(session, account_id=page.account_id, webhook_id=webhook.id, limit=10)
    values = {"name": webhook.name, "url": webhook.url}
    for event_type in EVENT_TYPES:
        values[f"event_{event_type}"] = "on" if event_type in webhook.events else ""
    overlap = webhook.previous_secret_expires_at
    context: dict[str, Any] = {
        "webhook": webhook,
        "events": events,
        "event_total": total,
        "values": values,
        "errors": {},
        "event_types": EVENT_TYPE_TITLES,
        "type_titles": EVENT_TYPE_TITLES,
        "previous_signing_until": overlap if overlap is not None and overlap > clock.now() else None,
        "test": None,
        "test_type": "cmb",
    }
    context.update(extra)
    return context


@router.get("/console/webhooks/{webhook_id}")
async def webhook_page(request: Request, webhook_id: str) -> Response:
    page = await web.page_for(request, ALLOW)
    webhook = await _webhook(page, webhook_id)
    return web.render(request, "webhooks/webhook.html", await _webhook_context(page, webhook), page=page)


@router.post("/console/webhooks/{webhook_id}")
async def update_webhook(request: Request, webhook_id: str) -> Response:
    page, form = await web.form_for(request, ALLOW)
    webhook = await _webhook(page, webhook_id)
    values = _form_values(form)
    try:
        async with page.runtime.db.transaction() as session:
            await service.update_webhook(
                session,
                page.settings,
                account_id=page.account_id,
                webhook_id=webhook.id,
                name=values["name"],
                url=values["url"],
                events=_events_of(values),
            )
    except service.NotFound:
        raise web.not_found() from None
    except service.WebhooksError as exc:
        context = await _webhook_context(
            page, webhook, values=values, errors={web.field_of(str(exc), FIELD_OF_MESSAGE): str(exc)}
        )
        return web.render(request, "webhooks/webhook.html", context, page=page, status_code=400)
    return web.redirect(f"/console/webhooks/{webhook.id}", flash="Webhook saved")


@router.post("/console/webhooks/{webhook_id}/test")
async def test_webhook(request: Request, webhook_id: str) -> Response:
    page, form = await web.form_for(request, ALLOW)
    webhook = await _webhook(page, webhook_id)
    event_type = web.text(form, "event_type") or "cmb"
    error = None
    result = None
    if event_type not in EVENT_TYPES:
        error = "choose an event type from the list"
    else:
        try:
            result = await service.send_test_event(
                page.runtime,
                account_id=page.account_id,
                webhook_id=webhook.id,
                event_type=event_type,
            )
        except service.NotFound:
            raise web.not_found() from None
        except service.WebhooksError as exc:
            error = str(exc)
    test = {"result": result, "error": error}
    if request.headers.get("hx-request") == "true":
        context = await _webhook_context(page, webhook, test=test)
        return web.render_fragment(request, "webhooks/_test_swap.html", context, timezone=page.current.account.timezone)
    context = await _webhook_context(page, webhook, test=test, test_type=event_type)
    return web.render(request, "webhooks/webhook.html", context, page=page)


@router.get("/console/webhooks/{webhook_id}/{action}")
async def confirm(request: Request, webhook_id: str, action: str) -> Response:
    if action not in ("rotate-secret", "delete"):
        raise web.not_found()
    page = await web.page_for(request, ALLOW)
    webhook = await _webhook(page, webhook_id)
    return web.render(
        request,
        "webhooks/confirm.html",
        {"webhook": webhook, "action": action, "overlap_hours": page.settings.webhook_secret_overlap_hours},
        page=page,
    )


@router.post("/console/webhooks/{webhook_id}/rotate-secret")
async def rotate_secret(request: Request, webhook_id: str) -> Response:
    page, _ = await web.form_for(request, ALLOW)
    webhook = await _webhook(page, webhook_id)
    try:
        async with page.runtime.db.transaction() as session:
            rotated = await service.rotate_secret(
                session, page.settings, account_id=page.account_id, webhook_id=webhook.id
            )
    except service.NotFound:
        raise web.not_found() from None
    return web.render(
        request,
        "webhooks/secret.html",
        {"webhook": rotated.webhook, "secret": rotated.secret, "rotated": True},
        page=page,
    )


@router.post("/console/webhooks/{webhook_id}/delete")
async def delete_webhook(request: Request, webhook_id: str) -> Response:
    page, _ = await web.form_for(request, ALLOW)
    webhook = await _webhook(page, webhook_id)
    try:
        async with page.runtime.db.transaction() as session:
            await service.delete_webhook(session, account_id=page.account_id, webhook_id=webhook.id)
    except service.NotFound:
        raise web.not_found() from None
    return web.redirect("/console/webhooks", flash=f"Webhook {webhook.name} deleted")
