"""The client against a real ``callerid serve`` (see conftest.py): every endpoint, the helpers, and the server's
rule messages matching the client's local checks."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from callerid_client import (
    AsyncClient,
    Client,
    NotFoundError,
    NothingFoundError,
    RecordValidationError,
    TokenStore,
    V1FailureError,
    check_record,
)

from conftest import ANDROID, IOS, OLD_APP, UNREACHABLE, Served


def client(served: Served, tokens: TokenStore, **options: Any) -> Client:
    return Client(*served.client_args(), tokens=tokens, **options)


def record(served: Served, receiver: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "label_id": served.label_id,
        "caller_number": "911234567890",
        "receiver_number": receiver,
        "dynamic_call_reason": "Your flower delivery",
        "starts_at": now,
        "ends_at": now + 3_600_000,
        **changes,
    }


def test_every_v2_and_v1_endpoint(served: Served, tokens: TokenStore) -> None:
    with client(served, tokens) as api:
        labels = api.list_labels()
        assert served.label_id in [label.id for label in labels]
        assert [label.id for label in api.iter_labels(limit=1)] == [label.id for label in labels]

        delivered = api.personalise(record(served, ANDROID[0]))
        assert delivered.delivered and delivered.status_info.message == "Record processed successfully"
        not_user = api.personalise(record(served, "919999999999"))
        assert not not_user.delivered and not_user.status_info.reason == "not_app_user"
        with pytest.raises(RecordValidationError) as invalid:
            api.personalise(record(served, ANDROID[0], ends_at=1))
        assert invalid.value.field == "ends_at" and invalid.value.status == 400

        batch = api.personalise_batch([record(served, ANDROID[1]), record(served, IOS[0])])
        status = api.batch_status(batch.batch_id)
        assert status.batch_id == batch.batch_id and len(status.data) == 2

        v1 = api.personalise_v1(
            {"caller": "911234567890", "receiver": ANDROID[2], "label_id": served.label_id,
             "starts_at": record(served, "")["starts_at"], "ends_at": record(served, "")["ends_at"]}
        )  # fmt: skip
        assert v1.status == "success" and v1.batch_id is not None
        assert api.batch_status_v1(v1.batch_id)[0].receiver == ANDROID[2]
        with pytest.raises(V1FailureError) as failure:
            api.personalise_batch_v1([{"caller": "1", "receiver": ANDROID[2], "label_id": served.label_id}])
        assert failure.value.batch_id is not None and "caller is invalid" in failure.value.message

        page = api.list_feature_sets(process_id=served.extra["process_id"])
        assert [fs.id for fs in page.feature_sets] == [served.feature_set_id]
        assert page.pagination_info.total_page_count == 1
        assert [fs.id for fs in api.iter_feature_sets(department_id=served.extra["department_id"])] == [
            served.feature_set_id
        ]
        with pytest.raises(NotFoundError):
            api.publish(str(uuid.uuid4()), ["911234567891"])

        with pytest.raises(NothingFoundError):
            api.cmb_export(0, 1)
        with pytest.raises(NotFoundError) as unknown:
            api.feedback_export(str(uuid.uuid4()), "2025-01-01")
        assert unknown.value.slug == "not-found"


async def test_the_async_client_and_a_download(served: Served, tokens: TokenStore) -> None:
    async with AsyncClient(*served.client_args(), tokens=tokens) as api:
        labels = [label async for label in api.iter_labels()]
        assert labels
        results = await _gather(api, [record(served, number) for number in ANDROID[:5]])
        assert all(result.delivered for result in results)
        # a CMB request from a phone, then its export
        http = httpx.AsyncClient(base_url=served.base)
        phone = (
            await http.post(
                "/app/v1/devices",
                json={"phone_number": "917300000000", "platform": "android", "app_version": "99.0.0"},
            )
        ).json()
        number = "918000000001"
        outcome = await api.publish_numbers(served.feature_set_id, [number], poll_interval=0.2, timeout=30)
        assert outcome.states == {number: "listed"}
        made = await http.post(
            "/app/v1/call-me-back",
            json={"business_number": number, "is_interested": True},
            headers={"Authorization": f"Bearer {phone['device_token']}"},
        )
        assert made.status_code == 201, made.text
        await http.aclose()
        now = int(time.time() * 1000)
        link = await api.cmb_export(now - 60_000, now + 60_000)
        text = await api.download(link.url)
        assert text.splitlines()[0].startswith("business_number,feature_set,client_number")
        assert number in text


async def _gather(api: AsyncClient, records: list[dict[str, Any]]) -> list[Any]:
    import asyncio

    return list(await asyncio.gather(*(api.personalise(item) for item in records)))


def test_personalise_many_reports_every_outcome(served: Served, tokens: TokenStore) -> None:
    receivers = [*ANDROID, *UNREACHABLE, *IOS, *OLD_APP]
    records = [record(served, receivers[i % len(receivers)]) for i in range(1100)]
    records += [record(served, f"91950000{i:04d}") for i in range(100)]  # not app users
    records.append(record(served, ANDROID[0], dynamic_call_reason="Call #1"))  # invalid
    seen: list[int] = []
    with client(served, tokens) as api:
        result = api.personalise_many(
            records, on_invalid="skip", poll_interval=0.2, timeout=120, on_progress=lambda p: seen.append(p.finished)
        )
    counts = result.counts()
    assert result.finished and len(result.batch_ids) == 3
    assert counts == {
        "success": sum(1 for i in range(1100) if receivers[i % len(receivers)] in ANDROID),
        "os_not_supported": sum(1 for i in range(1100) if receivers[i % len(receivers)] in IOS),
        "failed_to_push": sum(1 for i in range(1100) if receivers[i % len(receivers)] in UNREACHABLE),
        "app_version_not_supported": sum(1 for i in range(1100) if receivers[i % len(receivers)] in OLD_APP),
        "not_app_user": 100,
        "invalid_input": 1,
    }
    assert result.outcomes[-1].local and result.outcomes[-1].field == "dynamic_call_reason"
    assert all(outcome.record_id for outcome in result.outcomes[:-1])
    assert seen[-1] == len(records)


BROKEN = [
    {"caller_number": ""},
    {"caller_number": "12345"},
    {"receiver_number": 919876543210},
    {"label_id": "not-a-uuid"},
    {"label_id": "255297eb-7f13-44f9-967a-f287ff0f5025"},
    {"dynamic_label_name": "ab"},
    {"dynamic_label_name": "Acme\u200bFlowers"},
    {"dynamic_call_reason": "short"},
    {"dynamic_call_reason": "Delivery (today)"},
    {"dynamic_call_reason": " Delivery today"},
    {"dynamic_call_reason": "Delivery today."},
    {"starts_at": -1},
    {"starts_at": "1753246858000"},
    {"ends_at": 1},
    {"ends_at": True},
]


def test_local_checks_say_what_the_server_says(served: Served, tokens: TokenStore) -> None:
    now = int(time.time() * 1000)
    records = [record(served, ANDROID[0], **change) for change in BROKEN]
    records.append(record(served, ANDROID[0], starts_at=now, ends_at=now - 1 + 3_600_000 * 30))
    records.append(record(served, ANDROID[0], starts_at=now + 3_600_000, ends_at=now + 60_000))
    records.append({**record(served, ANDROID[0]), "caller": "911234567890", "caller_number": None})  # v1 alias
    with client(served, tokens) as api:
        labels = {label.id for label in api.iter_labels()}
        result = api.personalise_many(records, on_invalid="send", poll_interval=0.2, timeout=60)
    for item, outcome in zip(records, result.outcomes, strict=True):
        local = check_record(item, labels=labels)
        if outcome.status == "error" and outcome.reason == "invalid_input":
            assert local is not None, (item, outcome)
            assert (local.field, local.v2_message()) == (outcome.field, outcome.message), item
        else:
            assert local is None, (item, outcome)


def test_publish_and_delist_wait_for_final_states(served: Served, tokens: TokenStore) -> None:
    numbers = [f"9181000{i:05d}" for i in range(30)]
    progress: list[tuple[int, int]] = []
    with client(served, tokens) as api:
        published = api.publish_numbers(
            served.feature_set_id,
            [*numbers, "not-a-number"],
            poll_interval=0.2,
            timeout=60,
            on_progress=lambda p: progress.append((p.sent, p.finished)),
        )
        assert published.finished and published.counts() == {"listed": 30}
        assert published.buckets["invalid_numbers"] == ["not-a-number"]
        assert progress[-1] == (31, 30)
        listed = {n.phone_number for n in api.iter_numbers(feature_set_id=served.feature_set_id, limit=7)}
        assert set(numbers) <= listed
        again = api.publish(served.feature_set_id, numbers[:2])
        assert again.existing_numbers == numbers[:2] and again.status == "failed"

        delisted = api.delist_numbers(served.feature_set_id, numbers[:10], poll_interval=0.2, timeout=60)
        assert delisted.finished and delisted.counts() == {"delisted": 10}
        remaining = {n.phone_number for n in api.iter_numbers(feature_set_id=served.feature_set_id)}
        assert not remaining & set(numbers[:10]) and set(numbers[10:]) <= remaining
