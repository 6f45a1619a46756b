"""What every CLI command shares: settings, the schema check, JSON output and errors on stderr."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from callerid.config import Settings, load_settings
from callerid.db import Database
from callerid.db.migrate import upgrade

T = TypeVar("T")
JSON_OPTION = typer.Option(False, "--json", help="print one JSON object on stdout")

_stderr = Console(stderr=True)
_stdout = Console()


def fail(message: str, code: int = 1) -> NoReturn:
    """Report an error on stderr and exit non-zero."""
    _stderr.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def emit(payload: dict[str, Any], as_json: bool, *, title: str | None = None) -> None:
    """One JSON object on stdout with ``--json``; a readable rendering otherwise."""
    if as_json:
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
        sys.stdout.flush()
        return
    if title:
        _stdout.print(f"[bold]{title}[/]")
    for key, value in payload.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            table = Table(title=key)
            for column in value[0]:
                table.add_column(str(column))
            for row in value:
                table.add_row(*(_cell(row.get(c)) for c in value[0]))
            _stdout.print(table)
        else:
            _stdout.print(f"{key}: {_cell(value)}", highlight=False)


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return "" if value is None else str(value)


def settings_and_schema() -> Settings:
    """Settings from the environment, with the schema created or upgraded first."""
    settings = load_settings()
    if settings.is_sqlite:
        _ensure_sqlite_dir(settings.database_url)
    try:
        upgrade(settings.database_url)
    except Exception as exc:
        fail(f"cannot prepare the database at {_redacted(settings.database_url)}: {exc}")
    return settings


def _ensure_sqlite_dir(url: str) -> None:
    from pathlib import Path

    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def run_with_db(fn: Callable[[Settings, Database], Awaitable[T]]) -> T:
    """Run ``fn`` with a ready database; domain errors end the command with their message."""
    settings = settings_and_schema()

    async def main() -> T:
        db = Database(settings.database_url, pool_size=2, null_pool=True)
        try:
            return await fn(settings, db)
        finally:
            await db.dispose()

    return asyncio.run(main())


def parse_uuid_option(value: str, name: str) -> Any:
    from callerid.http import parse_uuid

    parsed = parse_uuid(value.strip())
    if parsed is None:
        fail(f"{name} {value!r} is not a UUID")
    return parsed
