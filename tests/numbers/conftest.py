"""Fixtures of the number-management tests: an organisation tree with feature sets, and request helpers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from callerid import clock
from callerid.db import Database
from callerid.jobs.runner import JobRunner
from callerid.labels.models import Label
from callerid.numbers import service
from tests.conftest import Tenant


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    # Jobs due at once unless a test asks otherwise (indirect parametrisation adds to this).
    return {"number_job_delay_seconds": 0, **getattr(request, "param", {})}


@dataclass
class Tree:
    account_id: uuid.UUID
    department_id: uuid.UUID
    operation_id: uuid.UUID
    process_id: uuid.UUID
    sub_process_id: uuid.UUID
    label_id: uuid.UUID
    fs: uuid.UUID  # on the process, with call reason and call me back
    fs_sub: uuid.UUID  # on the sub-process


async def make_label(db: Database, account_id: uuid.UUID, name: str = "Acme Deliveries") -> uuid.UUID:
    label_id = uuid.uuid4()
    async with db.transaction() as session:
        session.add(
            Label(
                id=label_id,
                account_id=account_id,
                name=name,
                label_type="static",
                logo_key=None,  # no logo (a logo is a label_logos row: labels.service.create_label)
                created_by_email="admin@example.com",
                created_at=clock.now(),
            )
        )
    return label_id


async def make_tree(db: Database, account_id: uuid.UUID, *, prefix: str = "") -> Tree:
    label_id = await make_label(db, account_id)
    async with db.transaction() as session:
        department = await service.create_department(session, account_id=account_id, name=f"{prefix}Logistics")
        operation, _ = await service.create_operation(
            session,
            account_id=account_id,
            department_id=department.id,
            name=f"{prefix}Last mile",
            calling_operation_name="Delivery",
        )
        process = await service.create_process(
            session, account_id=account_id, operation_id=operation.id, name=f"{prefix}Doorstep"
        )
        sub = await service.create_process(
            session, account_id=account_id, operation_id=operation.id, name=f"{prefix}Night", parent_id=process.id
        )
        fs = await service.create_feature_set(
            session,
            account_id=account_id,
            process_id=process.id,
            label_id=label_id,
            name=f"{prefix}Main set",
            call_reason="Your parcel is on its way",
            call_me_back=True,
        )
        fs_sub = await service.create_feature_set(
            session, account_id=account_id, process_id=sub.id, label_id=label_id, name=f"{prefix}Night set"
        )
    return Tree(account_id, department.id, operation.id, process.id, sub.id, label_id, fs.id, fs_sub.id)


@pytest.fixture
async def tree(db: Database, tenant: Tenant) -> Tree:
    return await make_tree(db, tenant.account_id)


class Api:
    """NL/ND/NN/FS calls of one tenant."""

    def __init__(self, client: httpx.AsyncClient, account_id: uuid.UUID, auth: dict[str, str]):
        self.client = client
        self.base = f"/clients/{account_id}/number_management"
        self.auth = auth

    async def publish(self, feature_set_id: uuid.UUID | str, numbers: Any) -> httpx.Response:
        return await self.client.post(
            f"{self.base}/feature_sets/{feature_set_id}/numbers/publish",
            json={"phone_numbers": numbers},
            headers=self.auth,
        )

    async def delist(self, feature_set_id: uuid.UUID | str, numbers: Any) -> httpx.Response:
        return await self.client.post(
            f"{self.base}/feature_sets/{feature_set_id}/numbers/delist",
            json={"phone_numbers": numbers},
            headers=self.auth,
        )

    async def numbers(self, **params: Any) -> httpx.Response:
        return await self.client.get(f"{self.base}/numbers", params=params, headers=self.auth)

    async def feature_sets(self, **params: Any) -> httpx.Response:
        return await self.client.get(f"{self.base}/feature_sets", params=params, headers=self.auth)

    async def states(self) -> dict[str, str]:
        """number -> status as NN shows them (first 1000)."""
        response = await self.numbers(limit=1000)
        assert response.status_code == 200, response.text
        return {item["phone_number"]: item["status"] for item in response.json()["numbers"]}


@pytest.fixture
def api(client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str]) -> Api:
    return Api(client, tenant.account_id, auth)


async def settle(runner: JobRunner) -> None:
    """Run every due job, moving the clock past any job delay."""
    clock.advance(60)
    await runner.run_until_idle()
