"""Verification steps the tests plug in through the ``number_verifier`` setting."""

from __future__ import annotations

from collections.abc import Sequence


async def fail_ending_in_9(action: str, numbers: Sequence[str]) -> dict[str, str]:
    """Numbers ending in 9 fail, whatever the action."""
    return {number: f"{action} rejected by verification" for number in numbers if number.endswith("9")}
