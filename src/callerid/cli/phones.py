"""``callerid devices ...`` (register a phone as the app does), ``callerid app-credentials ...`` and
``callerid sms ...`` (how phones prove their number) and ``callerid signing-keys ...`` (assertion signing keys)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import typer

from callerid.cli.common import JSON_OPTION, emit, fail, run_with_db
from callerid.config import Settings
from callerid.db import Database
from callerid.delivery.hub import close_device_via_redis
from callerid.runtime import Runtime
from callerid.timefmt import iso_z

devices_app = typer.Typer(help="Phones registered for pushes (what the app does with POST /app/v1/devices).")
signing_keys_app = typer.Typer(help="Keys that sign caller-ID assertions (published at /.well-known/jwks.json).")
app_credentials_app = typer.Typer(
    help="Credentials of app vendors' servers that register phones (CALLERID_DEVICE_VERIFIER=trusted_backend).",
    no_args_is_help=True,
)
sms_app = typer.Typer(
    help="Registration codes sent to phones by SMS (CALLERID_DEVICE_VERIFIER=otp).", no_args_is_help=True
)
# The client address the CLI's code limits count (per-number limits are shared with the API).
CLI = "cli"


@asynccontextmanager
async def _runtime(settings: Settings, db: Database) -> AsyncIterator[Runtime]:
    """The process's objects over the command's database, none started; closed after (the SMS gateway's HTTP client,
    Redis connections), the database left to ``run_with_db``."""
    from callerid.ops.logging import configure_logging

    configure_logging(settings.log_level, settings.log_json)  # on stderr: stdout holds only the JSON answer
    runtime = Runtime.build(settings, db)
    try:
        yield runtime
    finally:
        await runtime.close()


@devices_app.command("register")
def register(
    number: str = typer.Option(..., "--number", help="the phone's number"),
    platform: str = typer.Option(..., "--platform", help="android or ios"),
    app_version: str = typer.Option(..., "--app-version", help="e.g. 1.10.0"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register (or re-register, replacing) the device of a number; prints its device_id and device_token.

    The number is proven as CALLERID_DEVICE_VERIFIER says. otp (the default): a code is sent to the number by SMS
    and nothing changes until `callerid devices verify --registration-id ID --code CODE` confirms it (printed
    here). On the embedded default without an SMS gateway (SQLite, no CALLERID_SMS_WEBHOOK_URL) the code is in the
    development SMS outbox, so this command confirms it itself: one call registers. trusted_backend and none:
    registered at once (the operator vouches for the number).
    """
    from callerid.delivery.service import register_device
    from callerid.delivery.verification import OTP, confirm_code, start_registration

    async def run(settings: Settings, db: Database) -> tuple[dict[str, object], str]:
        async with _runtime(settings, db) as runtime:
            if settings.device_verifier == OTP:
                sent = await start_registration(
                    runtime, phone_number=number, platform=platform, app_version=app_version, client_address=CLI
                )
                if sent.demo_code is None:
                    verify = f"callerid devices verify --registration-id {sent.registration_id} --code <code>"
                    return {**sent.to_json(), "verify": verify}, "Code sent by SMS: confirm it with the verify command"
                registered = await confirm_code(
                    runtime, registration_id=str(sent.registration_id), code=sent.demo_code, client_address=CLI
                )
            else:
                async with db.transaction() as session:
                    registered = await register_device(
                        session, phone_number=number, platform=platform, app_version=app_version
                    )
        await close_device_via_redis(settings.redis_url, registered.replaced_device_id)
        return {"device_id": registered.device_id, "device_token": registered.device_token}, "Device registered"

    payload, title = run_with_db(run, phones=True)
    emit(payload, as_json, title=title)


