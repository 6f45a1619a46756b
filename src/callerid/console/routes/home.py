"""Home: the account at a glance: what to do next, recent webhook activity and its health."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from starlette.responses import Response

from callerid import clock
from callerid.accounts import members
from callerid.accounts import service as accounts
from callerid.accounts.permissions import Permission
from callerid.console import web
from callerid.labels.queries import count_labels
from callerid.setup import service as setup
from callerid.webhooks import service as webhooks
from callerid.webhooks.models import FAILED

router = APIRouter()


@router.get("/console")
async def home(request: Request) -> Response:
    page = await web.page_for(request, Permission.VIEW_HOME)
    context: dict[str, object] = {}
    async with page.runtime.db.session() as session:
        context["label_count"] = await count_labels(session, page.account_id)
        context["member_count"] = len(await members.list_members(session, page.actor))
        # A new account's admin is offered the first-run setup until a feature set exists or they dismiss it.
        context["setup_card"] = (
            await setup.home_card(session, page.account_id) if page.can(Permission.SET_UP_ACCOUNT) else None
        )
        if page.can(Permission.MANAGE_API_KEYS):
            context["key_count"] = len(await accounts.list_api_keys(session, page.account_id))
        if page.can(Permission.MANAGE_WEBHOOKS):
            context["webhook_count"] = len(await webhooks.list_webhooks(session, page.account_id))
            context["recent_events"], context["event_count"] = await webhooks.list_events(
                session, account_id=page.account_id, limit=5
            )
            _failed, context["failed_today"] = await webhooks.list_events(
                session,
                account_id=page.account_id,
                state=FAILED,
                created_from=clock.now() - timedelta(days=1),
                limit=1,
            )
    return web.render(request, "home.html", context, page=page)
