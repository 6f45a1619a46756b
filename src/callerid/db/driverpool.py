"""PostgreSQL: asyncpg's own connection pool for the hot paths (point reads and ``Database.write``).

Checking a connection out of SQLAlchemy's pool and back (``engine.connect()``, the raw connection, ``close()``)
cost more Python time than the query it ran; asyncpg's pool hands a connection over in a few microseconds. The
statements are SQLAlchemy's, compiled once (``db.rawsql``), so this pool must decode values as SQLAlchemy's asyncpg
dialect sets its connections up to: JSON and JSONB as SQLAlchemy's codecs do (``setup_asyncpg_json_codec`` and
``setup_asyncpg_jsonb_codec``), everything else with asyncpg's defaults, as SQLAlchemy leaves them.

Made at the first use, on the running event loop (a pool belongs to one loop); ``close()`` when the database is
disposed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from sqlalchemy.engine import make_url


def _dsn(url: str) -> str:
    """SQLAlchemy's URL (``postgresql+asyncpg://...``) as asyncpg's."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _setup_codecs(connection: Any) -> None:
    await connection.set_type_codec(
        "json", encoder=str.encode, decoder=lambda value: orjson.loads(value), schema="pg_catalog", format="binary"
    )
    await connection.set_type_codec(
        "jsonb",
        encoder=lambda value: b"\x01" + value.encode(),
        decoder=lambda value: orjson.loads(value[1:]),
        schema="pg_catalog",
        format="binary",
    )


async def _keep_session(_connection: Any) -> None:
    """What a connection going back to the pool needs beyond asyncpg's own clean-up (an open transaction rolled
    back, listeners dropped): nothing. asyncpg's default also sends ``RESET ALL``, ``UNLISTEN *``, advisory
    unlocks and ``CLOSE ALL`` on every release, a round trip that cost 10 % of an R2 request's CPU; these
    connections never change session state (no SET, no LISTEN, only transaction-scoped advisory locks)."""


class DriverPool:
    def __init__(self, url: str, max_size: int):
        self._dsn = _dsn(url)
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def _get(self) -> asyncpg.Pool:
        if self._pool is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn, min_size=1, max_size=self._max_size, init=_setup_codecs, reset=_keep_session
                    )
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        pool = self._pool or await self._get()
        async with pool.acquire() as connection:
            yield connection

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
