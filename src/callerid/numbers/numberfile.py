"""Reading a list of numbers a person pasted or uploaded (console "Manage listing"): a CSV with a header row naming
the number column, or one number per line. Each problem names its line, so a person can fix the file.

The values are passed on as written (stripped): whether each is a phone number is decided by the listing code like
for NL/ND (``invalid_numbers``, echoed as sent); this module only reports such lines early.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from callerid.failures import InvalidInput
from callerid.phone import normalise_phone

# Header names of the number column (compared lower-case, spaces and dashes as underscores).
NUMBER_COLUMNS = ("phone_number", "phone_numbers", "phone", "number", "msisdn", "mobile", "phone_no")


@dataclass(frozen=True)
class LineProblem:
    """A line that is not a number: ``skipped`` when nothing of it is passed on (else it lands in invalid_numbers)."""

    line: int
    value: str
    message: str
    skipped: bool


@dataclass
class NumberRows:
    """The values read, in file order, and the lines that are not (or do not hold) a phone number."""

    values: list[str] = field(default_factory=list)
    problems: list[LineProblem] = field(default_factory=list)
    has_header: bool = False

    @property
    def skipped(self) -> int:
        """Lines left out altogether (the others are passed on, invalid ones too)."""
        return sum(1 for problem in self.problems if problem.skipped)


def decode_upload(data: bytes) -> str:
    """An uploaded file as text: UTF-8 (with or without a byte-order mark); anything else is refused."""
    if b"\x00" in data:
        raise InvalidInput("file must be a CSV or text file (this one is binary)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("file must be UTF-8 text (save the CSV as UTF-8)") from None


def _column_name(cell: str) -> str:
    return cell.strip().lower().replace(" ", "_").replace("-", "_")


def _looks_like_header(cells: list[str]) -> bool:
    return any(any(ch.isalpha() for ch in cell) for cell in cells) and all(
        normalise_phone(cell) is None for cell in cells
    )


def _clean(cell: str) -> str:
    # A quoted CSV cell may span lines; a number never does, and the value travels one per line afterwards.
    return " ".join(cell.split())


def read_numbers(text: str) -> NumberRows:
    """The numbers of ``text``: a CSV whose first row names the number column (``phone_number``, ``number``, ...),
    or one number per line (a trailing comma or spaces are fine). Blank lines are ignored. A first line of one word
    is not taken for a header (it may be a mistyped number): it is reported like any line that is not a number."""
    rows = NumberRows()
    reader = csv.reader(io.StringIO(text))
    column: int | None = None
    first = True
    try:
        for cells in reader:
            line = reader.line_num
            stripped = [_clean(cell) for cell in cells]
            filled = [cell for cell in stripped if cell]
            if not filled:
                continue
            if first:
                first = False
                names = [_column_name(cell) for cell in stripped]
                found = [i for i, name in enumerate(names) if name in NUMBER_COLUMNS]
                if found:
                    column = found[0]
                    rows.has_header = True
                    continue
                if len(filled) > 1 and _looks_like_header(stripped):
                    raise InvalidInput(f"line {line}: the header names no number column; call it phone_number")
            if column is not None:
                value = stripped[column] if column < len(stripped) else ""
                if not value:
                    rows.problems.append(LineProblem(line, "", "no number in the number column; skipped", skipped=True))
                    continue
            elif len(filled) > 1:
                rows.problems.append(
                    LineProblem(
                        line, ", ".join(filled), "more than one value (one number per line, or a header row)", True
                    )
                )
                continue
            else:
                value = filled[0]
            if normalise_phone(value) is None:
                rows.problems.append(
                    LineProblem(line, value, "not a phone number (10-15 digits, an optional leading +)", False)
                )
            rows.values.append(value)
    except csv.Error as exc:
        raise InvalidInput(f"line {reader.line_num}: not readable as CSV ({exc})") from None
    return rows
