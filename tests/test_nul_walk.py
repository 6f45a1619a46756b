"""Text with U+0000 in any field of any POST body gets a handled answer on both databases, never a 500.

PostgreSQL refuses NUL in text (SQLite stores it), so a NUL that reached a text column or a text comparison would be
a 500 on PostgreSQL only. Every field of every business endpoint and app endpoint is sent, one at a time, with a NUL
inside its string (and, for a non-string field, as a string holding a NUL). The sweep is over the app's own route
table, so that an endpoint added later without a sample body here fails ``test_every_post_endpoint_is_walked``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from callerid import clock
from callerid.db import Database
from callerid.jobs.runner import JobRunner
from callerid.personalisation.service import epoch_ms
from tests.accounts.test_auth import _all_routes
from tests.conftest import Tenant
from tests.engagement.conftest import make_feature_set, make_org, publish, register_phone
from tests.engagement.test_surveys import QUESTIONS, make_survey
from tests.personalisation.conftest import add_label

BUSINESS_NUMBER = "910987654321"
NUL = "\x00"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"number_job_delay_seconds": 0}


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every leaf of a JSON value (strings, numbers, booleans), as a path of keys and indexes."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))
    else:
        yield path


def _with_nul(body: Any, path: tuple[Any, ...]) -> Any:
    """``body`` with a NUL in the middle of the leaf at ``path`` (a non-string leaf becomes a string with one)."""
    changed = copy.deepcopy(body)
    parent = changed
    for step in path[:-1]:
        parent = parent[step]
    leaf = parent[path[-1]]
    text = leaf if isinstance(leaf, str) else str(leaf)
    middle = len(text) // 2
    parent[path[-1]] = text[:middle] + NUL + text[middle:]
    return changed


def _name(path: tuple[Any, ...]) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path).lstrip(".")


# Path templates of the POST endpoints this sweep covers; the console (/console/...) has its own form tests.
WALKED = {
    "/clients/{clientAccountId}/token",
    "/v2/clients/{clientAccountId}/dynamic_call_record",
    "/v2/clients/{clientAccountId}/dynamic_call_records",
    "/clients/{clientAccountId}/dynamic_call_record",
    "/clients/{clientAccountId}/dynamic_call_records",
    "/clients/{clientAccountId}/number_management/feature_sets/{featureSetId}/numbers/publish",
    "/clients/{clientAccountId}/number_management/feature_sets/{featureSetId}/numbers/delist",
    "/app/v1/devices",
    "/app/v1/devices/verify",
    "/app/v1/devices/resend",
    "/app/v1/call-me-back",
    "/app/v1/surveys/{survey_id}/responses",
    "/app/v1/call-signals",
}


def test_every_post_endpoint_is_walked(app: Any) -> None:
    posts = {route.path for route in app.fast_routes if "POST" in route.methods}
    posts |= {
        route.path
        for route in _all_routes(app)
        if "POST" in (getattr(route, "methods", None) or ()) and not route.path.startswith("/console")
    }
    assert posts == WALKED


async def test_a_nul_in_any_field_is_answered_without_a_500(
    client: httpx.AsyncClient,
    db: Database,
    runner: JobRunner,
    settings: Any,
    tenant: Tenant,
    auth: dict[str, str],
) -> None:
    now_ms = epoch_ms(clock.now())
    now_iso = clock.now().isoformat()
    account = tenant.account_id
    label = await add_label(db, settings, account)
    org = await make_org(db, account)
    feature_set = await make_feature_set(db, org, "Everything on", call_me_back=True, survey=True)
    await publish(client, runner, account, auth, feature_set, BUSINESS_NUMBER)
    survey_id = await make_survey(db, org, feature_set)
    phone = await register_phone(client)

    v2 = {
        "label_id": str(label.id),
        "dynamic_label_name": "Flower rasm",
        "dynamic_call_reason": "Flower Delivery",
        "caller_number": "911234567898",
        "receiver_number": "919234567898",
        "starts_at": now_ms - 1000,
        "ends_at": now_ms + 3_600_000,
    }
    v1 = {
        "label_id": str(label.id),
        "label_name": "Flower rasm",
        "call_reason": "Flower Delivery",
        "caller": "911234567898",
        "receiver": "919234567898",
        "starts_at": now_ms - 1000,
        "ends_at": now_ms + 3_600_000,
    }
    numbers = f"/clients/{account}/number_management/feature_sets/{feature_set}/numbers"
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        (f"/clients/{account}/token", tenant.credentials, {"X-Public-Access": "allow"}),
        (f"/v2/clients/{account}/dynamic_call_record", v2, auth),
        (f"/v2/clients/{account}/dynamic_call_records", {"call_records": [v2, v2]}, auth),
        (f"/clients/{account}/dynamic_call_record", v1, auth),
        (f"/clients/{account}/dynamic_call_records", {"call_records": [v1, v1]}, auth),
        (f"{numbers}/publish", {"phone_numbers": ["911234567891"]}, auth),
        (f"{numbers}/delist", {"phone_numbers": ["911234567891"]}, auth),
        ("/app/v1/devices", {"phone_number": "919999999999", "platform": "android", "app_version": "2.0.0"}, {}),
        ("/app/v1/devices/verify", {"registration_id": "0b7d7a53-7b0e-4a47-9b8e-2f4f4c1d6a10", "code": "123456"}, {}),
        ("/app/v1/devices/resend", {"registration_id": "0b7d7a53-7b0e-4a47-9b8e-2f4f4c1d6a10"}, {}),
        (
            "/app/v1/call-me-back",
            {
                "business_number": BUSINESS_NUMBER,
                "is_interested": True,
                "client_number_available": False,
                "alternate_number": "919876543210",
                "preferred_from_time": now_ms // 1000 + 60,
                "preferred_to_time": now_ms // 1000 + 1860,
            },
            phone,
        ),
        (
            f"/app/v1/surveys/{survey_id}/responses",
            {"business_number": BUSINESS_NUMBER, "answers": [{"question": QUESTIONS[0], "response": "Great"}]},
            phone,
        ),
        (
            "/app/v1/call-signals",
            {
                "signals": [
                    {"eventId": "nul-walk-1", "kind": "displayed", "caller": BUSINESS_NUMBER, "occurredAt": now_iso},
                    {
                        "eventId": "nul-walk-2",
                        "kind": "ended",
                        "caller": BUSINESS_NUMBER,
                        "occurredAt": now_iso,
                        "durationSeconds": 42,
                    },
                ]
            },
            phone,
        ),
    ]
    failures = []
    for url, body, headers in requests:
        for path in _paths(body):
            response = await client.post(url, json=_with_nul(body, path), headers=headers)
            if response.status_code >= 500:
                failures.append(f"{url} {_name(path)}: {response.status_code} {response.text}")
    assert not failures, "\n".join(failures)
