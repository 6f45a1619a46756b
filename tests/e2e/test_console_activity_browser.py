"""Call activity in headless Chromium against a real ``callerid serve``: a business sends a batch through the API
(with an API key made by the CLI), and its admin finds it in the console, opens a record, searches a receiver's
number and downloads the search as CSV. Screenshots at 360x800 and 1280x800 go to
``test-artifacts/console-activity-*.png``.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.serving import SKIP_REASON, Server
from tests.e2e.test_console_browser import DESKTOP, open_page, screenshots, wait_for
from tests.e2e.test_phone_browser import logo_png

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]
CALLER = "911234567890"
IOS_PHONE = "919811100001"  # has the app, on iOS: "OS not supported"
NO_APP = "919811100002"  # never installed the app: "Not an app user"


@pytest.fixture(scope="module")
def account(console_server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An account, its API key and a dynamic label, all made with the CLI."""
    created = console_server.cli("accounts", "create", "--name", "Parcel Express", "--admin-email", "ops@parcels.test")
    account_id = created["client_account_id"]
    key = console_server.cli("api-keys", "create", "--account", account_id, "--name", "dispatch")
    logo = tmp_path_factory.mktemp("activity") / "logo.png"
    logo.write_bytes(logo_png())
    label = console_server.cli(
        "labels", "create", "--account", account_id, "--name", "Parcel Express", "--logo", str(logo)
    )
    return {**created, "key": key, "label_id": label["id"]}


def send_batch(server: Server, account: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """What the business's system does: mint a token and send a B2 batch; the batch id and the token's header."""
    account_id = account["client_account_id"]
    with httpx.Client(base_url=server.base) as http:
        # A phone with the app (iOS) among the receivers, registered as the app does (the demo code: no SMS here).
        started = http.post(
            "/app/v1/devices", json={"phone_number": IOS_PHONE, "platform": "ios", "app_version": "2.0.0"}
        )
        assert started.status_code == 202, started.text
        answer = started.json()
        verified = http.post(
            "/app/v1/devices/verify", json={"registration_id": answer["registration_id"], "code": answer["demo_code"]}
        )
        assert verified.status_code == 201, verified.text
        minted = http.post(
            f"/clients/{account_id}/token",
            json={"key_id": account["key"]["key_id"], "api_key": account["key"]["api_key"]},
            headers={"X-Public-Access": "allow"},
        )
        assert minted.status_code == 200, minted.text
        auth = {"Authorization": f"Bearer {minted.json()['token']}"}
        now_ms = int(time.time() * 1000)
        record = {
            "label_id": account["label_id"],
            "dynamic_label_name": "Parcel Express",
            "dynamic_call_reason": "Your parcel is at the door",
            "caller_number": CALLER,
            "starts_at": now_ms,
            "ends_at": now_ms + 3_600_000,
        }
        sent = http.post(
            f"/v2/clients/{account_id}/dynamic_call_records",
            json={
                "call_records": [
                    {**record, "receiver_number": f"+{IOS_PHONE}"},
                    {**record, "receiver_number": NO_APP},
                    {**record, "receiver_number": NO_APP, "ends_at": 1},  # refused: its window is over
                ]
            },
            headers=auth,
        )
        assert sent.status_code == 200, sent.text
        batch_id: str = sent.json()["batch_id"]
    return batch_id, auth


def delivered(server: Server, account_id: str, auth: dict[str, str], batch_id: str) -> bool:
    """S2: no record of the batch is pending any more."""
    path = f"/v2/clients/{account_id}/dynamic_call_records"
    status = httpx.get(server.base + path, params={"batchId": batch_id}, headers=auth)
    return all(item["status_info"]["status"] != "pending" for item in status.json()["data"])


async def test_admin_finds_a_batch_a_record_and_a_receiver(
    chromium: Any, console_server: Server, account: dict[str, Any], tmp_path: Path
) -> None:
    server = console_server
    batch_id, auth = send_batch(server, account)
    context, page, problems = await open_page(chromium, DESKTOP)
    await page.goto(server.base + "/console/sign-in")
    await page.get_by_label("Email").fill(account["admin_email"])
    await page.get_by_label("Password").fill(account["admin_password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Parcel Express").wait_for()

    # Call activity: the overview, then the batches (the batch is delivered by the server's own job runner).
    await wait_for(lambda: delivered(server, account["client_account_id"], auth, batch_id), "the batch to be delivered")
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Call activity").click()
    await page.get_by_role("heading", name="Call activity", exact=True).wait_for()
    await screenshots(page, "activity-overview")
    await page.get_by_role("link", name="See batches").click()
    await page.get_by_role("heading", name="Batches", exact=True).wait_for()
    assert batch_id in await page.locator("main").inner_text()
    assert "1 os not supported" in await page.locator("main").inner_text()
    await screenshots(page, "activity-batches")

    # The batch: its three records in the order sent, each with its outcome and why.
    await page.locator(f'a[href="/console/activity/batches/{batch_id}"]').first.click()
    await page.get_by_role("heading", name="Batch of 3 records").wait_for()
    table = page.get_by_role("table", name="Records of the batch, in the order they were sent")
    rows = table.get_by_role("row")
    assert await rows.count() == 4
    assert "OS not supported" in await rows.nth(1).inner_text()
    assert "Not an app user" in await rows.nth(2).inner_text()
    assert "ends_at cannot be older than current time" in await rows.nth(3).inner_text()
    await screenshots(page, "activity-batch")

    # A record: everything it says, and the way to the receiver's other records.
    await rows.nth(1).get_by_role("link").click()
    await page.get_by_role("heading", name=f"Call record to {IOS_PHONE}").wait_for()
    assert batch_id in await page.locator("main").inner_text()
    await screenshots(page, "activity-record")

    # Search the other receiver's number, typed as people type it.
    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Call activity").click()
    await page.get_by_label("Receiver or caller number").fill(f"+{NO_APP}")
    await page.get_by_role("button", name="Search records").click()
    await page.get_by_text("1 record", exact=True).wait_for()
    found = page.get_by_role("table", name="Records found")
    assert "Not an app user" in await found.inner_text() and NO_APP in await found.inner_text()
    await screenshots(page, "activity-search")
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download CSV").click()
    download = await download_info.value
    saved = tmp_path / "records.csv"
    await download.save_as(saved)
    rows_csv = list(csv.reader(io.StringIO(saved.read_text())))
    assert rows_csv[0][:5] == ["created_at", "batch_id", "record_id", "caller", "receiver"]
    assert [(row[1], row[4], row[10]) for row in rows_csv[1:]] == [(batch_id, NO_APP, "not_app_user")]

    # Call Me Back and survey answers: none yet, and what they are.
    await page.get_by_role("navigation", name="Call activity").get_by_role("link", name="Call Me Back").click()
    await page.get_by_role("heading", name="No Call Me Back requests in these dates").wait_for()
    await screenshots(page, "activity-call-me-back-empty")
    assert problems == []
    await context.close()
