"""API keys (SPEC §3.1, §10.1): the clientAccountId, the keys, create / regenerate / delete; secrets shown once."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from callerid.accounts import service
from callerid.accounts.permissions import Permission
from callerid.config import FEATURES
from callerid.console import web

router = APIRouter()
ALLOW = Permission.MANAGE_API_KEYS
FEATURE_TITLES = {
    "call_personalisation": "Call personalisation",
    "number_management": "Number management",
    "call_me_back": "Call Me Back",
    "user_feedback": "User feedback",
    service.ANALYTICS: "Analytics",
}
LEVEL_TITLES = {"none": "No access", "read": "Read", "write": "Read and write"}
# The analytics API (issue 13) is only read; a key has no access to it unless it is chosen here.
ANALYTICS_FIELD = f"access_{service.ANALYTICS}"


async def _key(page: web.Page, entry: str) -> tuple[service.ApiKey, int]:
    async with page.runtime.db.session() as session:
        try:
            key = await service.get_api_key(session, page.account_id, web.path_uuid(entry))
        except service.NotFound:
            raise web.not_found() from None
        return key, await service.live_token_count(session, key.id)


def _form_context(values: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> dict[str, object]:
    values = values or {}
    return {
        "values": values,
        "errors": errors or {},
        "features": [(f, FEATURE_TITLES[f], values.get(f"access_{f}", "write")) for f in FEATURES],
        "levels": list(LEVEL_TITLES.items()),
        "analytics": (ANALYTICS_FIELD, FEATURE_TITLES[service.ANALYTICS], values.get(ANALYTICS_FIELD) or "none"),
        "analytics_levels": [(level, LEVEL_TITLES[level]) for level in service.KEY_ONLY_LEVELS],
    }


@router.get("/console/api-keys")
async def list_keys(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    async with page.runtime.db.session() as session:
        keys = await service.list_api_keys(session, page.account_id)
    return web.render(
        request,
        "api_keys/list.html",
        {
            "keys": keys,
            "limit": page.settings.max_api_keys_per_account,
            "feature_titles": FEATURE_TITLES,
            "level_titles": LEVEL_TITLES,
        },
        page=page,
    )


@router.get("/console/api-keys/new")
async def new_key(request: Request) -> Response:
    page = await web.page_for(request, ALLOW)
    return web.render(request, "api_keys/new.html", _form_context(), page=page)


def _issued_context(page: web.Page, issued: service.IssuedKey, *, regenerated: bool) -> dict[str, object]:
    pair = {
        "client_account_id": str(page.account_id),
        "key_id": str(issued.key.key_id),
        "api_key": issued.secret,
        "name": issued.key.name,
    }
    return {
        "key": issued.key,
        "secret": issued.secret,
        "regenerated": regenerated,
        "download_name": f"callerid-api-key-{_file_safe(issued.key.name)}.json",
        "download_body": orjson.dumps(pair, option=orjson.OPT_INDENT_2).decode(),
    }


def _file_safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower()).strip("-")
    return cleaned[:40] or "key"


@router.post("/console/api-keys")
async def create_key(request: Request) -> Response:
    page, form = await web.form_for(request, ALLOW)
    fields = ("name", "description", *(f"access_{f}" for f in FEATURES), ANALYTICS_FIELD)
    values = {name: web.text(form, name) for name in fields}
    access = {f: values[f"access_{f}"] or "none" for f in FEATURES}
    errors: dict[str, str] = {}
    for feature, level in access.items():
        if level not in LEVEL_TITLES:
            errors[f"access_{feature}"] = f"choose an access level for {FEATURE_TITLES[feature]}"
    analytics = values[ANALYTICS_FIELD] or "none"
    if analytics not in service.KEY_ONLY_LEVELS:
        errors[ANALYTICS_FIELD] = "choose No access or Read for Analytics"
    elif analytics != "none":
        access[service.ANALYTICS] = analytics  # only when granted: see accounts.service.KEY_ONLY_FEATURES
    if not errors:
        try:
            async with page.runtime.db.transaction() as session:
                issued = await service.create_api_key(
                    session,
                    page.settings,
                    account_id=page.account_id,
                    name=values["name"],
                    description=values["description"].strip(),
                    access=access,
                    created_by_email=page.actor.email,
                )
        except service.AccountsError as exc:
            errors[exc.field or "form"] = exc.message
    if errors:
        context = _form_context(values, errors)
        return web.render(request, "api_keys/new.html", context, page=page, status_code=400)
    return web.render(request, "api_keys/issued.html", _issued_context(page, issued, regenerated=False), page=page)


@router.get("/console/api-keys/{entry}/regenerate")
async def confirm_regenerate(request: Request, entry: str) -> Response:
    page = await web.page_for(request, ALLOW)
    key, tokens = await _key(page, entry)
    return web.render(
        request, "api_keys/confirm.html", {"key": key, "tokens": tokens, "action": "regenerate"}, page=page
    )


@router.post("/console/api-keys/{entry}/regenerate")
async def regenerate(request: Request, entry: str) -> Response:
    page, _ = await web.form_for(request, ALLOW)
    key, _tokens = await _key(page, entry)
    async with page.runtime.db.transaction() as session:
        issued = await service.regenerate_api_key(session, account_id=page.account_id, key_id=key.key_id)
    page.runtime.tokens.forget()  # its old tokens are refused here at once (elsewhere within token_cache_seconds)
    return web.render(request, "api_keys/issued.html", _issued_context(page, issued, regenerated=True), page=page)


@router.get("/console/api-keys/{entry}/delete")
async def confirm_delete(request: Request, entry: str) -> Response:
    page = await web.page_for(request, ALLOW)
    key, tokens = await _key(page, entry)
    return web.render(request, "api_keys/confirm.html", {"key": key, "tokens": tokens, "action": "delete"}, page=page)


@router.post("/console/api-keys/{entry}/delete")
async def delete(request: Request, entry: str) -> Response:
    page, _ = await web.form_for(request, ALLOW)
    key, _tokens = await _key(page, entry)
    async with page.runtime.db.transaction() as session:
        await service.delete_api_key(session, account_id=page.account_id, key_id=key.key_id)
    page.runtime.tokens.forget()  # its tokens are refused here at once (elsewhere within token_cache_seconds)
    return web.redirect("/console/api-keys", flash=f"API key {key.name} deleted")
