"""Create or upgrade the schema with Alembic (``callerid migrate``; also run by ``serve`` and the CLI)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "callerid.db:migrations")
    # The URL is passed as an attribute, not an option, so '%' in passwords needs no escaping.
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str) -> None:
    """Bring the database to the newest revision of every domain's migration branch."""
    command.upgrade(alembic_config(database_url), "heads")


async def upgrade_async(database_url: str) -> None:
    """``upgrade`` from async code: Alembic's environment runs its own event loop, so use a thread."""
    import asyncio

    await asyncio.to_thread(upgrade, database_url)
