"""``callerid labels``: create and list an account's labels (what the console's Caller ID page does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from callerid.cli.common import JSON_OPTION, emit, fail, parse_uuid_option, run_with_db
from callerid.config import Settings
from callerid.db import Database
from callerid.labels import legacy_logos, service
from callerid.labels.models import DYNAMIC
from callerid.paging import Page

labels_app = typer.Typer(help="Labels (name + logo) shown on the receiver's phone.", no_args_is_help=True)


@labels_app.command("create")
def labels_create(
    account: str = typer.Option(..., "--account", help="client account id"),
    name: str = typer.Option(..., "--name", help="3-40 characters"),
    logo: Path = typer.Option(..., "--logo", help="PNG file, exactly 200x200 pixels, under 2 MB"),
    category: int | None = typer.Option(
        None, "--category", help="category number from the catalogue (see `callerid catalogue list`)"
    ),
    sub_category: int | None = typer.Option(
        None, "--sub-category", help="sub-category number of that category (see `callerid catalogue list`)"
    ),
    label_type: str = typer.Option(DYNAMIC, "--type", help="dynamic (call records) or static (feature sets)"),
    created_by: str | None = typer.Option(None, "--created-by", help="creator's e-mail (default: the account admin)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a label; prints it as ``GET /clients/{id}/labels`` returns it."""
    account_id = parse_uuid_option(account, "account")
    try:
        data = logo.read_bytes()
    except OSError as exc:
        fail(f"cannot read logo {str(logo)!r}: {exc.strerror or exc}")

    async def run(settings: Settings, db: Database) -> dict[str, Any]:
        async with db.transaction() as session:
            label = await service.create_label(
                session,
                settings,
                account_id=account_id,
                name=name,
                logo=data,
                label_type=label_type,
                category=category,
                sub_category=sub_category,
                created_by_email=created_by,
            )
        return service.label_json(settings, label)

    emit(run_with_db(run), as_json, title="Label created")


@labels_app.command("list")
def labels_list(
    account: str = typer.Option(..., "--account", help="client account id"),
    page: int = typer.Option(1, "--page", min=1),
    limit: int = typer.Option(1000, "--limit", min=1, max=1000),
    as_json: bool = JSON_OPTION,
) -> None:
    """List an account's dynamic labels, newest first."""
    account_id = parse_uuid_option(account, "account")

    async def run(settings: Settings, db: Database) -> dict[str, Any]:
        async with db.session() as session:
            labels = await service.list_dynamic_labels(session, account_id, Page(page, limit))
        return {"client_account_id": str(account_id), "labels": [service.label_json(settings, lb) for lb in labels]}

    emit(run_with_db(run), as_json)


@labels_app.command("import-logos")
def labels_import_logos(as_json: bool = JSON_OPTION) -> None:
    """Move this host's logo files (<data dir>/logos, from versions before logos lived in the database) into the
    database, for the labels still without a logo. The upgrade moved the files of the host that ran it; run this on
    every other host that received uploads. Safe to run again."""

    async def run(settings: Settings, db: Database) -> dict[str, Any]:
        folder = legacy_logos.logo_dir(settings.data_dir)
        async with db.transaction() as session:
            connection = await session.connection()
            result = await connection.run_sync(lambda sync: legacy_logos.move_logo_files(sync, folder))
        return {"folder": str(folder), "moved": result.moved, "stored": result.stored, "missing": result.missing}

    emit(run_with_db(run), as_json, title="Logo files imported")
