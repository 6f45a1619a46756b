"""``callerid accounts`` and ``callerid api-keys``."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from callerid.accounts import service
from callerid.accounts.models import ApiKey, ClientAccount
from callerid.cli.common import JSON_OPTION, emit, fail, parse_uuid_option, run_with_db
from callerid.config import Settings
from callerid.db import Database
from callerid.timefmt import iso_z

accounts_app = typer.Typer(help="Client accounts (business tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of an account (at most 5).", no_args_is_help=True)


def account_json(account: ClientAccount) -> dict[str, Any]:
    return {
        "client_account_id": str(account.id),
        "name": account.name,
        "timezone": account.timezone,
        "features": account.features,
        "created_at": iso_z(account.created_at),
    }


def issued_key_json(issued: service.IssuedKey) -> dict[str, Any]:
    """Exactly the contract's keys for create and regenerate: the secret is shown here and never again."""
    return {
        "key_id": str(issued.key.key_id),
        "api_key": issued.secret,
        "name": issued.key.name,
        "access": issued.key.access,
    }


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": str(key.key_id),
        "name": key.name,
        "description": key.description,
        "access": key.access,
        "created_by_email": key.created_by_email,
        "created_at": iso_z(key.created_at),
    }


@accounts_app.command("create")
def accounts_create(
    name: str = typer.Option(..., "--name", help="business name"),
    admin_email: str = typer.Option(..., "--admin-email", help="first admin's e-mail"),
    timezone: str = typer.Option("Asia/Kolkata", "--timezone", help="IANA timezone of the account"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an account and its first admin; the admin password is shown once (sign in at <base URL>/console)."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"timezone {timezone!r} is not an IANA timezone (e.g. Asia/Kolkata)")

    async def run(settings: Settings, db: Database) -> dict[str, Any]:
        async with db.transaction() as session:
            created = await service.create_account(session, name=name, admin_email=admin_email, timezone=timezone)
        return {
            "client_account_id": str(created.account.id),
            "name": created.account.name,
            "admin_email": created.admin_email,
            "admin_password": created.admin_password,
            "console_url": f"{settings.base_url}/console",
        }

    result = run_with_db(run)
    title = (
        f"Account created: sign in to the console at {result['console_url']} with admin_email and admin_password "
        "(the password is not shown again)"
    )
    emit(result, as_json, title=title)


@accounts_app.command("list")
def accounts_list(as_json: bool = JSON_OPTION) -> None:
    """List every account."""

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.session() as session:
            return {"accounts": [account_json(a) for a in await service.list_accounts(session)]}

    emit(run_with_db(run), as_json)


@keys_app.command("create")
def keys_create(
    account: str = typer.Option(..., "--account", help="client account id"),
    name: str = typer.Option(..., "--name"),
    description: str = typer.Option("", "--description"),
    access: str | None = typer.Option(
        None,
        "--access",
        help="e.g. call_personalisation=write,number_management=read,analytics=read (default: write on the four "
        "features; analytics, the analytics API, only when named)",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an API key; its secret is shown once."""
    account_id = parse_uuid_option(account, "account")

    async def run(settings: Settings, db: Database) -> dict[str, Any]:
        access_map = service.parse_access(access)
        async with db.transaction() as session:
            issued = await service.create_api_key(
                session, settings, account_id=account_id, name=name, description=description, access=access_map
            )
        return issued_key_json(issued)

    emit(run_with_db(run), as_json, title="API key created (the secret is not shown again)")


@keys_app.command("list")
def keys_list(account: str = typer.Option(..., "--account"), as_json: bool = JSON_OPTION) -> None:
    """List an account's API keys (never their secrets)."""
    account_id = parse_uuid_option(account, "account")

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.session() as session:
            keys = await service.list_api_keys(session, account_id)
        return {"client_account_id": str(account_id), "api_keys": [key_json(k) for k in keys]}

    emit(run_with_db(run), as_json)


@keys_app.command("regenerate")
def keys_regenerate(
    account: str = typer.Option(..., "--account"),
    key_id: str = typer.Option(..., "--key-id"),
    as_json: bool = JSON_OPTION,
) -> None:
    """New key_id and secret for a key; the old pair and its tokens stop working at once."""
    account_id = parse_uuid_option(account, "account")
    key_uuid = parse_uuid_option(key_id, "key-id")

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.transaction() as session:
            issued = await service.regenerate_api_key(session, account_id=account_id, key_id=key_uuid)
        return issued_key_json(issued)

    emit(run_with_db(run), as_json, title="API key regenerated (the secret is not shown again)")


@keys_app.command("delete")
def keys_delete(
    account: str = typer.Option(..., "--account"),
    key_id: str = typer.Option(..., "--key-id"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete a key; it and its tokens stop working at once."""
    account_id = parse_uuid_option(account, "account")
    key_uuid = parse_uuid_option(key_id, "key-id")

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.transaction() as session:
            await service.delete_api_key(session, account_id=account_id, key_id=key_uuid)
        return {"deleted": True, "key_id": str(key_uuid)}

    emit(run_with_db(run), as_json)
