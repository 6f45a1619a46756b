"""ND - POST .../feature_sets/{featureSetId}/numbers/delist (SPEC §5.8, §7.4, §7.5)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from callerid import clock
from callerid.db import Database
from callerid.jobs.runner import JobRunner
from callerid.numbers.models import BusinessNumber
from tests.conftest import Tenant, create_tenant, mint
from tests.numbers.conftest import Api, Tree, make_tree, settle

ND_KEYS = [
    "client_account_id",
    "phone_type",
    "processing_numbers",
    "new_numbers",
    "other_phonetype_numbers",
    "existing_numbers",
    "others_numbers",
    "invalid_numbers",
    "other_feature_set_numbers",
    "status",
]


def nd_body(tenant: Tenant, status: str, **buckets: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {key: [] for key in ND_KEYS}
    body.update(client_account_id=str(tenant.account_id), phone_type="", status=status)
    body.update(buckets)
    return body


async def test_delist_listed_number(api: Api, tree: Tree, tenant: Tenant, runner: JobRunner) -> None:
    await api.publish(tree.fs, ["911234567891", "911234567892"])
    await settle(runner)
    clock.advance(5)
    response = await api.delist(tree.fs, ["911234567891"])
    assert response.status_code == 200
    assert list(response.json()) == ND_KEYS
    assert response.json() == nd_body(tenant, "pending", existing_numbers=["911234567891"])
    assert await api.states() == {"911234567891": "delisting", "911234567892": "listed"}
    await settle(runner)
    # Delisted numbers leave NN.
    assert await api.states() == {"911234567892": "listed"}


async def test_nothing_to_delist_fails(api: Api, tree: Tree, tenant: Tenant, db: Database) -> None:
    response = await api.delist(tree.fs, ["911234567891"])
    assert response.status_code == 200
    assert response.json() == nd_body(tenant, "failed", new_numbers=["911234567891"])
    async with db.session() as session:
        assert (await session.scalars(select(BusinessNumber))).all() == []


async def test_each_delist_bucket(
    api: Api, tree: Tree, tenant: Tenant, db: Database, runner: JobRunner, client: Any, settings: Any
) -> None:
    other = await create_tenant(db, settings, name="Other Co")
    other_tree = await make_tree(db, other.account_id)
    other_api = Api(client, other.account_id, {"Authorization": f"Bearer {await mint(client, other)}"})
    await other_api.publish(other_tree.fs, ["919000000001"])
    await api.publish(tree.fs, ["919000000002", "919000000005"])
    await api.publish(tree.fs_sub, ["919000000003"])
    await settle(runner)
    await api.delist(tree.fs, ["919000000005"])
    await settle(runner)
    now = clock.now()
    async with db.transaction() as session:
        session.add(
            BusinessNumber(
                phone_number="919000000007",
                account_id=tenant.account_id,
                phone_type="regular",
                status="listed",
                created_at=now,
                updated_at=now,
            )
        )
    await api.publish(tree.fs, ["919000000009"])  # pending: processing
    response = await api.delist(
        tree.fs,
        [
            "919000000001",
            "919000000002",
            "+919000000002",
            "919000000003",
            "919000000005",
            "919000000007",
            "919000000009",
            "919000000010",
            "12",
        ],
    )
    assert response.json() == nd_body(
        tenant,
        "pending",
        others_numbers=["919000000001"],
        existing_numbers=["919000000002"],
        other_feature_set_numbers=["919000000003"],
        new_numbers=["919000000005", "919000000010"],
        other_phonetype_numbers=["919000000007"],
        processing_numbers=["919000000009"],
        invalid_numbers=["12"],
    )
    await settle(runner)
    async with db.session() as session:
        found = dict((await session.execute(select(BusinessNumber.phone_number, BusinessNumber.status))).all())
    assert found["919000000001"] == "listed"  # the other account's number is untouched
    assert found["919000000002"] == "delisted"
    assert found["919000000003"] == "listed"
    # The delist held behind the listing ran once the listing finished.
    assert found["919000000009"] == "delisted"


@pytest.mark.parametrize(
    "settings_overrides", [{"number_verifier": "tests.numbers.verifiers:fail_ending_in_9"}], indirect=True
)
async def test_failed_delisting_restores_listed(
    api: Api, tree: Tree, tenant: Tenant, db: Database, runner: JobRunner
) -> None:
    now = clock.now()
    async with db.transaction() as session:
        session.add(
            BusinessNumber(
                phone_number="911234567899",
                account_id=tenant.account_id,
                feature_set_id=tree.fs,
                status="listed",
                created_at=now,
                updated_at=now,
            )
        )
    assert (await api.delist(tree.fs, ["911234567899"])).json()["status"] == "pending"
    assert await api.states() == {"911234567899": "delisting"}
    await settle(runner)
    assert await api.states() == {"911234567899": "listed"}


@pytest.mark.parametrize(
    "settings_overrides", [{"number_verifier": "tests.numbers.verifiers:fail_ending_in_9"}], indirect=True
)
async def test_delisting_a_failed_number_removes_it(api: Api, tree: Tree, tenant: Tenant, runner: JobRunner) -> None:
    await api.publish(tree.fs, ["911234567899"])
    await settle(runner)
    assert await api.states() == {"911234567899": "failed"}
    response = await api.delist(tree.fs, ["911234567899"])
    assert response.json() == nd_body(tenant, "failed", new_numbers=["911234567899"])
    assert await api.states() == {}
    # Listing it again counts it as previously delisted.
    assert (await api.publish(tree.fs, ["911234567899"])).json()["delisted_numbers"] == ["911234567899"]
