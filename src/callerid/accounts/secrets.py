"""Generating and hashing credentials.

API-key secrets and access tokens are long random values, so a fast SHA-256 is the right hash: slow
hashes protect guessable passwords, and these are checked on every request. Console passwords are
human-chosen and use Argon2 (argon2-cffi).
"""

from __future__ import annotations

import hashlib
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 64
_password_hasher = PasswordHasher()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_access_token() -> str:
    """64 characters of ``[A-Za-z0-9]`` (SPEC §3.2)."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def new_link_token() -> str:
    """The secret part of a one-time e-mailed link (password reset, invitation): 256 random bits."""
    return secrets.token_urlsafe(32)


def new_session_token() -> str:
    """A console session cookie or trusted-browser cookie value: 256 random bits."""
    return secrets.token_urlsafe(32)


def new_sign_in_code() -> str:
    """Six digits for e-mailed two-factor sign-in; few enough tries (a setting) make guessing hopeless."""
    return f"{secrets.randbelow(1_000_000):06d}"


def new_password() -> str:
    return secrets.token_urlsafe(15)


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
