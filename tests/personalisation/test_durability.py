"""A B2 batch acknowledged with an id is never lost: SIGKILL the server between acknowledgement and
processing, start it again, and every record ends with an outcome (SPEC §5.3, DESIGN "durable work")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_postgresql_database
from tests.labels.images import image_bytes
from tests.personalisation.processes import Deployment

pytestmark = pytest.mark.slow

POLL_SECONDS = 60


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """A deployment on a new SQLite file or a new, empty PostgreSQL database (the CLI creates the schema)."""
    if request.param == "sqlite":
        yield Deployment(tmp_path)
        return
    with fresh_postgresql_database("callerid_durability") as url:
        yield Deployment(tmp_path, database_url=url)


def test_batch_survives_sigkill_between_acknowledgement_and_processing(deployment: Deployment, tmp_path: Path) -> None:
    account = deployment.cli_json("accounts", "create", "--name", "Acme Flowers", "--admin-email", "admin@acme.test")
    account_id = account["client_account_id"]
    key = deployment.cli_json("api-keys", "create", "--account", account_id, "--name", "batch")
    logo = tmp_path / "logo.png"
    logo.write_bytes(image_bytes())
    label = deployment.cli_json("labels", "create", "--account", account_id, "--name", "FlowerEra", "--logo", str(logo))

    now_ms = int(time.time() * 1000)  # the server's real clock: this test runs real processes
    records: list[dict[str, Any]] = [
        {
            "label_id": label["id"],
            "caller_number": "911234567890",
            "receiver_number": f"9198765{index:05d}",
            "dynamic_call_reason": "Flower Delivery",
            "starts_at": now_ms,
            "ends_at": now_ms + 3_600_000,
        }
        for index in range(200)
    ]
    records.append({**records[0], "dynamic_label_name": "ab"})  # invalid: its outcome is known at receipt

    # 1. The runner is off: the batch is acknowledged and stored, but nothing processes it.
    with deployment.serving(CALLERID_RUN_JOBS_IN_PROCESS="false") as server:
        base = deployment.base_url
        token = httpx.post(
            f"{base}/clients/{account_id}/token",
            json={"key_id": key["key_id"], "api_key": key["api_key"]},
            headers={"X-Public-Access": "allow"},
        ).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        # the label the CLI printed is exactly what L returns
        assert httpx.get(f"{base}/clients/{account_id}/labels", headers=auth).json() == [label]
        assert httpx.get(label["logo_url"]).content == image_bytes()

        response = httpx.post(
            f"{base}/v2/clients/{account_id}/dynamic_call_records", json={"call_records": records}, headers=auth
        )
        assert response.status_code == 200, response.text
        batch_id = response.json()["batch_id"]
        status_url = f"{base}/v2/clients/{account_id}/dynamic_call_records?batchId={batch_id}"
        data = httpx.get(status_url, headers=auth).json()["data"]
        assert [row["status_info"]["status"] for row in data] == ["pending"] * 200 + ["error"]
        server.kill()  # SIGKILL: no shutdown code runs
        server.wait()

    # 2. Started again with its runner: the stored batch is picked up and finished.
    with deployment.serving(CALLERID_RUN_JOBS_IN_PROCESS="true"):
        deadline = time.monotonic() + POLL_SECONDS
        while True:
            data = httpx.get(status_url, headers=auth).json()["data"]
            if all(row["status_info"]["status"] != "pending" for row in data) or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # polling another process's progress
    assert len(data) == 201
    assert [row["status_info"] for row in data[:200]] == [
        {"status": "error", "reason": "not_app_user", "message": "Not an app user"}
    ] * 200
    assert data[200]["status_info"] == {
        "status": "error",
        "reason": "invalid_input",
        "field": "dynamic_label_name",
        "message": "Request body is invalid: dynamic_label_name must be between 3 and 40 characters",
    }
