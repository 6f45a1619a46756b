"""active_identity: the record a receiver's phone shows for a call (SPEC §6), used by the caller-ID lookup."""

from __future__ import annotations

from datetime import timedelta

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.labels.models import Label
from callerid.personalisation import service
from callerid.personalisation.service import ActiveIdentity, active_identity, epoch_ms
from callerid.runtime import Runtime
from tests.conftest import Tenant
from tests.personalisation.conftest import CALLER, HOUR_MS, RECEIVER, add_label, record_v2


async def lookup(
    db: Database, caller: str = CALLER, receiver: str = RECEIVER, at_ms: int | None = None
) -> ActiveIdentity | None:
    at = clock.now() if at_ms is None else clock.now() + timedelta(milliseconds=at_ms - epoch_ms(clock.now()))
    return await active_identity(db, caller, receiver, at)


async def test_window_bounds_are_inclusive(db: Database, tenant: Tenant, label: Label, now_ms: int) -> None:
    start, end = now_ms + HOUR_MS, now_ms + 2 * HOUR_MS
    await service.submit_v2_batch(db, tenant.account_id, [record_v2(label, now_ms, starts_at=start, ends_at=end)])
    assert await lookup(db, at_ms=start - 1) is None
    found = await lookup(db, at_ms=start)
    assert found is not None
    assert (found.label_id, found.name, found.logo_key) == (str(label.id), "Flower rasm", label.logo_key)
    assert (found.call_reason, found.starts_at, found.ends_at) == ("Flower Delivery", start, end)
    assert await lookup(db, at_ms=end) == found
    assert await lookup(db, at_ms=end + 1) is None


async def test_newest_record_of_the_pair_wins(
    db: Database, settings: Settings, tenant: Tenant, label: Label, now_ms: int
) -> None:
    other_label = await add_label(db, settings, tenant.account_id, "Second Label")
    await service.submit_v2_batch(db, tenant.account_id, [record_v2(label, now_ms)])
    clock.advance(timedelta(milliseconds=5))
    await service.submit_v2_batch(
        db,
        tenant.account_id,
        [
            record_v2(label, now_ms, dynamic_label_name="Older in batch"),
            record_v2(other_label, now_ms, dynamic_label_name=..., dynamic_call_reason=...),
        ],
    )
    found = await lookup(db)
    assert found is not None
    assert (found.label_id, found.name, found.call_reason) == (str(other_label.id), "Second Label", None)
    # another pair, and numbers given with "+", are looked up by their normalised form
    assert await lookup(db, caller=RECEIVER, receiver=CALLER) is None
    assert await lookup(db, caller="+" + CALLER, receiver=" " + RECEIVER) == found
    assert await lookup(db, caller="bad") is None


async def test_invalid_records_never_identify(db: Database, tenant: Tenant, label: Label, now_ms: int) -> None:
    await service.submit_v2_batch(db, tenant.account_id, [record_v2(label, now_ms)])
    valid = await lookup(db)
    assert valid is not None
    clock.advance(timedelta(milliseconds=5))
    # newer, but invalid (name too short): the valid one still answers
    await service.submit_v2_batch(db, tenant.account_id, [record_v2(label, now_ms, dynamic_label_name="ab")])
    assert await lookup(db) == valid


async def test_r2_records_with_a_failed_push_still_identify(
    db: Database, runtime: Runtime, tenant: Tenant, label: Label, now_ms: int
) -> None:
    result = await service.submit_realtime_v2(runtime, tenant.account_id, record_v2(label, now_ms))
    assert result.outcome is not None and result.outcome.reason == "not_app_user"
    found = await lookup(db)
    assert found is not None and (found.label_id, found.starts_at) == (str(label.id), result.record.starts_at)
