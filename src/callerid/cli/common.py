"""What every CLI command shares: settings, the schema check, JSON output and errors on stderr."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.text import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from callerid import secretbox
from callerid.config import Settings, load_settings
from callerid.db import Database
from callerid.db.migrate import upgrade
from callerid.failures import DomainError

try:  # POSIX; elsewhere concurrent first starts are not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")
JSON_OPTION = typer.Option(False, "--json", help="print one JSON object on stdout")

# soft_wrap: never break a long value (a URL, a curl command) across lines, even when not on a terminal.
_stdout = Console(soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Report an error on stderr and exit non-zero (nothing on stdout).

    Plain text on purpose: rich markup would swallow user input such as ``[bad]`` in the message.
    """
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def emit(payload: dict[str, Any], as_json: bool, *, title: str | None = None) -> None:
    """One JSON object on stdout with ``--json``; a readable rendering otherwise."""
    if as_json:
        # JSON is UTF-8 whatever the locale says, so write bytes: a non-ASCII name must not crash the output.
        sys.stdout.flush()
        sys.stdout.buffer.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.buffer.flush()
        return
    if title:
        _stdout.print(Text(title, style="bold"))
    _print_mapping(payload, indent="")


def _print_mapping(payload: dict[str, Any], indent: str) -> None:
    # Values are wrapped in Text so that rich never reads markup out of names or e-mails.
    for key, value in payload.items():
        if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
            # One block per item rather than a table: a table squeezed to 80 columns truncates the ids
            # an operator needs to copy.
            _stdout.print(Text(f"{indent}{key}: {len(value)}"))
            for row in value:
                for position, (field, cell) in enumerate(row.items()):
                    bullet = "- " if position == 0 else "  "
                    _stdout.print(Text(f"{indent}{bullet}{field}: {_cell(cell)}"))
        elif isinstance(value, dict) and value:
            _stdout.print(Text(f"{indent}{key}:"))
            _print_mapping(value, indent=indent + "  ")
        else:
            _stdout.print(Text(f"{indent}{key}: {_cell(value)}"))


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return "" if value is None else str(value)


def display_url(url: str) -> str:
    """A database URL fit to print: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


def settings_and_schema(*, phones: bool = False) -> Settings:
    """Settings from the environment, with the schema created or upgraded first.

    Refused before the database is touched when secrets at rest have no usable key (PostgreSQL without
    ``CALLERID_SECRET_KEY``, a malformed key); on SQLite the key file is generated here on first start. With
    ``phones`` (commands that register phones: ``serve``, ``devices register``), also when phones could not prove
    their number (PostgreSQL with ``otp`` and no SMS gateway; see callerid.delivery.sms.check_startup).
    """
    settings = load_settings()
    try:
        secretbox.check_startup(settings)
    except (secretbox.SecretKeyError, OSError) as exc:
        fail(f"cannot start: {exc}")
    if phones:
        from callerid.delivery.sms import SmsConfigError, check_startup

        try:
            check_startup(settings)
        except SmsConfigError as exc:
            fail(f"cannot start: {exc}")
    try:
        with _sqlite_migration_lock(settings.database_url):
            upgrade(settings.database_url)
    except Exception as exc:
        fail(f"cannot prepare the database at {display_url(settings.database_url)}: {_one_line(exc)}")
    return settings


@contextmanager
def _sqlite_migration_lock(url: str) -> Iterator[None]:
    """Serialise schema upgrades of one SQLite file across processes (``serve`` and ``worker`` started
    together on an empty folder would otherwise both create the same tables). PostgreSQL takes an
    advisory lock in the migration environment instead."""
    database = make_url(url).database if url.startswith("sqlite") else None
    if not database or database == ":memory:" or fcntl is None:
        yield
        return
    path = Path(database).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".migrate-lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_with_db(fn: Callable[[Settings, Database], Awaitable[T]], *, phones: bool = False) -> T:
    """Run ``fn`` with a ready database. A domain error ends the command with its message: this is the one place
    the CLI shows them (``error: <message>`` on stderr, exit code 1)."""
    settings = settings_and_schema(phones=phones)

    async def main() -> T:
        db = Database(settings.database_url, pool_size=2, null_pool=True)
        try:
            return await fn(settings, db)
        except DomainError as exc:
            fail(exc.message)
        finally:
            await db.dispose()

    return asyncio.run(main())


def parse_uuid_option(value: str, name: str) -> Any:
    from callerid.uuids import parse_uuid

    parsed = parse_uuid(value.strip())
    if parsed is None:
        fail(f"{name} {value!r} is not a UUID")
    return parsed
