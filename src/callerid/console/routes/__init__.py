"""The console's routes, one module per area of the navigation."""

from __future__ import annotations

from fastapi import APIRouter

from callerid.console.routes import api_keys, auth, home, labels, members, settings, webhooks

router = APIRouter(include_in_schema=False)
for module in (auth, home, api_keys, labels, webhooks, members, settings):
    router.include_router(module.router)
