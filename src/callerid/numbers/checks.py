"""What every part of number management shares: its error, name checks, the account look-up, chunking."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.accounts import service as accounts
from callerid.display_text import display_problem, storage_problem
from callerid.failures import InvalidInput
from callerid.numbers.models import (
    DELISTING,
    FAILED,
    LISTED,
    PENDING,
)

log = structlog.get_logger("callerid.numbers")

JOB_KIND = "numbers.process"
# Bound parameters per IN (...) chunk; well under SQLite's and asyncpg's limits (32,766 / 32,767).
CHUNK = 1000
NUMBER_STATES_LOCK = "number-states"  # every change of numbers' states takes it (Database.lock)
# Number states NN shows (SPEC §5.9 lists pending/listed/delisting; failed is shown so a client sees why).
VISIBLE_STATES = (PENDING, LISTED, DELISTING, FAILED)


class NumbersError(InvalidInput):
    """A rule broken while building the tree or a feature set (CLI and console show the message)."""


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_name(name: str, what: str, *, displayed: bool = False) -> str:
    """A tree or feature-set name, stripped; ``displayed`` names (phones show them) follow the display-text rule,
    the others need only be storable (callerid.display_text)."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise NumbersError(f"{what} name must be between 1 and 100 characters")
    problem = display_problem(name, f"{what} name") if displayed else storage_problem(name, f"{what} name")
    if problem is not None:
        raise NumbersError(problem)
    return name


async def _account(session: AsyncSession, account_id: uuid.UUID) -> Any:
    try:
        return await accounts.get_account(session, account_id)
    except accounts.NotFound as exc:
        raise NumbersError(str(exc)) from exc
