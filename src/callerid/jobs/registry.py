"""Job kinds and their handlers. Domains register handlers next to their own code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from callerid.config import Settings

if TYPE_CHECKING:
    from callerid.db import Database
    from callerid.runtime import Runtime


class RetryLater(Exception):
    """Raised by a handler to run the job again later without counting a failure."""

    def __init__(self, delay: timedelta | None = None, at: datetime | None = None):
        super().__init__("retry later")
        self.delay = delay
        self.at = at


@dataclass
class JobContext:
    """What a handler gets besides its payload."""

    runtime: Runtime  # the process's objects (database, settings, push hub, webhook deliverer, ...)
    job_id: int
    attempt: int  # 1 on the first run

    @property
    def db(self) -> Database:
        return self.runtime.db

    @property
    def settings(self) -> Settings:
        return self.runtime.settings


JobHandler = Callable[[JobContext, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Periodic:
    kind: str
    every: Callable[[Settings], timedelta]


class Registry:
    def __init__(self) -> None:
        self.handlers: dict[str, JobHandler] = {}
        self.periodic: dict[str, Periodic] = {}

    def handler(
        self, kind: str, *, every: Callable[[Settings], timedelta] | None = None
    ) -> Callable[[JobHandler], JobHandler]:
        """Register ``fn`` for ``kind``; with ``every``, the runner also keeps one such job scheduled."""

        def register(fn: JobHandler) -> JobHandler:
            if kind in self.handlers and self.handlers[kind] is not fn:
                raise ValueError(f"job kind {kind!r} registered twice")
            self.handlers[kind] = fn
            if every is not None:
                self.periodic[kind] = Periodic(kind, every)
            return fn

        return register


registry = Registry()
handler = registry.handler
