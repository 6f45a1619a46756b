"""``callerid departments|operations|processes|feature-sets create`` (and ``feature-sets set-status|secure-branding``):
the organisation tree and feature sets."""

from __future__ import annotations

from typing import Any

import typer

from callerid.cli.common import JSON_OPTION, emit, fail, parse_uuid_option, run_with_db
from callerid.config import Settings
from callerid.db import Database
from callerid.numbers import schemas, service
from callerid.numbers.models import FEATURE_SET_STATUSES

departments_app = typer.Typer(help="Departments (top of an account's organisation tree).", no_args_is_help=True)
operations_app = typer.Typer(help="Operations of a department, bound to a calling operation.", no_args_is_help=True)
processes_app = typer.Typer(help="Processes of an operation (and sub-processes).", no_args_is_help=True)
feature_sets_app = typer.Typer(help="Feature sets of a process or sub-process.", no_args_is_help=True)

ACCOUNT_OPTION = typer.Option(..., "--account", help="client account id")


def _run(fn: Any) -> dict[str, Any]:
    """Run ``fn(session)`` in one write transaction; rule violations end the command with their message."""

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.transaction() as session:
            result: dict[str, Any] = await fn(session)
            return result

    return run_with_db(run)


@departments_app.command("create")
def departments_create(
    account: str = ACCOUNT_OPTION,
    name: str = typer.Option(..., "--name"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a department."""
    account_id = parse_uuid_option(account, "--account")

    async def create(session: Any) -> dict[str, Any]:
        return schemas.department_json(await service.create_department(session, account_id=account_id, name=name))

    emit(_run(create), as_json, title="Department created")


@operations_app.command("create")
def operations_create(
    account: str = ACCOUNT_OPTION,
    department: str = typer.Option(..., "--department", help="department id"),
    name: str = typer.Option(..., "--name"),
    calling_operation: str = typer.Option(
        ..., "--calling-operation", help="catalogue entry (Delivery, Sales, Collections, ...); created on first use"
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an operation under a department."""
    account_id = parse_uuid_option(account, "--account")
    department_id = parse_uuid_option(department, "--department")

    async def create(session: Any) -> dict[str, Any]:
        operation, entry = await service.create_operation(
            session,
            account_id=account_id,
            department_id=department_id,
            name=name,
            calling_operation_name=calling_operation,
        )
        return schemas.operation_json(operation, entry)

    emit(_run(create), as_json, title="Operation created")


@processes_app.command("create")
def processes_create(
    account: str = ACCOUNT_OPTION,
    operation: str = typer.Option(..., "--operation", help="operation id"),
    name: str = typer.Option(..., "--name"),
    parent: str | None = typer.Option(None, "--parent", help="process id: create a sub-process of it"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a process (or, with --parent, a sub-process)."""
    account_id = parse_uuid_option(account, "--account")
    operation_id = parse_uuid_option(operation, "--operation")
    parent_id = parse_uuid_option(parent, "--parent") if parent is not None else None

    async def create(session: Any) -> dict[str, Any]:
        process = await service.create_process(
            session, account_id=account_id, operation_id=operation_id, name=name, parent_id=parent_id
        )
        return schemas.process_json(process)

    emit(_run(create), as_json, title="Process created")


@feature_sets_app.command("create")
def feature_sets_create(
    account: str = ACCOUNT_OPTION,
    process: str = typer.Option(..., "--process", help="process or sub-process id"),
    name: str = typer.Option(..., "--name"),
    label: str = typer.Option(..., "--label", help="label id of this account (dynamic or static)"),
    call_reason: str | None = typer.Option(None, "--call-reason", help="static call reason (10-100 characters)"),
    call_me_back: bool = typer.Option(False, "--call-me-back", help="enable Call Me Back"),
    survey: bool = typer.Option(False, "--survey", help="enable the survey"),
    description: str = typer.Option("", "--description"),
    cmb_config_name: str | None = typer.Option(
        None, "--cmb-config-name", help="with --call-me-back: cmb_config_name (default: Call Me Back)"
    ),
    slot_picker: bool = typer.Option(False, "--slot-picker", help="with --call-me-back: the user picks the slot"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a draft feature set; prints it as FS returns it."""
    account_id = parse_uuid_option(account, "--account")
    process_id = parse_uuid_option(process, "--process")
    label_id = parse_uuid_option(label, "--label")
    if (cmb_config_name is not None or slot_picker) and not call_me_back:
        fail("--cmb-config-name and --slot-picker need --call-me-back")

    async def create(session: Any) -> dict[str, Any]:
        feature_set = await service.create_feature_set(
            session,
            account_id=account_id,
            process_id=process_id,
            label_id=label_id,
            name=name,
            description=description,
            call_reason=call_reason,
            call_me_back=call_me_back,
            survey=survey,
        )
        if call_me_back:  # the Call Me Back configuration (engagement domain), defaults unless given
            from callerid.engagement import service as engagement

            await engagement.set_cmb_config(
                session,
                account_id=account_id,
                feature_set_id=feature_set.id,
                name=cmb_config_name,
                slot_picker=slot_picker,
            )
        return schemas.feature_set_json(await service.feature_set_view(session, feature_set.id))

    emit(_run(create), as_json, title="Feature set created")


@feature_sets_app.command("set-status")
def feature_sets_set_status(
    account: str = ACCOUNT_OPTION,
    feature_set: str = typer.Option(..., "--feature-set", help="feature set id"),
    status: str = typer.Option(..., "--status", help=" / ".join(FEATURE_SET_STATUSES)),
    as_json: bool = JSON_OPTION,
) -> None:
    """Set a feature set's status (numbers cannot be listed into an archived set)."""
    account_id = parse_uuid_option(account, "--account")
    feature_set_id = parse_uuid_option(feature_set, "--feature-set")

    async def change(session: Any) -> dict[str, Any]:
        await service.set_feature_set_status(
            session, account_id=account_id, feature_set_id=feature_set_id, status=status
        )
        return schemas.feature_set_json(await service.feature_set_view(session, feature_set_id))

    emit(_run(change), as_json, title="Feature set updated")


@feature_sets_app.command("secure-branding")
def feature_sets_secure_branding(
    feature_set_id: str = typer.Argument(..., help="feature set id"),
    on: bool = typer.Option(
        ..., "--on/--off", help="show the identity only for calls announced with a call record (--on), or always"
    ),
    account: str = ACCOUNT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Turn secure branding on or off: when on, other lookups of its numbers answer unverified (blocked attempts)."""
    account_id = parse_uuid_option(account, "--account")
    set_id = parse_uuid_option(feature_set_id, "FEATURE_SET_ID")

    async def change(session: Any) -> dict[str, Any]:
        changed = await service.set_secure_branding(session, account_id=account_id, feature_set_id=set_id, enabled=on)
        return {
            **schemas.feature_set_json(await service.feature_set_view(session, set_id)),
            "secure_branding": changed.secure_branding,
        }

    emit(_run(change), as_json, title="Feature set updated")
