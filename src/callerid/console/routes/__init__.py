"""The console's routes, one module per area of the navigation."""

from __future__ import annotations

from fastapi import APIRouter

from callerid.console.routes import (
    activity,
    analytics,
    api_keys,
    auth,
    call_me_back,
    call_records,
    feature_sets,
    home,
    labels,
    listing,
    members,
    numbers,
    organisation,
    settings,
    setup,
    surveys,
    webhooks,
)

router = APIRouter(include_in_schema=False)
CONSOLE_MODULES = (
    auth,
    home,
    organisation,
    api_keys,
    labels,
    listing,  # before feature_sets: /feature-sets/{id}/listing... must win over its catch-alls
    surveys,  # before feature_sets too: /feature-sets/{id}/survey
    feature_sets,
    call_me_back,
    numbers,
    activity,
    analytics,
    call_records,
    webhooks,
    members,
    settings,
    setup,
)
for module in CONSOLE_MODULES:
    router.include_router(module.router)
