"""Imports every domain's tables so that ``Base.metadata`` knows them all (migrations, tests)."""

from __future__ import annotations

import importlib

# One entry per domain that owns tables. Add a domain here when it gets a models.py.
MODEL_MODULES = (
    "callerid.accounts.models",
    "callerid.jobs.models",
    "callerid.labels.models",
    "callerid.personalisation.models",
    "callerid.numbers.models",
    "callerid.delivery.models",
    "callerid.identity.models",
    "callerid.webhooks.models",
    "callerid.engagement.models",
    "callerid.idempotency.models",
    "callerid.setup.models",
    "callerid.analytics.models",
)


def import_all_models() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)
