"""Alembic environment: runs migrations on an async engine, serialised across processes."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from callerid.db.base import Base
from callerid.db.models import import_all_models

import_all_models()
config = context.config
target_metadata = Base.metadata

# Any fixed number: every process that migrates takes this PostgreSQL advisory lock first, so that
# `serve` and `worker` started together do not race to create the same tables.
_PG_MIGRATION_LOCK = 7_268_431


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_lock({_PG_MIGRATION_LOCK})"))
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_unlock({_PG_MIGRATION_LOCK})"))
            connection.commit()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _url() -> str:
    url: Any = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL given to the migrations")
    return str(url)


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async(_url()))
