"""Secrets we must use in clear (webhook signing secrets) are stored encrypted with the operator's key.

Why: DESIGN.md's principle is that a secret is stored only as a hash, or, where it must be used in clear (an
HMAC signing secret), encrypted with a key the operator keeps outside the database. A database dump, a backup
or a read-only SQL injection then reveals no secret; the key alone opens them.

Stored form (text, fits any text column)::

    enc:v1:<key id>:<base64 of nonce (12 bytes) + AES-256-GCM ciphertext and tag>

- AES-256-GCM (``cryptography``'s AESGCM): authenticated, so a wrong key or a changed byte fails instead of
  yielding garbage. A fresh random nonce per encryption.
- ``associated_data``: what the value belongs to (a webhook's id). It is authenticated but not stored, so a
  ciphertext copied into another row does not decrypt there.
- ``key id``: a short fingerprint of the key that encrypted the value, so decryption picks the right key and
  rotation sees which values still use an old one. It reveals nothing about the key.

Keys (:func:`keyring_for`):

- ``CALLERID_SECRET_KEY``: base64 of 32 bytes; several keys comma-separated: the first encrypts, all decrypt.
  That is key rotation: put the new key first, keep the old one after it, run ``callerid secret-key rotate``
  (re-encrypts every stored value with the first key), then drop the old key.
- Without it, the embedded default (SQLite) generates one on first use into ``<data_dir>/secret.key``
  (mode 0600, created atomically so concurrent first starts agree; every later process reads the same file).
- PostgreSQL (production, many processes on many hosts) requires ``CALLERID_SECRET_KEY``: every ``callerid``
  command refuses to start without it (:func:`check_startup`), rather than let each host invent its own key.
  Code that builds the app directly (tests) falls back to the key file, as SQLite does.

Legacy clear text: values written before encryption at rest have no ``enc:`` prefix. :meth:`Keyring.decrypt`
returns them as they are ONLY so that such rows keep working until they are re-encrypted, which the migration
``0012_webhook_secrets_encrypted`` (when a key is available) and ``callerid secret-key rotate`` do; nothing
writes clear text any more.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from callerid.config import Settings

PREFIX = "enc:"
VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_FILE_NAME = "secret.key"
ENV_NAME = "CALLERID_SECRET_KEY"
# Bound to every ciphertext with the caller's associated data: a value of another format or purpose never opens.
_AAD_PREFIX = b"callerid.secretbox." + VERSION.encode() + b":"

GENERATE_HINT = (
    "generate one with `callerid secret-key generate` (or "
    '`python -c "import secrets,base64;print(base64.b64encode(secrets.token_bytes(32)).decode())"`)'
)
MISSING_KEY_MESSAGE = (
    f"{ENV_NAME} is required with a PostgreSQL database: it encrypts webhook signing secrets at rest, and every "
    f"serve, worker and CLI process of the deployment must use the same key; {GENERATE_HINT} and set it in the "
    "environment of every callerid process"
)


class SecretKeyError(Exception):
    """The configured key is missing or unusable (an operator's configuration problem, said in words)."""


class MissingSecretKey(SecretKeyError):
    """No key is configured where one is required (PostgreSQL)."""


class DecryptionError(Exception):
    """A stored value does not decrypt: another key, altered bytes, or another row's value (associated data)."""


def generate_key() -> str:
    """A new key in the form ``CALLERID_SECRET_KEY`` takes: base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def key_id(key: bytes) -> str:
    """A key's short public fingerprint (8 hex digits of a domain-separated SHA-256, not the key's own hash)."""
    return hashlib.sha256(b"callerid.secretbox.key-id:" + key).hexdigest()[:8]


def parse_keys(text: str, *, source: str = ENV_NAME) -> tuple[bytes, ...]:
    """Comma-separated base64 keys of 32 bytes, in order (the first encrypts); duplicates dropped.

    Messages name the position, never the value (the value is a secret).
    """
    keys: list[bytes] = []
    parts = [part.strip() for part in text.split(",")]
    for position, part in enumerate(parts, start=1):
        if part == "":
            continue
        try:
            key = base64.b64decode(part, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise SecretKeyError(f"key {position} of {source} is not base64 of {KEY_BYTES} bytes; {GENERATE_HINT}")
        if key not in keys:
            keys.append(key)
    if not keys:
        raise SecretKeyError(f"{source} holds no key; {GENERATE_HINT}")
    return tuple(keys)


def is_encrypted(stored: str) -> bool:
    return stored.startswith(PREFIX)


@dataclass(frozen=True)
class Keyring:
    """The deployment's keys: ``keys[0]`` encrypts, every key decrypts (by key id)."""

    keys: tuple[bytes, ...]

    @classmethod
    def from_text(cls, text: str, *, source: str = ENV_NAME) -> Keyring:
        return cls(parse_keys(text, source=source))

    @functools.cached_property
    def _ciphers(self) -> dict[str, AESGCM]:
        return {key_id(key): AESGCM(key) for key in self.keys}

    @property
    def primary_id(self) -> str:
        return key_id(self.keys[0])

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def encrypt(self, plaintext: str, associated_data: bytes) -> str:
        """``plaintext`` sealed with the first key and bound to ``associated_data``."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._ciphers[self.primary_id].encrypt(nonce, plaintext.encode(), _AAD_PREFIX + associated_data)
        return f"{PREFIX}{VERSION}:{self.primary_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, stored: str, associated_data: bytes) -> str:
        """The clear value of ``stored``; raises :class:`DecryptionError` when it cannot be opened.

        A value without the ``enc:`` prefix is legacy clear text (written before encryption at rest) and is
        returned as it is, only until it is re-encrypted (migration 0012, ``callerid secret-key rotate``).
        """
        if not is_encrypted(stored):
            return stored  # legacy clear text, see the module's docstring
        _version, kid, body = self._parts(stored)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(
                f"the value was encrypted with key {kid}, which is not among the keys of {ENV_NAME} "
                f"({', '.join(self.key_ids)}); keep an old key after the new one until "
                "`callerid secret-key rotate` has re-encrypted everything"
            )
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise DecryptionError("the value is not valid base64 (altered?)") from None
        try:
            clear = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _AAD_PREFIX + associated_data)
        except (InvalidTag, ValueError):
            raise DecryptionError(
                f"the value does not decrypt with key {kid}: it was altered, or it belongs to another row"
            ) from None
        return clear.decode()

    def is_current(self, stored: str) -> bool:
        """Encrypted with the first key (nothing for rotation to do)."""
        return is_encrypted(stored) and self._parts(stored)[1] == self.primary_id

    def rotate(self, stored: str, associated_data: bytes) -> str | None:
        """``stored`` re-encrypted with the first key, or None when it already is (rotation is idempotent).

        Legacy clear text is encrypted; a value that does not decrypt raises :class:`DecryptionError`.
        """
        if self.is_current(stored):
            self.decrypt(stored, associated_data)  # it must open, not merely carry the right key id
            return None
        return self.encrypt(self.decrypt(stored, associated_data), associated_data)

    @staticmethod
    def _parts(stored: str) -> tuple[str, str, str]:
        parts = stored[len(PREFIX) :].split(":", 2)
        if len(parts) != 3 or parts[0] != VERSION:
            raise DecryptionError(f"unknown stored format (expected {PREFIX}{VERSION}:<key id>:<data>)")
        return parts[0], parts[1], parts[2]


# --- where the keys come from ------------------------------------------------------------------------------


def key_file_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE_NAME


def load_or_create_key_file(path: Path) -> str:
    """The key kept in ``path``; generated first if the file does not exist.

    Created atomically: the key is written to a private (0600) temporary file in the same folder, which is then
    hard-linked to ``path``; linking fails if another process got there first, and then that process's key is
    used. So concurrent first starts (``serve`` and ``worker`` on an empty folder) end up with one key, and no
    reader ever sees a half-written file.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(generate_key() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process created it first: use theirs
            except OSError:
                # A filesystem without hard links: exclusive creation still lets only one process win.
                with contextlib.suppress(FileExistsError):
                    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(descriptor, "w") as handle:
                        handle.write(temporary.read_text())
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    return path.read_text().strip()


@functools.lru_cache(maxsize=64)
def _keyring(secret_key: str | None, key_file: str | None) -> Keyring:
    if secret_key:
        return Keyring.from_text(secret_key)
    if key_file is None:
        raise MissingSecretKey(MISSING_KEY_MESSAGE)
    return Keyring.from_text(load_or_create_key_file(Path(key_file)), source=key_file)


def configured_key(settings: Settings) -> str | None:
    value = settings.secret_key
    return None if value is None else value.get_secret_value()


def keyring_for(settings: Settings) -> Keyring:
    """This deployment's keys: ``CALLERID_SECRET_KEY`` when set, else the key file in ``data_dir``.

    Read once per process and kept (decrypting happens on every webhook delivery).
    """
    key = configured_key(settings)
    if key is not None:
        return _keyring(key, None)
    return _keyring(None, str(key_file_path(settings.data_dir).absolute()))


def check_startup(settings: Settings) -> Keyring:
    """Run by every ``callerid`` command before it touches the database: PostgreSQL without
    ``CALLERID_SECRET_KEY`` is refused (:class:`MissingSecretKey`, with how to make one); a malformed key is
    refused; the embedded default's key file is generated now, on first start, if it does not exist yet."""
    if configured_key(settings) is None and not settings.embedded:
        raise MissingSecretKey(MISSING_KEY_MESSAGE)
    return keyring_for(settings)
