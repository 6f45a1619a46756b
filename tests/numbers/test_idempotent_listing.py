"""NL and ND with an ``Idempotency-Key`` (extension): the first answer again; the numbers listed or delisted once."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from callerid.db import Database
from callerid.jobs.runner import JobRunner
from callerid.numbers.models import NumberJob
from tests.numbers.conftest import Api, Tree, settle


async def number_jobs(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(NumberJob)) or 0)


async def test_publish_and_delist_replay_their_answers_and_start_one_job_each(
    api: Api, tree: Tree, client: httpx.AsyncClient, db: Database, runner: JobRunner
) -> None:
    path = f"{api.base}/feature_sets/{tree.fs}/numbers"
    body = {"phone_numbers": ["911234567891", "911234567892", "12"]}
    headers = {**api.auth, "Idempotency-Key": "publish-1"}
    first = await client.post(f"{path}/publish", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["new_numbers"] == ["911234567891", "911234567892"]
    again = await client.post(f"{path}/publish", json=body, headers=headers)
    assert (again.status_code, again.json()) == (200, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    assert await number_jobs(db) == 1
    await settle(runner)
    assert await api.states() == {"911234567891": "listed", "911234567892": "listed"}
    # The same key for the delist is another request: refused, nothing delisted.
    reused = await client.post(f"{path}/delist", json=body, headers=headers)
    assert reused.status_code == 422 and reused.json()["slug"] == "idempotency-key-reused"
    delist_headers = {**api.auth, "Idempotency-Key": "delist-1"}
    delisted = await client.post(f"{path}/delist", json=body, headers=delist_headers)
    assert delisted.status_code == 200
    replayed = await client.post(f"{path}/delist", json=body, headers=delist_headers)
    assert replayed.json() == delisted.json()
    await settle(runner)
    assert await number_jobs(db) == 2
    assert await api.states() == {}
