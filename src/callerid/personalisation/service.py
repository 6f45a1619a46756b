"""Call records: the validation rules (SPEC §7.1-§7.2), storing batches durably, delivering them, and the
lookup of the identity a receiver should see. Free of HTTP.

Throughput matters here (the real-time path and 500-record batches), so validation is plain Python with
no database round trip except one query for all label ids of a request, a batch is stored with one
multi-row INSERT in the same transaction as the job that delivers it, and outcomes are written back in
one UPDATE per distinct outcome.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy import Integer, String, bindparam, func, insert, literal_column, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.call_reason import call_reason_problem
from callerid.config import Settings
from callerid.db import Database
from callerid.db.base import UuidText
from callerid.db.pointread import point_session
from callerid.db.sqlitewriter import WriteTransaction, sqlite_writer
from callerid.delivery.service import DeliveryOutcome, PushMessage, deliver_many, plan_delivery, push_planned
from callerid.delivery.service import outcome as delivery_outcome
from callerid.display_text import cannot_display, is_displayable
from callerid.jobs import enqueue
from callerid.jobs.service import INSERT_JOB, job_row, wake_local_runners
from callerid.labels.models import Label
from callerid.labels.service import DynamicLabel, find_dynamic_labels, logo_url
from callerid.personalisation.models import ERROR, INVALID_INPUT, PENDING, SUCCESS, CallBatch, CallRecord
from callerid.personalisation.schemas import FIELDS, V1, V2, StoredRecord, wire_name
from callerid.personalisation.writer import GroupInserter
from callerid.phone import normalise_phone
from callerid.uuids import parse_uuid

DELIVER_BATCH_JOB = "personalisation.deliver_batch"
REALTIME_INSERTER = "personalisation.realtime_inserter"  # runtime.services key: the R1/R2 group commit
log = structlog.get_logger("callerid.personalisation")

LABEL_NAME_MIN, LABEL_NAME_MAX = 3, 40  # SPEC §7.1 rule 4
MAX_WINDOW_MS = 86_400_000  # SPEC §7.1 rule 13: 24 hours
INT64_MAX = 2**63 - 1  # starts_at / ends_at are int64 (and stored as BIGINT)
BATCH_FIELD = "call_records"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

# Core tables, not ORM entities, in the hot queries: rows come back without the ORM's loading overhead.
LABELS = Label.__table__
RECORDS_WITH_LABELS = CallRecord.__table__.join(LABELS, LABELS.c.id == CallRecord.__table__.c.label_id)

# v2 requests may use the v1 name of a field that is absent (SPEC §12 #8).
_V2_ALIASES = {
    "caller_number": "caller",
    "receiver_number": "receiver",
    "dynamic_label_name": "label_name",
    "dynamic_call_reason": "call_reason",
}


def new_record_id(at_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562) for time ``at_ms`` (default now): ids made close in time sort together, so a batch's
    rows append to the primary-key index instead of landing on random pages. Written here because Python
    3.11's ``uuid`` has no ``uuid7``."""
    millis = epoch_ms(clock.now()) if at_ms is None else at_ms
    value = (millis & 0xFFFF_FFFF_FFFF) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


def epoch_ms(value: datetime) -> int:
    """Exact epoch milliseconds (integer arithmetic, unlike ``timestamp() * 1000``)."""
    return (value - _EPOCH) // _ONE_MS


class BatchShapeError(Exception):
    """The request's ``call_records`` is missing, not a list of objects, or of a wrong size."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def batch_records_of(body: dict[str, Any] | None, max_records: int) -> list[dict[str, Any]]:
    """The request's ``call_records`` (SPEC §5.3): a list of 1..max objects, else ``BatchShapeError``."""
    records = None if body is None else body.get(BATCH_FIELD)
    if not isinstance(records, list) or not all(isinstance(item, dict) for item in records):
        raise BatchShapeError(f"{BATCH_FIELD} is required")
    if not 1 <= len(records) <= max_records:
        raise BatchShapeError(f"{BATCH_FIELD} must contain between 1 and {max_records} records")
    return records


