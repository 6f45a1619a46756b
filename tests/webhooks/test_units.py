"""Pure pieces: the retry-schedule notation, signatures, payload shapes, registered jobs, natural batching."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from callerid.batching import Batcher
from callerid.config import Settings
from callerid.jobs import registry
from callerid.webhooks import signing
from callerid.webhooks.payloads import sample_payload
from callerid.webhooks.schedule import parse_schedule


def test_default_schedule_is_the_spec() -> None:
    assert parse_schedule(Settings().webhook_retry_schedule) == [
        timedelta(minutes=2),
        timedelta(minutes=6),
        timedelta(minutes=30),
        timedelta(hours=1),
        timedelta(hours=5),
        timedelta(days=1),
        timedelta(days=2),
    ]


def test_schedule_notation() -> None:
    assert parse_schedule("1s, 1s,1.5m") == [timedelta(seconds=1), timedelta(seconds=1), timedelta(seconds=90)]
    assert parse_schedule("") == []
    with pytest.raises(ValueError, match="retry delay '5x' is not a number followed by s, m, h or d"):
        parse_schedule("1s,5x")
    with pytest.raises(ValidationError, match="retry delay"):
        Settings(webhook_retry_schedule="2 minutes")


def test_signature_matches_the_standard_webhooks_reference() -> None:
    from standardwebhooks.webhooks import Webhook

    secret = signing.new_secret()
    body = b'{"event_id":"e1"}'
    headers = signing.headers(secret, "e1", 1_753_945_760, body)
    reference = Webhook(secret).sign("e1", datetime.fromtimestamp(1_753_945_760, UTC), body.decode())
    assert headers["webhook-signature"] == reference
    assert signing.verify(secret, "e1", "1753945760", body, f"v1,bogus {headers['webhook-signature']}")
    assert not signing.verify(secret, "e1", "1753945761", body, headers["webhook-signature"])
    assert not signing.verify(signing.new_secret(), "e1", "1753945760", body, headers["webhook-signature"])


def test_sample_payloads_have_the_reference_shape() -> None:
    account = uuid.uuid4()
    now = datetime(2025, 7, 31, 7, 9, 20, tzinfo=UTC)
    cmb = sample_payload("cmb", event_id="e1", account_id=account, now=now)
    assert list(cmb) == ["event_id", "client_account_id", "event_type", "created_at", "cmb_payload"]
    assert cmb["created_at"] == cmb["cmb_payload"]["requested_at"] == "1753945760"
    assert list(cmb["cmb_payload"]) == [
        "business_number", "feature_set", "client_number", "requested_at", "requested_date", "requested_slot",
        "preferred_from_time", "preferred_to_time", "is_interested", "alternate_number", "cmb_config_name",
    ]  # fmt: skip
    feedback = sample_payload("user_feedback", event_id="e2", account_id=account, now=now)
    assert feedback["event_type"] == "user_feedback" and feedback["client_account_id"] == str(account)
    assert feedback["survey_payload"]["business_number"] == "910987654321"  # digits only
    assert all(isinstance(r["response"], str) for r in feedback["survey_payload"]["user_responses"])


def test_jobs_are_registered() -> None:
    import callerid.webhooks.jobs  # noqa: F401

    assert {"webhooks.deliver", "webhooks.send_mail", "webhooks.purge_logs"} <= set(registry.handlers)
    assert registry.periodic["webhooks.purge_logs"].every(Settings()) == timedelta(hours=1)


# --- natural batching -------------------------------------------------------------------------------------


class _Gate:
    """A batch process that records each batch and waits until the test lets it finish."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.peak = 0
        self.release = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return [item * 10 for item in items]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_batcher_takes_what_arrives_during_a_batch_into_the_next() -> None:
    gate = _Gate()
    batcher: Batcher[int, int] = Batcher(gate)
    first = asyncio.create_task(batcher.submit(1))
    await settle()  # the first item starts a batch at once, alone
    rest = [asyncio.create_task(batcher.submit(n)) for n in (2, 3, 4)]
    await settle()
    assert gate.batches == [[1]]
    gate.release.set()
    assert await asyncio.gather(first, *rest) == [10, 20, 30, 40]
    assert gate.batches == [[1], [2, 3, 4]] and gate.peak == 1


async def test_batcher_with_two_in_flight_starts_a_second_batch_while_one_waits() -> None:
    gate = _Gate()
    batcher: Batcher[int, int] = Batcher(gate, max_in_flight=2)
    tasks = [asyncio.create_task(batcher.submit(1))]
    await settle()
    tasks.append(asyncio.create_task(batcher.submit(2)))
    await settle()
    tasks += [asyncio.create_task(batcher.submit(n)) for n in (3, 4)]
    await settle()
    assert gate.batches == [[1], [2]]  # two under way; 3 and 4 wait for either
    gate.release.set()
    assert await asyncio.gather(*tasks) == [10, 20, 30, 40]
    assert sorted(n for batch in gate.batches for n in batch) == [1, 2, 3, 4] and gate.peak == 2
    # A batcher whose workers just finished takes new items at once.
    assert await asyncio.wait_for(batcher.submit(5), 5) == 50
