"""Event payloads (SPEC §9.3): the envelope, and the sample payloads that "Test webhook" sends."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from callerid.timefmt import epoch_seconds_str

PAYLOAD_KEYS = {"cmb": "cmb_payload", "user_feedback": "survey_payload"}


def envelope(
    *, event_id: str, account_id: uuid.UUID, event_type: str, created_at: datetime, body: dict[str, Any]
) -> dict[str, Any]:
    """The event envelope in the reference's field order; ``body`` becomes cmb_payload or survey_payload."""
    return {
        "event_id": event_id,
        "client_account_id": str(account_id),
        "event_type": event_type,
        "created_at": epoch_seconds_str(created_at),
        PAYLOAD_KEYS[event_type]: body,
    }


def sample_payload(event_type: str, *, event_id: str, account_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    """The reference's C1 / survey example, with this event's id, the account and the current time."""
    requested_at = epoch_seconds_str(now)
    if event_type == "cmb":
        body: dict[str, Any] = {
            "business_number": "910987654321",
            "feature_set": "Fresh Flower Delivery",
            "client_number": "911234567890",
            "requested_at": requested_at,
            "requested_date": "2025-08-02",
            "requested_slot": "Saturday",
            "preferred_from_time": "1754116200",
            "preferred_to_time": "1754118000",
            "is_interested": True,
            "alternate_number": "",
            "cmb_config_name": "CMBName",
        }
    else:
        body = {
            "name": "Flower Quality Check",
            "business_number": "910987654321",  # digits only (SPEC §12 #33)
            "feature_set": "Fresh Flower Delivery",
            "client_number": "911234567890",
            "requested_at": requested_at,
            "user_responses": [
                {"question": "How was the delivery experience?", "response": "5"},
                {"question": "Flower Quality?", "response": "Good"},
            ],
        }
    return envelope(event_id=event_id, account_id=account_id, event_type=event_type, created_at=now, body=body)
