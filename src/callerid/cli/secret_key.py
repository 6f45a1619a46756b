"""``callerid secret-key ...``: the key that encrypts webhook signing secrets at rest (``CALLERID_SECRET_KEY``).

Rotation, step by step: ``callerid secret-key generate``; put the new key first in ``CALLERID_SECRET_KEY`` and
keep the old one after it (``new,old``); restart the processes; ``callerid secret-key rotate``; then drop the old
key and restart again. Values still under a dropped key no longer decrypt, so rotate before dropping.
"""

from __future__ import annotations

import sys

import typer

from callerid import secretbox
from callerid.cli.common import JSON_OPTION, emit, fail, run_with_db
from callerid.config import Settings
from callerid.db import Database

secret_key_app = typer.Typer(help="The key that encrypts webhook signing secrets at rest (CALLERID_SECRET_KEY).")


@secret_key_app.command("generate")
def generate(as_json: bool = JSON_OPTION) -> None:
    """Print a new key (base64 of 32 random bytes) for CALLERID_SECRET_KEY; nothing is stored."""
    key = secretbox.generate_key()
    if as_json:
        emit({"secret_key": key, "key_id": secretbox.key_id(secretbox.parse_keys(key)[0])}, as_json)
    else:
        # The bare key, so that `export CALLERID_SECRET_KEY=$(callerid secret-key generate)` works.
        sys.stdout.write(key + "\n")


@secret_key_app.command("rotate")
def rotate(
    chunk_size: int = typer.Option(
        500, "--chunk-size", min=1, help="webhooks re-encrypted per transaction (bounded work per step)"
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Re-encrypt every stored webhook secret with the first key of CALLERID_SECRET_KEY (idempotent).

    Put the new key first and keep the old one after it; when this has finished, drop the old key.
    """
    from callerid.webhooks.secrets_at_rest import ReencryptError, reencrypt_all

    async def run(settings: Settings, db: Database) -> dict[str, object]:
        try:
            keyring = secretbox.keyring_for(settings)
            counts = await reencrypt_all(db, settings, chunk_size=chunk_size)
        except (ReencryptError, secretbox.SecretKeyError) as exc:
            fail(str(exc))
        return counts.as_json(keyring.primary_id)

    emit(run_with_db(run), as_json, title="Webhook secrets re-encrypted with the first key")
