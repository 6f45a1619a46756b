"""The pluggable verification step deciding whether a listing or delisting succeeds (SPEC §7.5).

The setting ``number_verifier`` names a ``module:function`` with the signature of ``accept_all``; it gets
the job's action (``list`` or ``delist``) and its numbers and returns the ones that failed, with a reason.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from functools import cache

Verifier = Callable[[str, Sequence[str]], Awaitable[dict[str, str]]]


async def accept_all(action: str, numbers: Sequence[str]) -> dict[str, str]:
    """Default: every listing and delisting succeeds."""
    return {}


@cache
def load_verifier(path: str) -> Verifier:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"number_verifier {path!r} is not 'module:function'")
    verifier: Verifier = getattr(importlib.import_module(module_name), attribute)
    return verifier
