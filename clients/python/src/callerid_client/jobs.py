"""The results and progress reports of the helpers: ``personalise_many``, ``publish_numbers``, ``delist_numbers``."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from callerid_client._api import RecordInput, wire_record
from callerid_client.errors import LocalValidationError
from callerid_client.models import BatchRecord, DelistResult, PublishResult
from callerid_client.rules import check_record

BATCH_SIZE = 500  # records per B2 request (SPEC §5.3)
NUMBERS_PER_REQUEST = 10_000  # numbers per NL/ND request (SPEC §5.7)

InvalidPolicy = Literal["raise", "skip", "send"]


@dataclass
class Progress:
    """Where ``personalise_many`` is: records ``sent`` in batches, ``accepted`` by the server (batch id received),
    ``finished`` with a final outcome (``succeeded`` + ``failed``, locally invalid ones included)."""

    total: int
    invalid: int = 0
    sent: int = 0
    accepted: int = 0
    finished: int = 0
    succeeded: int = 0
    failed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def pending(self) -> int:
        return self.total - self.finished


ProgressHook = Callable[[Progress], None]


@dataclass(slots=True)
class RecordOutcome:
    """The final (or last known) outcome of one input record.

    ``status``: ``success``, ``error`` (``reason``: ``invalid_input``, ``not_app_user``, ``os_not_supported``,
    ``app_version_not_supported``, ``failed_to_push``, or ``not_sent`` when its batch was refused), or ``pending``
    (still queued when the wait ended, or not waited for). ``local``: found invalid before sending (never sent).
    """

    index: int
    status: str
    reason: str | None = None
    field: str | None = None
    message: str | None = None
    batch_id: str | None = None
    record_id: str | None = None
    caller_number: Any = None
    receiver_number: Any = None
    local: bool = False

    @property
    def outcome(self) -> str:
        """One word: ``success``, ``pending`` or the error's reason."""
        return (self.reason or "error") if self.status == "error" else self.status


@dataclass
class PersonaliseResult:
    """Every input record's outcome, in input order, and the batches sent."""

    outcomes: list[RecordOutcome]
    batch_ids: list[str]

    def counts(self) -> dict[str, int]:
        """Records per outcome (``success``, ``not_app_user``, ``invalid_input``, ``pending``, ...)."""
        return dict(Counter(outcome.outcome for outcome in self.outcomes))

    @property
    def all_succeeded(self) -> bool:
        return all(outcome.status == "success" for outcome in self.outcomes)

    @property
    def finished(self) -> bool:
        return all(outcome.status != "pending" for outcome in self.outcomes)


@dataclass
class Prepared:
    """Records ready to send (with their input positions) and the outcomes of the locally invalid ones."""

    wire: list[dict[str, Any]]
    positions: list[int]
    invalid: list[RecordOutcome]
    total: int

    def batches(self, size: int = BATCH_SIZE) -> list[tuple[list[int], list[dict[str, Any]]]]:
        return [
            (self.positions[start : start + size], self.wire[start : start + size])
            for start in range(0, len(self.wire), size)
        ]


def prepare_records(
    records: Iterable[RecordInput], labels: set[str] | None, on_invalid: InvalidPolicy, now_ms: int | None = None
) -> Prepared:
    """Checks every record with the server's rules; ``on_invalid``: ``raise`` (nothing is sent), ``skip`` (the
    invalid ones get an ``invalid_input`` outcome and are not sent) or ``send`` (the server judges them)."""
    wire: list[dict[str, Any]] = []
    positions: list[int] = []
    invalid: list[RecordOutcome] = []
    problems: list[tuple[int, str, str]] = []
    total = 0
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    for index, record in enumerate(records):
        total += 1
        body = wire_record(record)
        problem = None if on_invalid == "send" else check_record(body, labels=labels, now_ms=now_ms)
        if problem is None:
            wire.append(body)
            positions.append(index)
            continue
        problems.append((index, problem.field, problem.message))
        invalid.append(
            RecordOutcome(
                index=index,
                status="error",
                reason="invalid_input",
                field=problem.field,
                message=problem.v2_message(),
                caller_number=body.get("caller_number", body.get("caller")),
                receiver_number=body.get("receiver_number", body.get("receiver")),
                local=True,
            )
        )
    if problems and on_invalid == "raise":
        raise LocalValidationError(problems)
    return Prepared(wire, positions, invalid, total)


def outcome_of(index: int, batch_id: str, record: BatchRecord | Mapping[str, Any]) -> RecordOutcome:
    """A record's outcome from S2 (a model, or the raw JSON object: cheaper for whole campaigns)."""
    if isinstance(record, BatchRecord):
        record = record.model_dump()
    info = record.get("status_info") or {}
    return RecordOutcome(
        index=index,
        status=info.get("status", "pending"),
        reason=info.get("reason"),
        field=info.get("field"),
        message=info.get("message"),
        batch_id=batch_id,
        record_id=record.get("id"),
        caller_number=record.get("caller_number"),
        receiver_number=record.get("receiver_number"),
    )


def pending_outcome(index: int, record: Mapping[str, Any], batch_id: str | None, status: str = "pending",
                    reason: str | None = None, message: str | None = None) -> RecordOutcome:  # fmt: skip
    return RecordOutcome(
        index=index,
        status=status,
        reason=reason,
        message=message,
        batch_id=batch_id,
        caller_number=record.get("caller_number", record.get("caller")),
        receiver_number=record.get("receiver_number", record.get("receiver")),
    )


def note(progress: Progress, outcome: RecordOutcome) -> None:
    progress.finished += 1
    progress.outcomes[outcome.outcome] += 1
    if outcome.status == "success":
        progress.succeeded += 1
    else:
        progress.failed += 1


# --- numbers -------------------------------------------------------------------------------------------------------


@dataclass
class NumbersProgress:
    """Where ``publish_numbers``/``delist_numbers`` are: numbers ``sent``, ``accepted`` (to be listed/delisted or
    held behind a running job), ``finished`` (in a final state)."""

    total: int
    sent: int = 0
    accepted: int = 0
    finished: int = 0


NumbersProgressHook = Callable[[NumbersProgress], None]


@dataclass
class NumbersOutcome:
    """The answers of NL/ND (one per 10,000 numbers), their buckets merged, and the state each accepted number
    reached: publish -> ``listed`` / ``failed``; delist -> ``delisted`` / ``listed`` (the delisting failed);
    ``pending`` / ``delisting`` when the wait ended first (or was not asked for)."""

    action: Literal["publish", "delist"]
    answers: list[PublishResult | DelistResult]
    states: dict[str, str] = field(default_factory=dict)

    @property
    def buckets(self) -> dict[str, list[str]]:
        merged: dict[str, list[str]] = {}
        for answer in self.answers:
            for name, numbers in answer.buckets().items():
                merged.setdefault(name, []).extend(numbers)
        return merged

    @property
    def accepted(self) -> list[str]:
        found: list[str] = []
        for answer in self.answers:
            found.extend(answer.accepted)
            found.extend(answer.processing_numbers)
        return found

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.states.values()))

    @property
    def finished(self) -> bool:
        final = ("listed", "failed") if self.action == "publish" else ("delisted", "listed")
        return all(state in final for state in self.states.values())


def final_state(action: str, number: str, status: str | None, held: bool) -> str | None:
    """The final state of ``number`` given its NN status (None = not listed in the account), or None if not final."""
    if action == "publish":
        return status if status in ("listed", "failed") else None
    if status is None:
        return "delisted"
    if status == "listed" and not held:
        return "listed"  # the delisting failed: back to listed (SPEC §7.5)
    return None
