"""Display text in call records (callerid.display_text) over HTTP, on both databases: R2, B2/S2, R1, B1/S1.

The rule runs right after each field's length rule (SPEC §7.2 order); an invalid record's values are echoed by
S1/S2 exactly as sent, NUL included (stored in a ``json`` column, which PostgreSQL keeps verbatim).
"""

from __future__ import annotations

import httpx
import pytest

from callerid.db import Database
from callerid.jobs.runner import JobRunner
from callerid.labels.models import Label
from tests.conftest import Tenant
from tests.personalisation.conftest import record_v1, record_v2, s1, s2, stored_batches, stored_records

PREFIX = "Request body is invalid: "
CANNOT = "contains characters that cannot be displayed"
UNDISPLAYABLE = {
    "NUL": "\x00",
    "newline": "\n",
    "RLO": "\u202e",
    "LRI": "\u2066",
    "ZWSP": "\u200b",
    "BOM": "\ufeff",
    "private use": "\ue000",
}
# (label name, call reason) in scripts and emoji phones must keep showing.
DISPLAYABLE = [
    ("नमस्ते फूल", "आपका फूल ऑर्डर रास्ते में है"),
    ("مرحبا", "طلب الزهور في الطريق"),
    ("鲜花速递", "您的鲜花订单正在配送中"),
    ("🌸 Flowers", "Family pack 👨‍👩‍👧 is on the way"),
    ("❤️ Flowers", "Your 🏳️‍🌈 bouquet is ready"),
]


def _receiver(index: int) -> str:
    return f"9198765{index:05d}"


@pytest.mark.parametrize("char", UNDISPLAYABLE.values(), ids=UNDISPLAYABLE.keys())
@pytest.mark.parametrize(
    ("field", "value"),
    [("dynamic_label_name", "Flo{}wer"), ("dynamic_call_reason", "Flower {}Delivery")],
)
async def test_r2_refuses_undisplayable_text_naming_the_field(
    client: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
    field: str,
    value: str,
    char: str,
) -> None:
    sent = value.format(char)
    response = await client.post(
        f"/v2/clients/{tenant.account_id}/dynamic_call_record",
        json=record_v2(label, now_ms, **{field: sent}),
        headers=auth,
    )
    assert response.status_code == 400
    assert response.json() == {
        "status_info": {"status": "error", "field": field, "message": f"{PREFIX}{field} {CANNOT}"}
    }
    [stored] = await stored_records(db)
    assert (stored.status, stored.reason, stored.field, stored.message) == (
        "error",
        "invalid_input",
        field,
        f"{field} {CANNOT}",
    )
    assert stored.sent is not None
    assert stored.sent["label_name" if field == "dynamic_label_name" else "call_reason"] == sent  # exactly as sent


@pytest.mark.parametrize(("name", "reason"), DISPLAYABLE)
async def test_r2_keeps_scripts_and_emoji_exactly(
    client: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
    name: str,
    reason: str,
) -> None:
    body = record_v2(label, now_ms, dynamic_label_name=name, dynamic_call_reason=reason)
    response = await client.post(f"/v2/clients/{tenant.account_id}/dynamic_call_record", json=body, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["status_info"]["reason"] == "not_app_user"  # valid; the receiver has no app
    [stored] = await stored_records(db)
    assert (stored.label_name, stored.call_reason, stored.field) == (name, reason, None)


async def test_b2_one_undisplayable_record_does_not_fail_the_batch(
    client: httpx.AsyncClient,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
) -> None:
    records = [record_v2(label, now_ms, receiver_number=_receiver(i)) for i in range(3)]
    records[1]["dynamic_call_reason"] = "Flower\x00Delivery"
    records[2]["dynamic_label_name"], records[2]["dynamic_call_reason"] = DISPLAYABLE[3]
    response = await client.post(
        f"/v2/clients/{tenant.account_id}/dynamic_call_records", json={"call_records": records}, headers=auth
    )
    assert response.status_code == 200, response.text
    batch_id = response.json()["batch_id"]
    data = (await s2(client, tenant, auth, batch_id))["data"]
    assert [row["status_info"] for row in data] == [
        {"status": "pending"},
        {
            "status": "error",
            "reason": "invalid_input",
            "field": "dynamic_call_reason",
            "message": f"{PREFIX}dynamic_call_reason {CANNOT}",
        },
        {"status": "pending"},
    ]
    assert data[1]["dynamic_call_reason"] == "Flower\x00Delivery"  # echoed as sent
    assert (data[2]["dynamic_label_name"], data[2]["dynamic_call_reason"]) == DISPLAYABLE[3]
    assert await runner.run_until_idle() == 1
    data = (await s2(client, tenant, auth, batch_id))["data"]
    assert [row["status_info"].get("reason") for row in data] == ["not_app_user", "invalid_input", "not_app_user"]


@pytest.mark.parametrize("char", ["\x00", "\u202e"], ids=["NUL", "RLO"])
async def test_r1_refuses_undisplayable_text_with_the_v1_message(
    client: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
    char: str,
) -> None:
    body = record_v1(label, now_ms, label_name=f"Flo{char}wer")
    response = await client.post(f"/clients/{tenant.account_id}/dynamic_call_record", json=body, headers=auth)
    assert response.status_code == 400
    [batch] = await stored_batches(db)
    assert response.json() == {"status": "failure", "message": f"label_name {CANNOT}. BatchID: {batch.id}"}
    [row] = await s1(client, tenant, auth, str(batch.id))
    assert (row["status"], row["failure_reason"], row["label_name"]) == (
        "failure",
        f"label_name {CANNOT}",
        body["label_name"],
    )


async def test_b1_is_all_or_nothing_for_undisplayable_text(
    client: httpx.AsyncClient,
    db: Database,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
    label: Label,
    now_ms: int,
) -> None:
    records = [record_v1(label, now_ms, receiver=_receiver(i)) for i in range(3)]
    records[0]["label_name"], records[0]["call_reason"] = DISPLAYABLE[0]
    records[2]["call_reason"] = "Flower\u2066Delivery"
    response = await client.post(
        f"/clients/{tenant.account_id}/dynamic_call_records", json={"call_records": records}, headers=auth
    )
    assert response.status_code == 400
    [batch] = await stored_batches(db)  # still stored, so that its BatchID can be queried
    message = f"call_reason {CANNOT}"
    assert response.json() == {"status": "failure", "message": f"call_records[2]: {message}. BatchID: {batch.id}"}
    assert await runner.run_until_idle() == 0  # nothing delivered
    rows = await s1(client, tenant, auth, str(batch.id))
    rejected = f"batch rejected, call_records[2]: {message}"
    assert [(r["status"], r["failure_reason"]) for r in rows] == [
        ("failure", rejected),
        ("failure", rejected),
        ("failure", message),
    ]
    assert (rows[0]["label_name"], rows[0]["call_reason"]) == DISPLAYABLE[0]
    assert rows[2]["call_reason"] == "Flower\u2066Delivery"