# --- validation ------------------------------------------------------------------------------------


@dataclass(slots=True)
class CheckedRecord:
    """One record after the rules: normalised values when valid, else the first failing rule."""

    id: uuid.UUID
    position: int
    caller: str | None = None
    receiver: str | None = None
    label: DynamicLabel | None = None
    label_name: str | None = None
    call_reason: str | None = None
    starts_at: int | None = None
    ends_at: int | None = None
    field: str | None = None  # internal (v1) name of the failing field
    message: str | None = None  # §7.2 message in the request's version, without prefix
    sent: dict[str, Any] | None = None  # for invalid records: what was sent, valid parts normalised

    @property
    def valid(self) -> bool:
        return self.field is None

    @property
    def v2_field(self) -> str | None:
        return None if self.field is None else wire_name(self.field, V2)


class _Invalid(Exception):
    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message


# (name in the request, fallback name when absent) per internal field name and version.
_NAMES = {
    V1: {field: (field, None) for field in FIELDS},
    V2: {field: (wire_name(field, V2), _V2_ALIASES.get(wire_name(field, V2))) for field in FIELDS},
}


def _raw(record: dict[str, Any], field: str, version: str) -> Any:
    """The value sent for ``field`` (internal name); on v2 the v1 name stands in when the v2 one is absent."""
    name, alias = _NAMES[version][field]
    value = record.get(name)
    if value is None and alias is not None:
        value = record.get(alias)
    return value


# A batch repeats the same label id hundreds of times: parse each distinct text once.
_label_uuid = functools.lru_cache(maxsize=4096)(parse_uuid)


def _is_int64(value: Any) -> bool:
    # bool is an int in Python but not a JSON integer.
    return type(value) is int and -INT64_MAX - 1 <= value <= INT64_MAX


