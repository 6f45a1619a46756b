"""``callerid devices ...`` (register a phone as the app does) and ``callerid keys ...`` (assertion signing keys)."""

from __future__ import annotations

import typer

from callerid.cli.common import JSON_OPTION, emit, fail, run_with_db
from callerid.config import Settings
from callerid.db import Database
from callerid.delivery.hub import close_device_via_redis
from callerid.errors import ApiError

devices_app = typer.Typer(help="Phones registered for pushes (what the app does with POST /app/v1/devices).")
signing_keys_app = typer.Typer(help="Keys that sign caller-ID assertions (published at /.well-known/jwks.json).")


@devices_app.command("register")
def register(
    number: str = typer.Option(..., "--number", help="the phone's number"),
    platform: str = typer.Option(..., "--platform", help="android or ios"),
    app_version: str = typer.Option(..., "--app-version", help="e.g. 1.10.0"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register (or re-register, replacing) the device of a number; prints its device_id and device_token."""
    from callerid.delivery.service import register_device

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        try:
            async with db.transaction() as session:
                registered = await register_device(
                    session, phone_number=number, platform=platform, app_version=app_version
                )
        except ApiError as exc:
            fail(exc.message)
        await close_device_via_redis(settings.redis_url, registered.replaced_device_id)
        return {"device_id": registered.device_id, "device_token": registered.device_token}

    emit(run_with_db(run), as_json, title="Device registered")


@devices_app.command("unregister")
def unregister(number: str = typer.Option(..., "--number"), as_json: bool = JSON_OPTION) -> None:
    """Forget the device of a number (as if the app were uninstalled)."""
    from callerid.delivery.service import unregister_number

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        try:
            async with db.transaction() as session:
                device_id = await unregister_number(session, number)
        except ApiError as exc:
            fail(exc.message)
        if device_id is None:
            fail(f"no device is registered for {number}")
        await close_device_via_redis(settings.redis_url, device_id)
        return {"unregistered": True, "device_id": device_id}

    emit(run_with_db(run), as_json, title="Device unregistered")


@signing_keys_app.command("rotate")
def rotate(as_json: bool = JSON_OPTION) -> None:
    """Make a new signing key active. Old keys stay in the JWKS until their assertions have expired."""
    from callerid.identity.signer import rotate_keys

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        async with db.transaction() as session:
            rotation = await rotate_keys(session)
        return {"active_kid": rotation.kid, "retired_kids": rotation.retired}

    emit(run_with_db(run), as_json, title="Signing key rotated")


@signing_keys_app.command("list")
def list_keys(as_json: bool = JSON_OPTION) -> None:
    """Signing keys: which is active, which are retired and whether they are still published."""
    from callerid.identity.signer import list_keys as list_signing_keys

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        async with db.session() as session:
            return {"keys": await list_signing_keys(session, settings)}

    emit(run_with_db(run), as_json, title="Signing keys")
