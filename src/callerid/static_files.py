"""Static files addressed by content hash, shared by the console and the API docs pages.

A page links a file as ``<path>?v=<fingerprint>``: the fingerprint changes whenever the file does, so the file can
be cached for good (``IMMUTABLE_CACHE``) and an upgraded server's files are still picked up at once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

IMMUTABLE_CACHE = "public, max-age=31536000, immutable"


def fingerprint(path: Path) -> str:
    """The first 12 hex digits of the file's SHA-256: the ``?v=`` of its URL."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
