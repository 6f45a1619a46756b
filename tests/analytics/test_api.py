"""The analytics API (issue 13 §4): figures put in as the writers of counted facts do (``Tally`` steps), then read by
day, label, feature set and number, narrowed by filters, as JSON and as CSV with the same numbers; its validation;
the ``analytics`` access level; another account's figures refused."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from callerid.accounts import service as accounts
from callerid.analytics import queries
from callerid.analytics.models import COUNTERS, NO_ID, NO_NUMBER
from callerid.analytics.tally import FiguresKey, Tally
from callerid.config import FEATURES, Settings
from callerid.db import Database
from callerid.failures import FORBIDDEN_MESSAGE
from tests.conftest import Tenant, create_tenant, mint
from tests.numbers.conftest import Tree, make_label, make_tree

FORBIDDEN = {"slug": "forbidden-error", "message": FORBIDDEN_MESSAGE}
WITH_ANALYTICS = {**dict.fromkeys(FEATURES, "write"), "analytics": "read"}
DAY1 = date(2026, 11, 1)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY1 + timedelta(days=2)
DAY4 = DAY1 + timedelta(days=3)  # nothing counted: a zero row
N1 = 911234567890
N2 = 911234567891


async def add(db: Database, key: FiguresKey, counts: dict[str, int], delays_ms: tuple[float, ...] = ()) -> None:
    """Counts as the writers of counted facts add them: ``Tally`` steps in one write."""
    tally = Tally()
    for name, amount in counts.items():
        tally.add(key, name, amount)
    for delay in delays_ms:
        tally.add_delay(key.account_id, key.day, delay)
    await db.write(tally.steps(db))


@dataclass
class World:
    tenant: Tenant
    auth: dict[str, str]
    tree: Tree
    other_label: uuid.UUID

    @property
    def url(self) -> str:
        return f"/clients/{self.tenant.account_id}/analytics"


@pytest.fixture
async def world(client: httpx.AsyncClient, db: Database, settings: Settings) -> World:
    tenant = await create_tenant(db, settings, access=WITH_ANALYTICS)
    tree = await make_tree(db, tenant.account_id)
    other_label = await make_label(db, tenant.account_id, name="Billing")
    account = tenant.account_id
    await add(
        db,
        FiguresKey(account, DAY1, tree.label_id, tree.fs, N1),
        {
            "records_delivered": 5,
            "records_failed_to_push": 1,
            "shown": 5,
            "answered": 3,
            "missed": 1,
            "ended": 3,
            "talk_seconds": 300,
            "survey_responses": 2,
            "ratings": 2,
            "rating_sum": 9,
        },
    )
    await add(db, FiguresKey(account, DAY1, tree.label_id, tree.fs, N1), {"answered": 1, "call_me_back_requests": 1})
    await add(
        db,
        FiguresKey(account, DAY2, other_label, tree.fs_sub, N2),
        {"records_not_app_user": 2, "answered": 1, "rejected": 1, "blocked": 3},
    )
    # Webhook deliveries are the account's: no label, feature set or number. 18 fast, 2 slow: p95 in the 2.5 s bucket.
    await add(
        db,
        FiguresKey(account, DAY3, NO_ID, NO_ID, NO_NUMBER),
        {"webhooks_succeeded": 19, "webhooks_failed": 1},
        delays_ms=(50.0,) * 18 + (2000.0,) * 2,
    )
    # Outside the range asked for, and another account's figures on the same days: never counted.
    await add(db, FiguresKey(account, DAY1 - timedelta(days=1), tree.label_id, tree.fs, N1), {"answered": 100})
    other = await create_tenant(db, settings, name="Other", access=WITH_ANALYTICS)
    await add(db, FiguresKey(other.account_id, DAY1, NO_ID, NO_ID, N1), {"answered": 1000, "records_delivered": 7})
    await add(db, FiguresKey(other.account_id, DAY3, NO_ID, NO_ID, NO_NUMBER), {}, delays_ms=(900_000.0,) * 50)
    auth = {"Authorization": f"Bearer {await mint(client, tenant)}"}
    return World(tenant, auth, tree, other_label)


async def get(client: httpx.AsyncClient, world: World, **params: str) -> httpx.Response:
    return await client.get(world.url, params={"from": str(DAY1), "to": str(DAY4), **params}, headers=world.auth)


def counts_of(body: dict[str, Any]) -> dict[str, int]:
    """The non-zero counters of a JSON row, by their internal names."""
    return {name: body[queries.WIRE_NAMES[name]] for name in COUNTERS if body[queries.WIRE_NAMES[name]]}


ROW1 = {
    "records_delivered": 5,
    "records_failed_to_push": 1,
    "shown": 5,
    "answered": 4,
    "missed": 1,
    "ended": 3,
    "talk_seconds": 300,
    "survey_responses": 2,
    "ratings": 2,
    "rating_sum": 9,
    "call_me_back_requests": 1,
}
ROW2 = {"records_not_app_user": 2, "answered": 1, "rejected": 1, "blocked": 3}
ROW3 = {"webhooks_succeeded": 19, "webhooks_failed": 1}


async def test_by_day_lists_every_day_with_totals(client: httpx.AsyncClient, world: World) -> None:
    response = await get(client, world, group_by="day")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["groupBy"], body["filters"]) == (str(DAY1), str(DAY4), "day", {})
    assert [(row["key"], row["name"]) for row in body["rows"]] == [(str(d), str(d)) for d in (DAY1, DAY2, DAY3, DAY4)]
    assert [counts_of(row) for row in body["rows"]] == [ROW1, ROW2, ROW3, {}]
    day1, day2, _day3, day4 = body["rows"]
    assert (day1["recordsTotal"], day1["answerRate"], day1["averageTalkSeconds"], day1["averageRating"]) == (
        6,
        0.8,
        100.0,
        4.5,
    )
    assert (day2["recordsTotal"], day2["answerRate"], day2["averageTalkSeconds"], day2["averageRating"]) == (
        2,
        0.5,
        None,
        None,
    )
    assert [row["webhookP95Ms"] for row in body["rows"]] == [None, None, 2500, None]
    assert day4["answerRate"] is None and day4["recordsTotal"] == 0

    totals = body["totals"]
    assert totals["key"] == f"{DAY1}/{DAY4}"
    expected = {name: ROW1.get(name, 0) + ROW2.get(name, 0) + ROW3.get(name, 0) for name in COUNTERS}
    assert counts_of(totals) == {name: value for name, value in expected.items() if value}
    assert (totals["recordsTotal"], totals["answerRate"], totals["webhookP95Ms"]) == (8, round(5 / 7, 4), 2500)


async def test_by_label_feature_set_and_number(client: httpx.AsyncClient, world: World) -> None:
    tree = world.tree
    by_label = (await get(client, world, group_by="label")).json()
    # By name ("Acme Deliveries" < "Billing"), the figures of no label last.
    assert [(row["key"], row["name"]) for row in by_label["rows"]] == [
        (str(tree.label_id), "Acme Deliveries"),
        (str(world.other_label), "Billing"),
        (str(NO_ID), queries.NONE_NAME),
    ]
    assert [counts_of(row) for row in by_label["rows"]] == [ROW1, ROW2, ROW3]
    assert all(row["webhookP95Ms"] is None for row in by_label["rows"])  # a p95 is per day or of the range only
    assert by_label["totals"]["webhookP95Ms"] == 2500

    by_set = (await get(client, world, group_by="feature_set")).json()
    assert [(row["key"], row["name"]) for row in by_set["rows"]] == [
        (str(tree.fs), "Main set"),
        (str(tree.fs_sub), "Night set"),
        (str(NO_ID), queries.NONE_NAME),
    ]
    assert [counts_of(row) for row in by_set["rows"]] == [ROW1, ROW2, ROW3]

    by_number = (await get(client, world, group_by="number")).json()
    assert [(row["key"], row["name"]) for row in by_number["rows"]] == [
        (f"+{N1}", f"+{N1}"),
        (f"+{N2}", f"+{N2}"),
        ("", queries.NONE_NAME),
    ]
    assert [counts_of(row) for row in by_number["rows"]] == [ROW1, ROW2, ROW3]
    assert by_label["totals"] == by_set["totals"] == by_number["totals"]

    # A range with nothing counted: no groups, zero totals (the day grouping still lists its days).
    empty = await client.get(
        world.url, params={"from": "2026-10-01", "to": "2026-10-02", "group_by": "label"}, headers=world.auth
    )
    assert empty.json()["rows"] == [] and counts_of(empty.json()["totals"]) == {}


async def test_filters_narrow_the_figures(client: httpx.AsyncClient, world: World) -> None:
    tree = world.tree
    by_label = (await get(client, world, group_by="day", label_id=str(tree.label_id).upper())).json()
    assert by_label["filters"] == {"labelId": str(tree.label_id)}
    assert [counts_of(row) for row in by_label["rows"]] == [ROW1, {}, {}, {}]
    # Webhook figures are the account's as a whole: none when narrowed.
    assert counts_of(by_label["totals"]) == ROW1 and by_label["totals"]["webhookP95Ms"] is None

    by_set = (await get(client, world, group_by="number", feature_set_id=str(tree.fs_sub))).json()
    assert [(row["key"], counts_of(row)) for row in by_set["rows"]] == [(f"+{N2}", ROW2)]

    by_number = (await get(client, world, group_by="label", number=f"+{N1}")).json()
    assert by_number["filters"] == {"number": f"+{N1}"}
    assert [(row["name"], counts_of(row)) for row in by_number["rows"]] == [("Acme Deliveries", ROW1)]

    # Filters combine; one that matches nothing gives nothing (a foreign or unknown id included).
    both = (await get(client, world, group_by="label", label_id=str(tree.label_id), number=f"{N2}")).json()
    assert both["rows"] == [] and counts_of(both["totals"]) == {}
    unknown = (await get(client, world, group_by="day", feature_set_id=str(uuid.uuid4()))).json()
    assert counts_of(unknown["totals"]) == {}


async def test_csv_has_the_numbers_of_the_json(client: httpx.AsyncClient, world: World) -> None:
    for group_by in queries.GROUPS:
        as_json = (await get(client, world, group_by=group_by)).json()
        response = await get(client, world, group_by=group_by, format="csv")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"] == (
            f'attachment; filename="analytics-{DAY1}-{DAY4}-{group_by}.csv"'
        )
        header, *lines = list(csv.reader(io.StringIO(response.text)))
        assert tuple(header) == queries.csv_columns(group_by)
        assert header[:2] == [{"feature_set": "featureSet"}.get(group_by, group_by), "name"]
        # Every column of the header is a JSON field of the row, with the same number ("" for null).
        expected = [
            [row["key"], row["name"], *("" if row[name] is None else str(row[name]) for name in header[2:])]
            for row in as_json["rows"]
        ]
        assert lines == expected and len(lines) == len(as_json["rows"]) > 0
        assert response.text.endswith("\r\n")


INVALID = [
    ({"to": "2026-11-04"}, "from is required"),
    ({"from": "2026-11-01"}, "to is required"),
    ({"from": "2026-11-31", "to": "2026-12-01"}, "from is invalid: a day as YYYY-MM-DD"),
    ({"from": "2026-11-01", "to": "1764547200000"}, "to is invalid: a day as YYYY-MM-DD"),
    ({"from": "2026-11-02", "to": "2026-11-01"}, "to is before from"),
    ({"from": "2025-11-01", "to": "2026-11-02"}, "to is more than 366 days after from (at most 366 days)"),
    ({"group_by": "week"}, "group_by is invalid: one of day, label, feature_set, number"),
    ({"format": "xml"}, "format is invalid: json or csv"),
    ({"label_id": "nope"}, "label_id is invalid"),
    ({"feature_set_id": "1234"}, "feature_set_id is invalid"),
    ({"number": "12345"}, "number is invalid"),
]


async def test_invalid_parameters_are_named(client: httpx.AsyncClient, world: World) -> None:
    for params, message in INVALID:
        query = params if "from" in params or "to" in params else {"from": str(DAY1), "to": str(DAY4), **params}
        response = await client.get(world.url, params=query, headers=world.auth)
        assert (response.status_code, response.json()) == (400, {"slug": "invalid-input", "message": message})
    # A year (366 days) is the longest range.
    longest = await client.get(world.url, params={"from": "2025-11-02", "to": "2026-11-02"}, headers=world.auth)
    assert longest.status_code == 200
    assert len(longest.json()["rows"]) == 366


async def test_the_analytics_access_level_is_needed(
    client: httpx.AsyncClient, db: Database, settings: Settings, world: World
) -> None:
    params = {"from": str(DAY1), "to": str(DAY4)}
    # A key of every reference feature, made before the level existed or without naming it: refused.
    plain = await create_tenant(db, settings, name="Plain")
    plain_auth = {"Authorization": f"Bearer {await mint(client, plain)}"}
    refused = await client.get(f"/clients/{plain.account_id}/analytics", params=params, headers=plain_auth)
    assert (refused.status_code, refused.json()) == (403, FORBIDDEN)
    # Named as none: refused; as read: answered, even with no reference feature at all.
    for level, status in (("none", 403), ("read", 200)):
        tenant = await create_tenant(db, settings, name=level, access=accounts.parse_access(f"analytics={level}"))
        headers = {"Authorization": f"Bearer {await mint(client, tenant)}"}
        response = await client.get(f"/clients/{tenant.account_id}/analytics", params=params, headers=headers)
        assert response.status_code == status, response.text
    # Another account's id with a token that has the level: refused, before any parameter is read.
    other = await client.get(f"/clients/{plain.account_id}/analytics", params=params, headers=world.auth)
    assert (other.status_code, other.json()) == (403, FORBIDDEN)
    bad_too = await client.get(f"/clients/{plain.account_id}/analytics", headers=world.auth)
    assert bad_too.status_code == 403
    missing = await client.get(world.url, params=params)
    assert missing.status_code == 401


def test_parse_access_grants_analytics_only_by_name() -> None:
    assert "analytics" not in accounts.parse_access(None)
    assert "analytics" not in accounts.parse_access("call_me_back=read")
    assert accounts.parse_access("analytics=read") == {**dict.fromkeys(FEATURES, "none"), "analytics": "read"}
    with pytest.raises(accounts.AccountsError, match="levels are none, read"):
        accounts.parse_access("analytics=write")
    assert accounts.allows({"analytics": "read"}, "analytics", "read")
    assert not accounts.allows({"call_me_back": "write"}, "analytics", "read")


def test_openapi_documents_the_endpoint_with_csv(app: Any) -> None:
    operation = app.openapi()["paths"]["/clients/{clientAccountId}/analytics"]["get"]
    assert set(operation["responses"]["200"]["content"]) == {
        "application/json; charset=utf-8",
        "text/csv; charset=utf-8",
    }
    assert {parameter["name"] for parameter in operation["parameters"]} >= {
        "clientAccountId",
        "from",
        "to",
        "group_by",
        "label_id",
        "feature_set_id",
        "number",
        "format",
    }
    assert operation["security"]
