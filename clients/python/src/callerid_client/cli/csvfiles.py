"""Reading a CSV of calls and writing the per-record outcomes.

Input columns (header row required): ``caller_number``, ``receiver_number``, ``label_id``, ``starts_at``,
``ends_at``, and optionally ``dynamic_label_name``, ``dynamic_call_reason`` (the v1 names ``caller``, ``receiver``,
``label_name``, ``call_reason`` are accepted too). Times are epoch milliseconds or ISO-8601 date-times with an
offset (``2025-08-02T10:30:00+05:30``). Other columns are ignored. Empty optional cells are left out.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from callerid_client.jobs import RecordOutcome
from callerid_client.models import epoch_ms
from callerid_client.rules import check_record

ALIASES = {
    "caller": "caller_number",
    "receiver": "receiver_number",
    "label_name": "dynamic_label_name",
    "call_reason": "dynamic_call_reason",
}
REQUIRED = ("caller_number", "receiver_number", "label_id", "starts_at", "ends_at")
OPTIONAL = ("dynamic_label_name", "dynamic_call_reason")
OUTCOME_COLUMNS = (
    "line", "caller_number", "receiver_number", "outcome", "status", "reason", "field", "message", "batch_id",
    "record_id",
)  # fmt: skip


class CsvError(Exception):
    """The file cannot be read as a CSV of calls at all (no header, missing column)."""


@dataclass(frozen=True)
class RowProblem:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, field {self.field}: {self.message}"


@dataclass
class CallsFile:
    records: list[dict[str, Any]]
    lines: list[int]  # the line each record starts on


def _time(value: str) -> int | str:
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return value  # the rules report it as invalid
    if parsed.tzinfo is None:
        return value  # ambiguous without an offset: refused rather than guessed
    return epoch_ms(parsed)


def read_calls(path: Path) -> CallsFile:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise CsvError(f"cannot open {path}: {exc.strerror}") from exc
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise CsvError(f"{path} is empty (a header row is required)") from None
        except csv.Error as exc:
            raise CsvError(f"{path} line {reader.line_num}: {exc}") from exc
        names = [ALIASES.get(name.strip(), name.strip()) for name in header]
        missing = [name for name in REQUIRED if name not in names]
        if missing:
            raise CsvError(f"{path} line 1: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
        records: list[dict[str, Any]] = []
        lines: list[int] = []
        previous_end = reader.line_num
        try:
            for row in reader:
                start, previous_end = previous_end + 1, reader.line_num
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                record: dict[str, Any] = {}
                for name, cell in zip(names, row, strict=False):
                    if name in REQUIRED or name in OPTIONAL:
                        if cell == "" and name in OPTIONAL:
                            continue
                        record[name] = _time(cell) if name in ("starts_at", "ends_at") else cell
                records.append(record)
                lines.append(start)
        except csv.Error as exc:
            raise CsvError(f"{path} line {reader.line_num}: {exc}") from exc
    return CallsFile(records, lines)


def problems_of(calls: CallsFile, labels: Collection[str] | None) -> list[RowProblem]:
    """Every row that breaks a rule, with its line and field (the server's own messages)."""
    found = []
    for record, line in zip(calls.records, calls.lines, strict=True):
        problem = check_record(record, labels=labels)
        if problem is not None:
            found.append(RowProblem(line, problem.field, problem.message))
    return found


def write_outcomes(path: Path, outcomes: Iterable[RecordOutcome], lines: list[int]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(OUTCOME_COLUMNS)
        for outcome in outcomes:
            writer.writerow(
                [
                    lines[outcome.index],
                    outcome.caller_number,
                    outcome.receiver_number,
                    outcome.outcome,
                    outcome.status,
                    outcome.reason or "",
                    outcome.field or "",
                    outcome.message or "",
                    outcome.batch_id or "",
                    outcome.record_id or "",
                ]
            )
