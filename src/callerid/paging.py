"""A page of a listing (SPEC §2.7): which one, how long, and where it starts."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    number: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.limit

    def total_pages(self, total_items: int) -> int:
        return math.ceil(total_items / self.limit) if total_items else 0


# The last page anyone can ask for: its offset (page x limit <= 10^9) stays far inside every database's integer
# range (an offset past BIGINT failed on PostgreSQL with a 500), and no account has that many rows.
MAX_PAGE = 1_000_000
