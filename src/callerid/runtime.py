"""The objects one process shares between requests and background work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from callerid.accounts.ratelimit import RateLimiter
from callerid.config import Settings
from callerid.db import Database


@dataclass
class Runtime:
    settings: Settings
    db: Database
    limiter: RateLimiter
    # Domain singletons added by later capabilities (push hub, signer, mailer, ...), by name.
    services: dict[str, Any] = field(default_factory=dict)


def runtime_of(connection: HTTPConnection) -> Runtime:
    runtime: Runtime = connection.app.state.runtime
    return runtime
