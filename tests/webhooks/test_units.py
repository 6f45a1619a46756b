"""Pure pieces: the retry-schedule notation, signatures, payload shapes, registered jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

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
