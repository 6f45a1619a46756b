"""FS (SPEC §5.6) and NN (SPEC §5.9): shapes, filters, pagination (§2.7)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from callerid import clock
from callerid.db import Database
from callerid.jobs.runner import JobRunner
from callerid.numbers import service
from callerid.numbers.models import CallingOperation, CallReason, FeatureSet
from tests.conftest import Tenant, create_tenant
from tests.numbers.conftest import Api, Tree, make_tree, settle
from tests.numbers.test_publish import key_email

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}Z$")


async def test_feature_set_items_exact(api: Api, tree: Tree, tenant: Tenant, db: Database) -> None:
    response = await api.feature_sets()
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["feature_sets", "pagination_info"]
    assert body["pagination_info"] == {"total_page_count": 1, "current_page": 1, "page_limit": 50}
    async with db.session() as session:
        calling = await session.scalar(select(CallingOperation).where(CallingOperation.name == "Delivery"))
        reason_id = await session.scalar(select(CallReason.id))
        reason_text = await session.scalar(select(CallReason.text))
    assert calling is not None and reason_text == "Your parcel is on its way"
    sub_item, main_item = body["feature_sets"]  # newest first
    for item in (sub_item, main_item):
        assert ISO_Z.match(item.pop("created_at")) and ISO_Z.match(item.pop("updated_at"))
    common = {
        "description": "",
        "status": "draft",
        "client_account_id": str(tenant.account_id),
        "label_id": str(tree.label_id),
        "video_caller_id": None,
        "business_profile_id": None,
        "survey": False,
        "department_id": str(tree.department_id),
        "department_name": "Logistics",
        "operation_id": str(tree.operation_id),
        "calling_operation_id": str(calling.id),
        "calling_operation_name": "Delivery",
        "process_name": "Doorstep",
    }
    assert main_item == {
        "id": str(tree.fs),
        "name": "Main set",
        "process_id": str(tree.process_id),
        "call_reason_id": str(reason_id),
        "call_me_back": True,
        "sub_process_name": "",
        **common,
    }
    assert sub_item == {
        "id": str(tree.fs_sub),
        "name": "Night set",
        "process_id": str(tree.sub_process_id),
        "call_reason_id": None,
        "call_me_back": False,
        "sub_process_name": "Night",
        **common,
    }
    expected_order = [
        "id", "name", "description", "status", "process_id", "client_account_id", "label_id", "call_reason_id",
        "video_caller_id", "business_profile_id", "call_me_back", "survey", "department_id", "department_name",
        "operation_id", "calling_operation_id", "calling_operation_name", "process_name", "sub_process_name",
        "created_at", "updated_at",
    ]  # fmt: skip
    assert list((await api.feature_sets()).json()["feature_sets"][0]) == expected_order


async def second_tree(db: Database, tenant: Tenant) -> Tree:
    clock.advance(1)
    return await make_tree(db, tenant.account_id, prefix="B ")


async def test_feature_set_filters(api: Api, tree: Tree, tenant: Tenant, db: Database) -> None:
    other = await second_tree(db, tenant)

    async def ids(**params: Any) -> list[str]:
        response = await api.feature_sets(**params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["feature_sets"]]

    everything = [str(other.fs_sub), str(other.fs), str(tree.fs_sub), str(tree.fs)]
    assert await ids() == everything
    assert await ids(department_id=tree.department_id) == [str(tree.fs_sub), str(tree.fs)]
    assert await ids(operation_id=other.operation_id) == [str(other.fs_sub), str(other.fs)]
    # A process id matches the sets on it and on its sub-processes; a sub-process id only its own.
    assert await ids(process_id=tree.process_id) == [str(tree.fs_sub), str(tree.fs)]
    assert await ids(process_id=tree.sub_process_id) == [str(tree.fs_sub)]
    assert await ids(process_id=str(tree.sub_process_id).upper()) == [str(tree.fs_sub)]
    # AND-combined; unknown ids give an empty list.
    assert await ids(department_id=tree.department_id, operation_id=other.operation_id) == []
    assert await ids(department_id=uuid.uuid4()) == []
    assert await ids(department_id="") == everything


@pytest.mark.parametrize("name", ["department_id", "operation_id", "process_id"])
async def test_feature_set_filter_errors(api: Api, tree: Tree, name: str) -> None:
    response = await api.feature_sets(**{name: "nope"})
    assert (response.status_code, response.json()) == (400, {"slug": "invalid-input", "message": f"{name} is invalid"})


async def test_feature_set_pagination(api: Api, tree: Tree, tenant: Tenant, db: Database) -> None:
    await second_tree(db, tenant)
    response = await api.feature_sets(limit=3)
    assert response.json()["pagination_info"] == {"total_page_count": 2, "current_page": 1, "page_limit": 3}
    assert len(response.json()["feature_sets"]) == 3
    response = await api.feature_sets(limit=3, page=2)
    assert len(response.json()["feature_sets"]) == 1
    response = await api.feature_sets(limit=3, page=5)
    assert response.json() == {
        "feature_sets": [],
        "pagination_info": {"total_page_count": 2, "current_page": 5, "page_limit": 3},
    }
    for params, name in (({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"page": "x"}, "page")):
        response = await api.feature_sets(**params)
        assert (response.status_code, response.json()) == (
            400,
            {"slug": "invalid-input", "message": f"{name} is invalid"},
        )


async def test_empty_account_pages(api: Api) -> None:
    assert (await api.feature_sets()).json() == {
        "feature_sets": [],
        "pagination_info": {"total_page_count": 0, "current_page": 1, "page_limit": 50},
    }
    assert (await api.numbers()).json() == {"numbers": [], "pagination_information": {"total_page_count": 0}}


async def test_number_items_exact(api: Api, tree: Tree, tenant: Tenant, db: Database, runner: JobRunner) -> None:
    clock.freeze(clock.now().replace(microsecond=557_139))
    await api.publish(tree.fs, ["911234567891"])
    # The spec's literal forms (SPEC §2.6, the NN example): six fractional digits kept when none is zero.
    added = clock.now().strftime("%Y-%m-%dT%H:%M:%S") + ".557139Z"
    clock.advance(4.08702)  # the listing finished at ...644159
    updated = clock.now().strftime("%Y-%m-%dT%H:%M:%S") + ".644159Z"
    await runner.run_until_idle()
    response = await api.numbers()
    assert response.status_code == 200
    assert response.json() == {
        "numbers": [
            {
                "phone_number": "911234567891",
                "phone_type": "verified",
                "status": "listed",
                "client_account_id": str(tenant.account_id),
                "created_by_email": await key_email(db),
                "department": "Logistics",
                "operation": "Delivery",
                "process": "Doorstep",
                "subprocess": "",
                "feature_set_name": "Main set",
                "call_me_back": "enabled",
                "created_at": added,
                "updated_at": updated,
                "label_name": "Acme Deliveries",
            }
        ],
        "pagination_information": {"total_page_count": 1},
    }
    await api.publish(tree.fs_sub, ["911234567892"])
    item = (await api.numbers()).json()["numbers"][0]
    assert (item["phone_number"], item["status"], item["subprocess"], item["call_me_back"]) == (
        "911234567892",
        "pending",
        "Night",
        "disabled",
    )


async def test_number_filters_order_and_pagination(
    api: Api, tree: Tree, tenant: Tenant, db: Database, runner: JobRunner, settings: Any
) -> None:
    other = await second_tree(db, tenant)
    clock.freeze(clock.now())
    await api.publish(tree.fs, ["911000000003", "911000000001"])
    await api.publish(tree.fs_sub, ["911000000002"])
    clock.advance(1)
    await api.publish(other.fs, ["911000000004"])
    await settle(runner)

    async def numbers(**params: Any) -> list[str]:
        response = await api.numbers(**params)
        assert response.status_code == 200, response.text
        return [item["phone_number"] for item in response.json()["numbers"]]

    # Newest first; same created_at ordered by number.
    assert await numbers() == ["911000000004", "911000000001", "911000000002", "911000000003"]
    assert await numbers(department_id=tree.department_id) == ["911000000001", "911000000002", "911000000003"]
    assert await numbers(operation_id=other.operation_id) == ["911000000004"]
    assert await numbers(process_id=tree.process_id) == ["911000000001", "911000000002", "911000000003"]
    assert await numbers(process_id=tree.sub_process_id) == ["911000000002"]
    assert await numbers(feature_set_id=tree.fs) == ["911000000001", "911000000003"]
    assert await numbers(feature_set_id=tree.fs, process_id=tree.sub_process_id) == []
    assert await numbers(feature_set_id=uuid.uuid4()) == []
    response = await api.numbers(feature_set_id="bad")
    assert (response.status_code, response.json()) == (
        400,
        {"slug": "invalid-input", "message": "feature_set_id is invalid"},
    )
    response = await api.numbers(limit=3)
    assert response.json()["pagination_information"] == {"total_page_count": 2}
    assert len(response.json()["numbers"]) == 3
    response = await api.numbers(limit=3, page=2)
    assert [n["phone_number"] for n in response.json()["numbers"]] == ["911000000003"]
    assert (await api.numbers(limit=3, page=3)).json() == {
        "numbers": [],
        "pagination_information": {"total_page_count": 2},
    }
    # Numbers of other accounts never show.
    stranger = await create_tenant(db, settings, name="Stranger")
    stranger_tree = await make_tree(db, stranger.account_id)
    async with db.transaction() as session:
        await service.list_numbers_into(
            session,
            settings,
            feature_set=await session.get(FeatureSet, stranger_tree.fs),
            raw_numbers=["911000000009"],
            created_by_email="x@example.com",
        )
    assert len(await numbers()) == 4
    assert await numbers(feature_set_id=stranger_tree.fs) == []


async def test_endpoints_are_documented(client: Any) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    base = "/clients/{clientAccountId}/number_management"
    fs_params = {p["name"] for p in paths[f"{base}/feature_sets"]["get"]["parameters"]}
    assert {"department_id", "operation_id", "process_id", "page", "limit"} <= fs_params
    nn_params = {p["name"] for p in paths[f"{base}/numbers"]["get"]["parameters"]}
    assert "feature_set_id" in nn_params
    for action in ("publish", "delist"):
        body = paths[f"{base}/feature_sets/{{featureSetId}}/numbers/{action}"]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"]["required"] == ["phone_numbers"]