@devices_app.command("verify")
def verify(
    registration_id: str = typer.Option(..., "--registration-id", help="printed by `devices register`"),
    code: str = typer.Option(..., "--code", help="the 6 digits the number received"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Confirm the SMS code of a pending registration (otp): registers the device, replacing the number's old one."""
    from callerid.delivery.verification import confirm_code

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        async with _runtime(settings, db) as runtime:
            registered = await confirm_code(runtime, registration_id=registration_id, code=code, client_address=CLI)
        await close_device_via_redis(settings.redis_url, registered.replaced_device_id)
        return {"device_id": registered.device_id, "device_token": registered.device_token}

    emit(run_with_db(run), as_json, title="Device registered")


@devices_app.command("resend")
def resend(
    registration_id: str = typer.Option(..., "--registration-id", help="printed by `devices register`"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send a new code for a pending registration (otp); the previous code stops working."""
    from callerid.delivery.verification import resend_code

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        async with _runtime(settings, db) as runtime:
            sent = await resend_code(runtime, registration_id=registration_id, client_address=CLI)
        return sent.to_json()

    emit(run_with_db(run, phones=True), as_json, title="Code sent")


@devices_app.command("unregister")
def unregister(number: str = typer.Option(..., "--number"), as_json: bool = JSON_OPTION) -> None:
    """Forget the device of a number (as if the app were uninstalled)."""
    from callerid.delivery.service import unregister_number

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        async with db.transaction() as session:
            device_id = await unregister_number(session, number)
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


@app_credentials_app.command("create")
def create_app_credential(
    name: str = typer.Option(..., "--name", help="whose server it is, e.g. acme-app-backend"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Issue a credential to an app vendor's server; prints it once (only its hash is stored).

    That server then registers phones whose numbers it verified itself: POST /app/v1/devices with
    `Authorization: Bearer <credential>` (when CALLERID_DEVICE_VERIFIER=trusted_backend).
    """
    from callerid.delivery.app_credentials import create_credential, credential_json

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        async with db.transaction() as session:
            issued = await create_credential(session, name)
        return {**credential_json(issued.credential), "credential": issued.secret}

    emit(run_with_db(run), as_json, title="App credential created (shown only now)")


@app_credentials_app.command("list")
def list_app_credentials(as_json: bool = JSON_OPTION) -> None:
    """Every app credential, active and revoked (never the credentials themselves)."""
    from callerid.delivery.app_credentials import credential_json, list_credentials

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        async with db.session() as session:
            return {"app_credentials": [credential_json(row) for row in await list_credentials(session)]}

    emit(run_with_db(run), as_json, title="App credentials")


@app_credentials_app.command("revoke")
def revoke_app_credential(
    credential: str = typer.Option(..., "--id", help="the credential's id, or its name"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke an app credential: its server can no longer register phones (devices it registered stay)."""
    from callerid.delivery.app_credentials import credential_json, revoke_credential

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        async with db.transaction() as session:
            row = await revoke_credential(session, credential)
        return credential_json(row)

    emit(run_with_db(run), as_json, title="App credential revoked")


@sms_app.command("outbox")
def sms_outbox(
    number: str | None = typer.Option(None, "--number", help="only SMS to this number"),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="at most this many"),
    as_json: bool = JSON_OPTION,
) -> None:
    """The newest development SMS first: registration codes kept when no SMS gateway is configured.

    Only the embedded default (SQLite, no CALLERID_SMS_WEBHOOK_URL) keeps codes here (for a day); with an SMS
    gateway nothing is ever written here. E.g. the newest code for a number:
    callerid sms outbox --number 919876543210 --limit 1
    """
    from callerid.delivery.sms import list_outbox
    from callerid.phone import normalise_phone

    wanted = None
    if number is not None:
        wanted = normalise_phone(number)
        if wanted is None:
            fail("--number is not a phone number")

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        async with db.session() as session:
            rows = await list_outbox(session, limit=limit, phone_number=wanted)
        return {
            "sms": [
                {
                    "to": row.phone_number,
                    "message": row.message,
                    "code": row.code,
                    "registration_id": str(row.registration_id),
                    "created_at": iso_z(row.created_at),
                }
                for row in rows
            ]
        }

    emit(run_with_db(run), as_json, title="Development SMS outbox")


@sms_app.command("generate-secret")
def sms_generate_secret(as_json: bool = JSON_OPTION) -> None:
    """A new whsec_ secret for CALLERID_SMS_WEBHOOK_SECRET (give the same to the SMS gateway); nothing is stored."""
    from callerid.webhooks.signing import new_secret

    emit({"secret": new_secret()}, as_json, title="CALLERID_SMS_WEBHOOK_SECRET")
