"""A delivered batch's outcomes, as ``call_batches.outcomes`` keeps them: written once, when the batch is delivered,
instead of updating each of its records (a record row is never rewritten: on PostgreSQL an update is a new row
version and new index entries, on SQLite the same pages written again to the WAL).

Stored as ``[[reason, message, [start, stop, start, stop, ...]], ...]``: per distinct outcome (reason None:
delivered) the positions it applies to, as half-open ranges. A batch's records mostly share one or two outcomes,
so a delivered batch of 500 records adds a few dozen bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Outcome = tuple[str | None, str | None]  # (reason, message); reason None: delivered


def position_ranges(positions: Iterable[int]) -> list[int]:
    """Positions as flat half-open ranges: ``[0, 1, 2, 7]`` -> ``[0, 3, 7, 8]``."""
    ranges: list[int] = []
    for position in sorted(positions):
        if ranges and ranges[-1] == position:
            ranges[-1] = position + 1
        else:
            ranges += [position, position + 1]
    return ranges


def encode_outcomes(positions_by_outcome: Mapping[Outcome, Iterable[int]]) -> list[Any]:
    """The ``outcomes`` value for a batch whose records at the given positions got each outcome."""
    return [
        [reason, message, position_ranges(positions)] for (reason, message), positions in positions_by_outcome.items()
    ]


def outcomes_by_position(outcomes: list[Any] | None) -> dict[int, Outcome]:
    """Each position's outcome; empty for a batch not delivered yet."""
    found: dict[int, Outcome] = {}
    for reason, message, ranges in outcomes or ():
        outcome = (reason, message)
        for start, stop in zip(ranges[::2], ranges[1::2], strict=True):
            for position in range(start, stop):
                found[position] = outcome
    return found
