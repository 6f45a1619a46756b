"""NL - POST .../feature_sets/{featureSetId}/numbers/publish (SPEC §5.7, §7.3, §7.4)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, update

from callerid import clock
from callerid.accounts.models import ClientAccount
from callerid.db import Database
from callerid.jobs.models import Job
from callerid.jobs.runner import JobRunner
from callerid.numbers import service
from callerid.numbers.models import BusinessNumber, NumberJob
from tests.conftest import Tenant, create_tenant, mint
from tests.numbers.conftest import Api, Tree, make_tree, settle

NL_KEYS = [
    "client_account_id",
    "created_by_email",
    "phone_type",
    "new_numbers",
    "other_phonetype_numbers",
    "existing_numbers",
    "others_numbers",
    "invalid_numbers",
    "other_feature_set_numbers",
    "status",
    "migrated_numbers",
    "delisted_numbers",
    "updated_numbers",
    "processing_numbers",
]


def nl_body(tenant: Tenant, status: str, email: str = "", **buckets: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {key: [] for key in NL_KEYS}
    body.update(client_account_id=str(tenant.account_id), created_by_email=email, phone_type="verified", status=status)
    body.update(buckets)
    return body


async def key_email(db: Database) -> str:
    from callerid.accounts.models import ApiKey

    async with db.session() as session:
        return str(await session.scalar(select(ApiKey.created_by_email)))


async def rows(db: Database) -> dict[str, tuple[str, uuid.UUID | None]]:
    async with db.session() as session:
        found = await session.execute(
            select(BusinessNumber.phone_number, BusinessNumber.status, BusinessNumber.feature_set_id)
        )
        return {number: (status, fs) for number, status, fs in found.all()}


async def test_publish_new_numbers_answers_pending_then_lists(
    api: Api, tree: Tree, tenant: Tenant, db: Database, runner: JobRunner
) -> None:
    response = await api.publish(tree.fs, ["911234567891", "911234567892"])
    assert response.status_code == 200
    body = response.json()
    assert list(body) == NL_KEYS
    assert body == nl_body(tenant, "pending", await key_email(db), new_numbers=["911234567891", "911234567892"])
    assert await rows(db) == {"911234567891": ("pending", tree.fs), "911234567892": ("pending", tree.fs)}
    async with db.session() as session:
        jobs = (await session.scalars(select(NumberJob))).all()
        assert [(j.action, j.numbers, j.status) for j in jobs] == [
            ("list", ["911234567891", "911234567892"], "processing")
        ]
        assert await session.scalar(select(func.count()).select_from(Job).where(Job.kind == "numbers.process")) == 1
    await runner.run_until_idle()
    assert await rows(db) == {"911234567891": ("listed", tree.fs), "911234567892": ("listed", tree.fs)}
    async with db.session() as session:
        assert (await session.scalars(select(NumberJob.status))).all() == ["done"]


@pytest.mark.parametrize("settings_overrides", [{"number_job_delay_seconds": 2}], indirect=True)
async def test_job_waits_for_the_configured_delay(api: Api, tree: Tree, db: Database, runner: JobRunner) -> None:
    clock.freeze(clock.now())
    assert (await api.publish(tree.fs, ["911234567891"])).json()["status"] == "pending"
    await runner.run_until_idle()
    clock.advance(1.9)
    await runner.run_until_idle()
    assert await api.states() == {"911234567891": "pending"}
    clock.advance(0.2)
    await runner.run_until_idle()
    assert await api.states() == {"911234567891": "listed"}


async def test_invalid_numbers_are_echoed_as_sent_and_duplicates_collapse(
    api: Api, tree: Tree, tenant: Tenant, db: Database
) -> None:
    sent = ["+911234567891", "911234567891", " 911234567891 ", "12345", "abc", "0123456789", "12345", "+91 1234"]
    response = await api.publish(tree.fs, sent)
    assert response.status_code == 200
    assert response.json() == nl_body(
        tenant,
        "pending",
        await key_email(db),
        new_numbers=["911234567891"],
        invalid_numbers=["12345", "abc", "0123456789", "+91 1234"],
    )
    assert list(await rows(db)) == ["911234567891"]


async def test_only_invalid_numbers_fail_and_change_nothing(api: Api, tree: Tree, db: Database) -> None:
    response = await api.publish(tree.fs, ["12", "x"])
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert response.json()["invalid_numbers"] == ["12", "x"]
    assert await rows(db) == {}
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(NumberJob)) == 0


async def test_each_list_bucket(
    api: Api,
    tree: Tree,
    tenant: Tenant,
    db: Database,
    runner: JobRunner,
    client: Any,
    settings: Any,
) -> None:
    email = await key_email(db)
    # Another account holds one number.
    other = await create_tenant(db, settings, name="Other Co")
    other_tree = await make_tree(db, other.account_id)
    other_api = Api(client, other.account_id, {"Authorization": f"Bearer {await mint(client, other)}"})
    assert (await other_api.publish(other_tree.fs, ["919000000001"])).json()["new_numbers"] == ["919000000001"]
    # This account: one listed in F, one listed in the sub-process set, one delisted, one legacy (no feature
    # set), one of another phone type, one failed in F.
    await api.publish(tree.fs, ["919000000002", "919000000005"])
    await api.publish(tree.fs_sub, ["919000000003"])
    await settle(runner)
    await api.delist(tree.fs, ["919000000005"])
    await settle(runner)
    now = clock.now()
    async with db.transaction() as session:
        session.add_all(
            [
                BusinessNumber(
                    phone_number="919000000006",
                    account_id=tenant.account_id,
                    status="listed",
                    created_at=now,
                    updated_at=now,
                ),
                BusinessNumber(
                    phone_number="919000000007",
                    account_id=tenant.account_id,
                    phone_type="regular",
                    status="listed",
                    created_at=now,
                    updated_at=now,
                ),
                BusinessNumber(
                    phone_number="919000000008",
                    account_id=tenant.account_id,
                    feature_set_id=tree.fs,
                    status="failed",
                    failure_reason="earlier failure",
                    created_at=now,
                    updated_at=now,
                ),
            ]
        )
    # A number whose listing is still pending is "processing".
    await api.publish(tree.fs_sub, ["919000000009"])

    response = await api.publish(
        tree.fs,
        [
            "919000000001",
            "919000000002",
            "919000000003",
            "919000000005",
            "919000000006",
            "919000000007",
            "919000000008",
            "919000000009",
            "919000000010",
            "bad",
        ],
    )
    assert response.status_code == 200
    assert response.json() == nl_body(
        tenant,
        "pending",
        email,
        others_numbers=["919000000001"],
        existing_numbers=["919000000002"],
        other_feature_set_numbers=["919000000003"],
        delisted_numbers=["919000000005"],
        migrated_numbers=["919000000006"],
        other_phonetype_numbers=["919000000007"],
        updated_numbers=["919000000008"],
        processing_numbers=["919000000009"],
        new_numbers=["919000000010"],
        invalid_numbers=["bad"],
    )
    await settle(runner)
    state = await rows(db)
    assert state["919000000001"] == ("listed", other_tree.fs)
    assert state["919000000003"] == ("listed", tree.fs_sub)
    assert state["919000000007"] == ("listed", None)
    for number in ("919000000002", "919000000005", "919000000006", "919000000008", "919000000010"):
        assert state[number] == ("listed", tree.fs), number
    # The held request was re-run after the sub-process listing finished: now in another feature set.
    assert state["919000000009"] == ("listed", tree.fs_sub)


@pytest.mark.parametrize(
    "settings_overrides",
    [{"number_job_delay_seconds": 0, "number_verifier": "tests.numbers.verifiers:fail_ending_in_9"}],
    indirect=True,
)
async def test_failed_listing_keeps_reason_and_republish_updates(
    api: Api, tree: Tree, db: Database, runner: JobRunner
) -> None:
    await api.publish(tree.fs, ["911234567899", "911234567891"])
    await runner.run_until_idle()
    body = (await api.numbers()).json()["numbers"]
    by_number = {item["phone_number"]: item for item in body}
    assert by_number["911234567899"]["status"] == "failed"
    assert by_number["911234567899"]["failure_reason"] == "list rejected by verification"
    assert by_number["911234567891"]["status"] == "listed"
    assert "failure_reason" not in by_number["911234567891"]
    response = await api.publish(tree.fs, ["911234567899"])
    assert response.json()["updated_numbers"] == ["911234567899"]
    assert response.json()["status"] == "pending"
    assert await api.states() == {"911234567899": "pending", "911234567891": "listed"}


# --- request validation and limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "phone_numbers is required"),
        ({"phone_numbers": None}, "phone_numbers is required"),
        ({"phone_numbers": []}, "phone_numbers must contain between 1 and 10000 numbers"),
        ({"phone_numbers": "911234567891"}, "phone_numbers must contain between 1 and 10000 numbers"),
        ({"phone_numbers": [911234567891]}, "phone_numbers must contain between 1 and 10000 numbers"),
        ({"phone_numbers": ["911234567891", None]}, "phone_numbers must contain between 1 and 10000 numbers"),
    ],
)
@pytest.mark.parametrize("action", ["publish", "delist"])
async def test_body_errors(api: Api, tree: Tree, db: Database, body: dict[str, Any], message: str, action: str) -> None:
    response = await api.client.post(f"{api.base}/feature_sets/{tree.fs}/numbers/{action}", json=body, headers=api.auth)
    assert response.status_code == 400
    assert response.json() == {"slug": "invalid-input", "message": message}
    assert await rows(db) == {}


@pytest.mark.parametrize("action", ["publish", "delist"])
async def test_invalid_json_and_ids(api: Api, tree: Tree, tenant: Tenant, action: str, db: Database) -> None:
    url = f"{api.base}/feature_sets/{tree.fs}/numbers/{action}"
    response = await api.client.post(url, content=b"{not json", headers=api.auth)
    assert (response.status_code, response.json()) == (
        400,
        {"slug": "invalid-input", "message": "Request body is invalid"},
    )
    response = await api.client.post(
        f"{api.base}/feature_sets/not-a-uuid/numbers/{action}",
        json={"phone_numbers": ["911234567891"]},
        headers=api.auth,
    )
    assert (response.status_code, response.json()) == (
        400,
        {"slug": "invalid-input", "message": "featureSetId is invalid"},
    )
    not_found = {"slug": "not-found", "message": "feature set not found"}
    response = await getattr(api, action)(uuid.uuid4(), ["911234567891"])
    assert (response.status_code, response.json()) == (404, not_found)
    other = await make_tree(db, (await create_tenant(db, api_settings(api))).account_id)
    response = await getattr(api, action)(other.fs, ["911234567891"])
    assert (response.status_code, response.json()) == (404, not_found)
    # Ids are accepted in any case.
    response = await getattr(api, action)(str(tree.fs).upper(), ["911234567891"])
    assert response.status_code == 200
    _ = tenant


def api_settings(api: Api) -> Any:
    return api.client._transport.app.state.runtime.settings  # type: ignore[attr-defined]


async def test_exactly_10000_numbers_accepted_10001_rejected(api: Api, tree: Tree, db: Database) -> None:
    numbers = [f"91{7000000000 + i}" for i in range(10_001)]
    response = await api.publish(tree.fs, numbers)
    assert response.status_code == 400
    assert response.json()["message"] == "phone_numbers must contain between 1 and 10000 numbers"
    response = await api.publish(tree.fs, numbers[:10_000])
    assert response.status_code == 200
    assert len(response.json()["new_numbers"]) == 10_000
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(BusinessNumber)) == 10_000


async def test_feature_set_cap_counts_existing_numbers(api: Api, tree: Tree, db: Database, runner: JobRunner) -> None:
    numbers = [f"91{7000000000 + i}" for i in range(10_001)]
    assert (await api.publish(tree.fs, numbers[:9_999])).status_code == 200
    await settle(runner)
    response = await api.publish(tree.fs, numbers[9_999:])  # 2 more would make 10,001
    assert (response.status_code, response.json()) == (
        400,
        {"slug": "invalid-input", "message": "feature set number limit exceeded"},
    )
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(BusinessNumber)) == 9_999
    # Already listed numbers do not count twice; one more fits exactly.
    response = await api.publish(tree.fs, [numbers[0], numbers[9_999]])
    assert response.status_code == 200
    assert response.json()["existing_numbers"] == [numbers[0]]
    assert response.json()["new_numbers"] == [numbers[9_999]]
    # Another feature set of the account has its own cap.
    assert (await api.publish(tree.fs_sub, [numbers[10_000]])).status_code == 200


@pytest.mark.parametrize(
    "settings_overrides", [{"number_job_delay_seconds": 0, "account_number_cap": 3}], indirect=True
)
async def test_account_cap_rejects_whole_request(
    api: Api, tree: Tree, tenant: Tenant, db: Database, runner: JobRunner
) -> None:
    assert (await api.publish(tree.fs, ["911000000001", "911000000002"])).status_code == 200
    response = await api.publish(tree.fs_sub, ["911000000003", "911000000004"])
    assert (response.status_code, response.json()) == (
        400,
        {"slug": "invalid-input", "message": "client account number limit exceeded"},
    )
    assert set(await rows(db)) == {"911000000001", "911000000002"}
    assert (await api.publish(tree.fs_sub, ["911000000003"])).status_code == 200
    # Delisted numbers free their place.
    await settle(runner)
    await api.delist(tree.fs, ["911000000001"])
    await settle(runner)
    assert (await api.publish(tree.fs_sub, ["911000000004"])).status_code == 200
    # The account's own cap overrides the setting.
    async with db.transaction() as session:
        await session.execute(update(ClientAccount).where(ClientAccount.id == tenant.account_id).values(number_cap=5))
    assert (await api.publish(tree.fs_sub, ["911000000005"])).status_code == 200
    assert (await api.publish(tree.fs_sub, ["911000000006", "911000000007"])).json()["message"] == (
        "client account number limit exceeded"
    )


async def test_archived_feature_set_rejects_listing_but_allows_delisting(
    api: Api, tree: Tree, tenant: Tenant, db: Database, runner: JobRunner
) -> None:
    await api.publish(tree.fs, ["911234567891"])
    await settle(runner)
    async with db.transaction() as session:
        await service.set_feature_set_status(
            session, account_id=tenant.account_id, feature_set_id=tree.fs, status="archived"
        )
    response = await api.publish(tree.fs, ["911234567892"])
    assert (response.status_code, response.json()) == (
        400,
        {"slug": "invalid-input", "message": "feature set is archived"},
    )
    response = await api.delist(tree.fs, ["911234567891"])
    assert response.json()["existing_numbers"] == ["911234567891"]


async def test_write_access_needed(client: Any, db: Database, settings: Any, tree: Tree) -> None:
    reader = await create_tenant(db, settings, access={"number_management": "read"})
    reader_tree = await make_tree(db, reader.account_id)
    headers = {"Authorization": f"Bearer {await mint(client, reader)}"}
    reader_api = Api(client, reader.account_id, headers)
    forbidden = {"slug": "forbidden-error", "message": "not authorized. please contact your admin."}
    for call in (reader_api.publish, reader_api.delist):
        response = await call(reader_tree.fs, ["911234567891"])
        assert (response.status_code, response.json()) == (403, forbidden)
    assert (await reader_api.numbers()).status_code == 200
    assert (await reader_api.feature_sets()).status_code == 200
    none = await create_tenant(db, settings, access={"number_management": "none"})
    none_api = Api(client, none.account_id, {"Authorization": f"Bearer {await mint(client, none)}"})
    for response in (await none_api.numbers(), await none_api.feature_sets()):
        assert (response.status_code, response.json()) == (403, forbidden)
