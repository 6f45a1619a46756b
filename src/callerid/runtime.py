"""The objects one process shares between requests and background work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from callerid.accounts.ratelimit import RateLimiter
from callerid.accounts.service import TokenCache
from callerid.config import Settings
from callerid.db import Database

if TYPE_CHECKING:  # only routes call runtime_of; services and the CLI import this module without the web framework
    from starlette.requests import HTTPConnection


@dataclass
class Runtime:
    settings: Settings
    db: Database
    limiter: RateLimiter
    tokens: TokenCache
    # Domain singletons added by later capabilities (push hub, signer, mailer, ...), by name.
    services: dict[str, Any] = field(default_factory=dict)


def runtime_of(connection: HTTPConnection) -> Runtime:
    runtime: Runtime = connection.app.state.runtime
    return runtime