def label_ids_of(records: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Every well-formed ``label_id`` of a request, to look them all up in one query."""
    ids = set()
    for record in records:
        value = record.get("label_id")
        if isinstance(value, str):
            parsed = _label_uuid(value)
            if parsed is not None:
                ids.add(parsed)
    return ids


def check_record(
    record: dict[str, Any], version: str, labels: dict[uuid.UUID, DynamicLabel], now_ms: int, position: int = 0
) -> CheckedRecord:
    """Apply SPEC §7.1 rules 1-13 in order; the first failure is kept (messages per §7.2)."""
    checked = CheckedRecord(id=new_record_id(now_ms), position=position)
    try:
        _apply_rules(checked, record, version, labels, now_ms)
    except _Invalid as problem:
        checked.field = problem.field
        checked.message = problem.message
        checked.sent = _sent_values(record, version, labels)
    return checked


def _apply_rules(
    checked: CheckedRecord, record: dict[str, Any], version: str, labels: dict[uuid.UUID, DynamicLabel], now_ms: int
) -> None:
    # Written out field by field: a batch runs this for every record, so no loops, lookups or messages that the
    # valid path does not need (the names a message quotes are looked up only on failure).
    names = _NAMES[version]
    caller = _raw(record, "caller", version)  # rules 1, 2
    if caller is None or caller == "":
        raise _Invalid("caller", f"{names['caller'][0]} is required")
    checked.caller = normalise_phone(caller)
    if checked.caller is None:
        raise _Invalid("caller", f"{names['caller'][0]} is invalid")
    receiver = _raw(record, "receiver", version)
    if receiver is None or receiver == "":
        raise _Invalid("receiver", f"{names['receiver'][0]} is required")
    checked.receiver = normalise_phone(receiver)
    if checked.receiver is None:
        raise _Invalid("receiver", f"{names['receiver'][0]} is invalid")

    value = record.get("label_id")  # rule 3
    if value is None or value == "":
        raise _Invalid("label_id", "label_id is required")
    label_id = _label_uuid(value) if isinstance(value, str) else None
    if label_id is None:
        raise _Invalid("label_id", "label_id is invalid")
    label = labels.get(label_id)
    if label is None:
        raise _Invalid("label_id", "label_id is not a dynamic label of this client")
    checked.label = label

    value = _raw(record, "label_name", version)  # rule 4; absent or empty -> the label's name
    if value is None or value == "":
        checked.label_name = label.name
    elif not isinstance(value, str):
        raise _Invalid("label_name", f"{names['label_name'][0]} is invalid")
    elif not LABEL_NAME_MIN <= len(value) <= LABEL_NAME_MAX:
        raise _Invalid(
            "label_name", f"{names['label_name'][0]} must be between {LABEL_NAME_MIN} and {LABEL_NAME_MAX} characters"
        )
    elif not is_displayable(value):  # right after the length rule (callerid.display_text)
        raise _Invalid("label_name", cannot_display(names["label_name"][0]))
    else:
        checked.label_name = value

    value = _raw(record, "call_reason", version)  # rules 5-8
    if value is not None:
        if not isinstance(value, str):
            raise _Invalid("call_reason", f"{names['call_reason'][0]} is invalid")
        problem = call_reason_problem(value, names["call_reason"][0])
        if problem is not None:
            raise _Invalid("call_reason", problem)
        checked.call_reason = value

    starts_at = record.get("starts_at")  # rules 9, 10
    if starts_at is None:
        raise _Invalid("starts_at", "starts_at is required")
    if not _is_int64(starts_at) or starts_at < 0:
        raise _Invalid("starts_at", "starts_at is invalid")
    ends_at = record.get("ends_at")
    if ends_at is None:
        raise _Invalid("ends_at", "ends_at is required")
    if not _is_int64(ends_at):
        raise _Invalid("ends_at", "ends_at is invalid")
    if ends_at < now_ms:  # rule 11
        raise _Invalid("ends_at", "ends_at cannot be older than current time")
    if ends_at <= starts_at:  # rule 12
        raise _Invalid("ends_at", "ends_at cannot be before starts_at")
    if ends_at - starts_at > MAX_WINDOW_MS:  # rule 13
        raise _Invalid("ends_at", "ends_at cannot be more than 24 hours after starts_at")
    checked.starts_at = starts_at
    checked.ends_at = ends_at


def _sent_values(record: dict[str, Any], version: str, labels: dict[uuid.UUID, DynamicLabel]) -> dict[str, Any]:
    """What S1/S2 echo for an invalid record: each field as sent, or normalised where it is valid."""
    values = {field: _raw(record, field, version) for field in FIELDS}
    for field in ("caller", "receiver"):
        values[field] = normalise_phone(values[field]) or values[field]
    label_id = parse_uuid(values["label_id"]) if isinstance(values["label_id"], str) else None
    if label_id is not None:
        values["label_id"] = str(label_id)
        if values["label_name"] in (None, "") and label_id in labels:
            values["label_name"] = labels[label_id].name
    return values


async def _labels_for(
    db: Database, account_id: uuid.UUID, records: Sequence[dict[str, Any]]
) -> dict[uuid.UUID, DynamicLabel]:
    return await find_dynamic_labels(db, account_id, label_ids_of(records))


# --- storing -----------------------------------------------------------------------------------------


def _row(
    checked: CheckedRecord,
    *,
    account_id: uuid.UUID,
    batch_id: uuid.UUID | None,
    version: str,
    created_at: datetime,
    status: str,
    reason: str | None = None,
    field: str | None = None,
    message: str | None = None,
    sent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``call_records`` row; every row has the same keys so a batch is one executemany INSERT."""
    usable = sent is None
    return {
        "id": checked.id,
        "account_id": account_id,
        "batch_id": batch_id,
        "position": checked.position,
        "version": version,
        "caller": checked.caller if usable else None,
        "receiver": checked.receiver if usable else None,
        "label_id": checked.label.id if usable and checked.label is not None else None,
        "label_name": checked.label_name if usable else None,
        "call_reason": checked.call_reason if usable else None,
        "starts_at": checked.starts_at if usable else None,
        "ends_at": checked.ends_at if usable else None,
        "status": status,
        "reason": reason,
        "field": field,
        "message": message,
        "sent": sent,
        "created_at": created_at,
    }


def _invalid_row(checked: CheckedRecord, **common: Any) -> dict[str, Any]:
    return _row(
        checked,
        **common,
        status=ERROR,
        reason=INVALID_INPUT,
        field=checked.v2_field,
        message=checked.message,
        sent=checked.sent,
    )


def _valid_values(checked: CheckedRecord) -> dict[str, Any]:
    assert checked.label is not None
    return {
        "caller": checked.caller,
        "receiver": checked.receiver,
        "label_id": str(checked.label.id),
        "label_name": checked.label_name,
        "call_reason": checked.call_reason,
        "starts_at": checked.starts_at,
        "ends_at": checked.ends_at,
    }


_INSERT_BATCH = insert(CallBatch.__table__)
_INSERT_RECORDS = insert(CallRecord.__table__)


async def _store_batch(
    db: Database,
    *,
    account_id: uuid.UUID,
    batch_id: uuid.UUID,
    version: str,
    created_at: datetime,
    rows: list[dict[str, Any]],
    deliver: bool,
) -> None:
    """Batch, records and (when some are valid) the delivery job, in one transaction: once this returns
    the batch cannot be lost, and its processing is already queued."""
    batch = {"id": batch_id, "account_id": account_id, "version": version, "record_count": len(rows)}
    batch["created_at"] = created_at
    job = job_row(DELIVER_BATCH_JOB, {"batch_id": str(batch_id)}) if deliver else None
    writer = sqlite_writer(db)
    if writer is not None:
        # Values every record shares are converted once; the rows go in as a few multi-row INSERTs.
        shared = {"account_id": account_id, "batch_id": batch_id, "version": version, "created_at": created_at}
        records = writer.prepare_insert(_INSERT_RECORDS, rows, shared)

        def write(tx: WriteTransaction) -> None:
            tx.execute(_INSERT_BATCH, batch)
            tx.run(records)
            if job is not None:
                tx.execute(INSERT_JOB, job)

        await writer.transaction(write)
    else:
        async with db.transaction() as session:
            await session.execute(_INSERT_BATCH, batch)
            await session.execute(_INSERT_RECORDS, rows)
            if job is not None:
                await enqueue(session, DELIVER_BATCH_JOB, job["payload"])
    if deliver:
        wake_local_runners()


@dataclass(frozen=True)
class V1Result:
    batch_id: uuid.UUID
    error: str | None  # the first error (v1 text, indexed when not the first record); None = accepted


async def submit_v1(db: Database, account_id: uuid.UUID, records: list[dict[str, Any]]) -> V1Result:
    """R1 (one record) and B1: all-or-nothing (SPEC §5.5). The batch is stored either way, so that its
    BatchID can be queried; only an accepted batch is delivered."""
    now = clock.now()
    labels = await _labels_for(db, account_id, records)
    now_ms = epoch_ms(now)
    checked = [check_record(record, V1, labels, now_ms, i) for i, record in enumerate(records)]
    batch_id = new_record_id()
    common: dict[str, Any] = {"account_id": account_id, "batch_id": batch_id, "version": V1, "created_at": now}
    first_bad = next((c for c in checked if not c.valid), None)
    if first_bad is None:
        rows = [_row(c, **common, status=PENDING) for c in checked]
        error = None
    else:
        error = (
            first_bad.message if first_bad.position == 0 else f"call_records[{first_bad.position}]: {first_bad.message}"
        )
        # Valid records of a rejected batch are not delivered and say why; they are not usable records.
        rejected = f"batch rejected, call_records[{first_bad.position}]: {first_bad.message}"
        rows = [
            _invalid_row(c, **common)
            if not c.valid
            else _row(
                c,
                **common,
                status=ERROR,
                reason=INVALID_INPUT,
                field=BATCH_FIELD,
                message=rejected,
                sent=_valid_values(c),
            )
            for c in checked
        ]
    await _store_batch(db, **common, rows=rows, deliver=error is None)
    return V1Result(batch_id=batch_id, error=error)


async def submit_v2_batch(db: Database, account_id: uuid.UUID, records: list[dict[str, Any]]) -> uuid.UUID:
    """B2: each record validated at receipt; invalid ones stored with their error, valid ones queued."""
    now = clock.now()
    labels = await _labels_for(db, account_id, records)
    now_ms = epoch_ms(now)
    checked = [check_record(record, V2, labels, now_ms, i) for i, record in enumerate(records)]
    batch_id = new_record_id()
    common: dict[str, Any] = {"account_id": account_id, "batch_id": batch_id, "version": V2, "created_at": now}
    rows = [_row(c, **common, status=PENDING) if c.valid else _invalid_row(c, **common) for c in checked]
    await _store_batch(db, **common, rows=rows, deliver=any(c.valid for c in checked))
    return batch_id


@dataclass(frozen=True)
class RealtimeResult:
    record: CheckedRecord
    outcome: DeliveryOutcome | None  # None when the record is invalid


def push_message(settings: Settings, checked: CheckedRecord) -> PushMessage:
    assert checked.label is not None and checked.caller and checked.receiver
    assert checked.label_name is not None and checked.starts_at is not None and checked.ends_at is not None
    return PushMessage(
        record_id=str(checked.id),
        caller=checked.caller,
        receiver=checked.receiver,
        label_id=str(checked.label.id),
        label_name=checked.label_name,
        logo_url=logo_url(settings, checked.label.logo_key),
        call_reason=checked.call_reason,
        starts_at=checked.starts_at,
        ends_at=checked.ends_at,
    )


async def submit_realtime_v2(
    services: dict[str, Any], db: Database, settings: Settings, account_id: uuid.UUID, record: dict[str, Any]
) -> RealtimeResult:
    """R2: validate, push synchronously, then store the record with its outcome in one write."""
    now = clock.now()
    labels = await _labels_for(db, account_id, [record])
    checked = check_record(record, V2, labels, epoch_ms(now))
    common: dict[str, Any] = {"account_id": account_id, "batch_id": None, "version": V2, "created_at": now}
    outcome: DeliveryOutcome | None = None
    if checked.valid:
        try:
            outcome = (await deliver_many(services, db, settings, [push_message(settings, checked)]))[0]
        except Exception:
            # The push could not be attempted: that is the record's outcome (SPEC §8 #4), not a 500 for a valid record.
            log.exception("realtime_push_failed", record_id=str(checked.id))
            outcome = delivery_outcome(settings, "failed_to_push")
        if outcome.reason is None:
            row = _row(checked, **common, status=SUCCESS)
        else:
            row = _row(checked, **common, status=ERROR, reason=outcome.reason, message=outcome.message)
    else:
        row = _invalid_row(checked, **common)
    await _realtime_inserter(services, db).insert(row)
    return RealtimeResult(record=checked, outcome=outcome)


def _realtime_inserter(services: dict[str, Any], db: Database) -> GroupInserter:
    inserter: GroupInserter | None = services.get(REALTIME_INSERTER)
    if inserter is None:
        inserter = services[REALTIME_INSERTER] = GroupInserter(db, CallRecord.__table__)
    return inserter


# --- processing ----------------------------------------------------------------------------------------


_RECORDS = CallRecord.__table__.c
# A batch's records still to deliver, in submission order: first only who receives them (most receivers of a batch
# are usually not app users, and their records need nothing more), ...
_PENDING_RECEIVERS = (
    select(_RECORDS.position, _RECORDS.receiver)
    .where(_RECORDS.batch_id == bindparam("batch_id"), _RECORDS.status == PENDING)
    .order_by(_RECORDS.position)
)
# ... then everything a push message needs, for the records that get pushed (ids as text: they only go into the
# messages). On SQLite the positions are one JSON array, so that one statement built once serves any number of them.
_TO_PUSH = (
    select(
        type_coerce(_RECORDS.id, UuidText()).label("id"),
        _RECORDS.position,
        _RECORDS.caller,
        _RECORDS.receiver,
        type_coerce(_RECORDS.label_id, UuidText()).label("label_id"),
        _RECORDS.label_name,
        _RECORDS.call_reason,
        _RECORDS.starts_at,
        _RECORDS.ends_at,
        LABELS.c.logo_key,
    )
    .select_from(RECORDS_WITH_LABELS)
    .order_by(_RECORDS.position)
)
_TO_PUSH_SQLITE = _TO_PUSH.where(
    _RECORDS.batch_id == bindparam("batch_id"),
    _RECORDS.position.in_(
        select(type_coerce(literal_column("value"), Integer)).select_from(
            func.json_each(bindparam("positions", type_=String))
        )
    ),
)
_TO_PUSH_LIST = _TO_PUSH.where(
    _RECORDS.batch_id == bindparam("batch_id"), _RECORDS.position.in_(bindparam("positions", expanding=True))
)
# SQLite: one outcome for the still-pending records of a batch at the positions in a JSON array (one statement,
# whatever the number of positions, so it can be built once; PostgreSQL uses an IN list below).
_SET_OUTCOME_SQLITE = (
    update(CallRecord.__table__)
    .where(
        _RECORDS.batch_id == bindparam("batch_id"),
        _RECORDS.status == PENDING,
        _RECORDS.position.in_(select(literal_column("value")).select_from(func.json_each(bindparam("positions")))),
    )
    .values(status=bindparam("new_status"), reason=bindparam("new_reason"), message=bindparam("new_message"))
)


async def deliver_batch(services: dict[str, Any], db: Database, settings: Settings, batch_id: uuid.UUID) -> int:
    """Deliver a batch's pending records and store each outcome. Idempotent: only pending records are
    taken and only pending records are updated, so a job run again after a crash finishes the rest."""
    async with point_session(db) as session:
        rows = (await session.execute(_PENDING_RECEIVERS, {"batch_id": batch_id})).all()
    if not rows:
        return 0
    plan = await plan_delivery(db, settings, [row.receiver for row in rows])
    messages: list[PushMessage] = []
    if plan.pushes:
        positions: Any = [rows[index].position for index, _ in plan.pushes]
        statement = _TO_PUSH_LIST
        if db.is_sqlite:
            statement, positions = _TO_PUSH_SQLITE, orjson.dumps(positions).decode()
        async with point_session(db) as session:
            details = (await session.execute(statement, {"batch_id": batch_id, "positions": positions})).all()
        logo_urls: dict[str, str] = {}  # a batch mostly uses one or a few labels
        for row in details:
            url = logo_urls.get(row.logo_key)
            if url is None:
                url = logo_urls[row.logo_key] = logo_url(settings, row.logo_key)
            messages.append(
                PushMessage(
                    record_id=row.id,
                    caller=row.caller,
                    receiver=row.receiver,
                    label_id=row.label_id,
                    label_name=row.label_name,
                    logo_url=url,
                    call_reason=row.call_reason,
                    starts_at=row.starts_at,
                    ends_at=row.ends_at,
                )
            )
    outcomes = await push_planned(services, plan, messages)
    # Outcomes are few (delivered, or one of four reasons): one UPDATE each, by position within the batch.
    by_outcome: dict[tuple[str | None, str | None], list[int]] = defaultdict(list)
    for row, outcome in zip(rows, outcomes, strict=True):
        by_outcome[(outcome.reason, outcome.message)].append(row.position)
    updates = [
        {
            "batch_id": batch_id,
            "positions": orjson.dumps(positions).decode(),
            "new_status": SUCCESS if reason is None else ERROR,
            "new_reason": reason,
            "new_message": message,
        }
        for (reason, message), positions in by_outcome.items()
    ]
    writer = sqlite_writer(db)
    if writer is not None:

        def write(tx: WriteTransaction) -> None:
            for values in updates:
                tx.execute(_SET_OUTCOME_SQLITE, values)

        await writer.transaction(write)
        return len(rows)
    async with db.transaction() as session:
        for (reason, message), positions in by_outcome.items():
            values: dict[str, Any] = (
                {"status": SUCCESS} if reason is None else {"status": ERROR, "reason": reason, "message": message}
            )
            await session.execute(
                update(CallRecord.__table__)
                .where(_RECORDS.batch_id == batch_id, _RECORDS.position.in_(positions), _RECORDS.status == PENDING)
                .values(**values)
            )
    return len(rows)


async def fail_pending(db: Database, settings: Settings, batch_id: uuid.UUID) -> None:
    """Give a batch's still-pending records the final ``failed_to_push`` outcome (SPEC §8 #4)."""
    gave_up = delivery_outcome(settings, "failed_to_push")
    records = CallRecord.__table__.c
    async with db.transaction() as session:
        await session.execute(
            update(CallRecord.__table__)
            .where(records.batch_id == batch_id, records.status == PENDING)
            .values(status=ERROR, reason=gave_up.reason, message=gave_up.message)
        )


# --- reading -----------------------------------------------------------------------------------------------


async def batch_records(session: AsyncSession, account_id: uuid.UUID, batch_id: uuid.UUID) -> list[StoredRecord]:
    """A batch's records in submission order; empty for an unknown batch or another account's."""
    records = CallRecord.__table__.c
    rows = (
        await session.execute(
            select(CallRecord.__table__)
            .where(records.batch_id == batch_id, records.account_id == account_id)
            .order_by(records.position)
        )
    ).all()
    return [_stored(row) for row in rows]


def _stored(row: Any) -> StoredRecord:
    if row.sent is not None:
        values = dict(row.sent)
    else:
        values = {
            "caller": row.caller,
            "receiver": row.receiver,
            "label_id": str(row.label_id) if row.label_id is not None else None,
            "label_name": row.label_name,
            "call_reason": row.call_reason,
            "starts_at": row.starts_at,
            "ends_at": row.ends_at,
        }
    return StoredRecord(
        id=str(row.id),
        account_id=str(row.account_id),
        batch_id=str(row.batch_id) if row.batch_id is not None else None,
        values=values,
        status=row.status,
        reason=row.reason,
        field=row.field,
        message=row.message,
        created_at=row.created_at,
    )


@dataclass(frozen=True)
class ActiveIdentity:
    """What a receiver's phone shows for a call from ``caller`` (SPEC §6)."""

    record_id: str
    label_id: str
    name: str
    logo_key: str
    call_reason: str | None
    starts_at: int  # epoch ms
    ends_at: int  # epoch ms


def _active_identity_query() -> Any:
    records = CallRecord.__table__.c
    at_ms = bindparam("at_ms", type_=records.starts_at.type)
    return (
        select(
            type_coerce(records.id, UuidText()).label("id"),  # text: they only go out again as text
            type_coerce(records.label_id, UuidText()).label("label_id"),
            records.label_name,
            LABELS.c.logo_key,
            records.call_reason,
            records.starts_at,
            records.ends_at,
        )
        .select_from(RECORDS_WITH_LABELS)
        .where(
            records.caller == bindparam("caller"),
            records.receiver == bindparam("receiver"),
            records.starts_at <= at_ms,
            records.ends_at >= at_ms,
        )
        .order_by(records.created_at.desc(), records.position.desc())
        .limit(1)
    )


# Built once: the caller-ID lookup runs it on every call.
_ACTIVE_IDENTITY = _active_identity_query()


async def active_identity(session: AsyncSession, caller: str, receiver: str, at: datetime) -> ActiveIdentity | None:
    """The newest valid record for the pair whose window contains ``at`` (SPEC §6.1-6.2), or None.

    Hot path: one indexed query on (caller, receiver, created_at); records that failed validation have
    NULL caller/receiver and never match.
    """
    caller_number = normalise_phone(caller)
    receiver_number = normalise_phone(receiver)
    if caller_number is None or receiver_number is None:
        return None
    at_ms = epoch_ms(at)
    params = {"caller": caller_number, "receiver": receiver_number, "at_ms": at_ms}
    row = (await session.execute(_ACTIVE_IDENTITY, params)).first()
    if row is None:
        return None
    return ActiveIdentity(
        record_id=row.id,
        label_id=row.label_id,
        name=row.label_name,
        logo_key=row.logo_key,
        call_reason=row.call_reason,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
    )
