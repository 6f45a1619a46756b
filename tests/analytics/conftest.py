"""What the analytics tests share: a clock pinned at noon UTC."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from callerid import clock
from tests.analytics.world import bad, good, world  # noqa: F401 - fixtures of the figures tests


@pytest.fixture(autouse=True)
def now() -> Iterator[datetime]:
    """The clock pinned at the last noon UTC (within the last day). Pinned at the real time, a test that counts
    signals made minutes apart split them over two days whenever it ran near midnight in the account's timezone
    (Asia/Kolkata: 18:30 UTC; CI at 18:31 UTC found it)."""
    real = clock.now()
    noon = real.replace(hour=12, minute=0, second=0, microsecond=0)
    pinned = noon if noon <= real else noon - timedelta(days=1)
    clock.freeze(pinned)
    yield pinned
    clock.reset()
