"""The migrations create exactly the tables the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from callerid.db import Base
from callerid.db.migrate import upgrade_async
from callerid.db.models import import_all_models


async def test_models_match_migrations(database_url: str) -> None:
    import_all_models()
    await upgrade_async(database_url)  # idempotent: a second upgrade is a no-op
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync_conn: compare_metadata(MigrationContext.configure(sync_conn), Base.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"
