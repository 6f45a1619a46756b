"""webhooks: signing secrets encrypted at rest (room for the ``enc:v1:...`` form, existing clear secrets encrypted)

Revision ID: 0012_webhook_secrets_encrypted
Revises: 0011_webhook_console
Create Date: 2026-12-10 09:00:00

The key is found as the application finds it (``callerid.secretbox``): ``CALLERID_SECRET_KEY``, or on SQLite the
key file ``<CALLERID_DATA_DIR>/secret.key``, generated now if it does not exist yet. On PostgreSQL without a key
(only possible when the migration is run by other means than the ``callerid`` command, which refuses that) the
existing secrets stay in clear, still working as legacy values, until ``callerid secret-key rotate`` encrypts them.
"""

import logging
import uuid
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

from callerid import secretbox
from callerid.config import load_settings
from callerid.webhooks.secrets_at_rest import associated_data

revision: str = "0012_webhook_secrets_encrypted"
down_revision: str | Sequence[str] | None = "0011_webhook_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

_webhooks = sa.table(
    "webhooks",
    sa.column("id", sa.Uuid()),
    sa.column("secret", sa.Text()),
    sa.column("previous_secret", sa.Text()),
)


def _keyring(*, key_file_allowed: bool) -> secretbox.Keyring | None:
    """The application's keys; None on PostgreSQL without ``CALLERID_SECRET_KEY`` (no host invents a key)."""
    settings = load_settings()
    if secretbox.configured_key(settings) is None and not key_file_allowed:
        return None
    return secretbox.keyring_for(settings)


def _holding(*, encrypted: bool) -> sa.ColumnElement[bool]:
    """Rows with a value that is (``encrypted``) or is not in the ``enc:`` form."""
    c = _webhooks.c
    if encrypted:
        return sa.or_(c.secret.startswith(secretbox.PREFIX), c.previous_secret.startswith(secretbox.PREFIX))
    return sa.or_(
        sa.not_(c.secret.startswith(secretbox.PREFIX)), sa.not_(c.previous_secret.startswith(secretbox.PREFIX))
    )


def _any(where: sa.ColumnElement[bool]) -> bool:
    return op.get_bind().execute(sa.select(sa.func.count()).select_from(_webhooks).where(where)).scalar_one() > 0


def _rewrite(where: sa.ColumnElement[bool], transform: Callable[[uuid.UUID, str], str]) -> None:
    """``transform(webhook_id, value)`` applied to both secrets of the rows matching ``where``."""
    bind = op.get_bind()
    c = _webhooks.c
    for webhook_id, secret, previous in bind.execute(sa.select(c.id, c.secret, c.previous_secret).where(where)).all():
        values = {
            "secret": transform(webhook_id, secret),
            "previous_secret": None if previous is None else transform(webhook_id, previous),
        }
        bind.execute(sa.update(_webhooks).where(c.id == webhook_id).values(**values))


def upgrade() -> None:
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(length=100), type_=sa.Text(), existing_nullable=False)
        batch_op.alter_column(
            "previous_secret", existing_type=sa.String(length=100), type_=sa.Text(), existing_nullable=True
        )
    if not _any(_holding(encrypted=False)):
        return  # nothing in clear (a new database): no key needed, none generated
    keyring = _keyring(key_file_allowed=op.get_bind().dialect.name == "sqlite")
    if keyring is None:
        log.warning(
            "webhook signing secrets stay in clear (legacy): %s is not set; run `callerid secret-key rotate` "
            "with it set to encrypt them",
            secretbox.ENV_NAME,
        )
        return

    def encrypt(webhook_id: uuid.UUID, value: str) -> str:
        if secretbox.is_encrypted(value):
            return value
        return keyring.encrypt(value, associated_data(webhook_id))

    _rewrite(_holding(encrypted=False), encrypt)


def downgrade() -> None:
    # The narrower columns of 0011 hold only clear secrets: decrypt first (this needs the key).
    if _any(_holding(encrypted=True)):
        keyring = _keyring(key_file_allowed=op.get_bind().dialect.name == "sqlite")
        if keyring is None:
            raise RuntimeError(f"the webhook secrets are encrypted: set {secretbox.ENV_NAME} to downgrade")

        def decrypt(webhook_id: uuid.UUID, value: str) -> str:
            return keyring.decrypt(value, associated_data(webhook_id))

        _rewrite(_holding(encrypted=True), decrypt)
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.alter_column(
            "previous_secret", existing_type=sa.Text(), type_=sa.String(length=100), existing_nullable=True
        )
        batch_op.alter_column("secret", existing_type=sa.Text(), type_=sa.String(length=100), existing_nullable=False)
