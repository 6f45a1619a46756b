"""The objects one process shares between requests and background work, opened and closed in one place.

``Runtime.open`` is the one way a long-running process (``callerid serve``'s workers, ``callerid worker``) makes and
starts them; ``Runtime.close`` stops them in the reverse order. ``Runtime.build`` makes them without starting
anything, for short-lived users (CLI commands, tests, benches) that bring their own database.

A service that needs one of the shared objects (hub, signer, deliverer, limiter, caches, ...) together with anything
else of the runtime takes the runtime as its first parameter, then the session or transaction, then the rest
(``lookup(runtime, caller, ...)``); one that needs a single such object takes that object (``push_planned(hub,
...)``), and one that needs only the database and settings takes those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from callerid.accounts.ratelimit import RateLimiter
from callerid.accounts.service import TokenCache
from callerid.config import Settings
from callerid.db import Database

if TYPE_CHECKING:  # the domains' classes are imported where they are made (build, open): no import cycles
    # Only routes call runtime_of; services and the CLI import this module without the web framework.
    from starlette.requests import HTTPConnection

    from callerid.delivery.hub import LocalHub
    from callerid.delivery.service import DeviceAuthCache
    from callerid.identity.signer import Signer
    from callerid.jobs.runner import JobRunner
    from callerid.personalisation.storing import NewRecord
    from callerid.personalisation.writer import GroupInserter
    from callerid.webhooks.attempts import DeliveryStore
    from callerid.webhooks.delivery import Deliverer


@dataclass(eq=False, repr=False)  # repr: settings and caches would fill a screen
class Runtime:
    settings: Settings
    db: Database
    limiter: RateLimiter
    tokens: TokenCache  # business tokens recently resolved
    hub: LocalHub  # pushes to phones' streams (through Redis when several processes serve)
    signer: Signer  # signs caller-ID assertions with the active key
    deliverer: Deliverer  # the HTTP client of webhook deliveries and of the SMS gateway
    webhook_store: DeliveryStore  # batched reads and writes of webhook deliveries
    device_auth: DeviceAuthCache  # device tokens recently checked (caller-ID lookup)
    realtime_inserter: GroupInserter[NewRecord]  # the group commit of real-time call records (R1/R2)
    # Devices this process marked seen recently (id -> when): a phone reconnecting within a day costs no write.
    devices_seen: dict[str, datetime] = field(default_factory=dict)
    job_runner: JobRunner | None = None  # set by open(run_jobs=True)
    owns_db: bool = False  # open() made the database, so close() disposes of it

    @classmethod
    def build(cls, settings: Settings, db: Database) -> Runtime:
        """Every object of the process, none started: nothing here connects or spawns until first used."""
        from callerid.delivery.hub import create_hub
        from callerid.delivery.service import DeviceAuthCache
        from callerid.identity.signer import Signer
        from callerid.personalisation.storing import new_realtime_inserter
        from callerid.webhooks.attempts import DeliveryStore
        from callerid.webhooks.delivery import Deliverer

        return cls(
            settings=settings,
            db=db,
            limiter=RateLimiter(settings),
            tokens=TokenCache(settings.token_cache_seconds),
            hub=create_hub(settings.redis_url),
            signer=Signer(db, settings),
            deliverer=Deliverer(settings),
            webhook_store=DeliveryStore(db),
            device_auth=DeviceAuthCache(settings.device_auth_cache_seconds),
            realtime_inserter=new_realtime_inserter(db),
        )

    @classmethod
    async def open(cls, settings: Settings, *, run_jobs: bool) -> Runtime:
        """Make the process's objects and start them: the push hub, the signer (which makes the first signing key)
        and, with ``run_jobs``, the job runner last (its jobs push through the hub and sign)."""
        from callerid.jobs.runner import JobRunner

        runtime = cls.build(settings, Database(settings.database_url, pool_size=settings.database_pool_size))
        runtime.owns_db = True
        try:
            await runtime.hub.start()
            await runtime.signer.prepare()
            if run_jobs:
                runtime.job_runner = JobRunner(runtime)
                await runtime.job_runner.start()
        except BaseException:
            await runtime.close()
            raise
        return runtime

    async def close(self) -> None:
        """Stop what ``open`` started, in the reverse order (no job runs once the hub stops), and release what was
        made on first use (HTTP and Redis connections); the database last, if this runtime opened it."""
        if self.job_runner is not None:
            await self.job_runner.stop()
            self.job_runner = None
        await self.hub.stop()
        await self.signer.stop()
        await self.deliverer.aclose()
        await self.limiter.close()
        if self.owns_db:
            await self.db.dispose()


def runtime_of(connection: HTTPConnection) -> Runtime:
    runtime: Runtime = connection.app.state.runtime
    return runtime
