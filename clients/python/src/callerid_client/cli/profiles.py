"""Where the CLI's credentials come from: command-line options, then environment variables, then a profile of the
config file (``$CALLERID_CLIENT_CONFIG``, default ``~/.config/callerid/client.toml``)::

    default_profile = "prod"

    [profiles.prod]
    base_url = "https://callerid.example.com"
    account_id = "91c173bb-28d8-4030-9722-8663ff9589f3"
    key_id = "aaaee1b1-7a2f-4c0b-8271-4e2b41c1bf01"
    api_key = "caf1694e-b8a4-4082-82fc-105a0a63eafe"

Environment: ``CALLERID_CLIENT_BASE_URL``, ``CALLERID_CLIENT_ACCOUNT_ID``, ``CALLERID_CLIENT_KEY_ID``,
``CALLERID_CLIENT_API_KEY``, ``CALLERID_CLIENT_PROFILE``.

Tokens are cached between commands in ``~/.cache/callerid-client`` (``CALLERID_CLIENT_CACHE``; off with
``CALLERID_CLIENT_TOKEN_CACHE=off``), as the account may mint only 10 tokens per 30 minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

FIELDS = ("base_url", "account_id", "key_id", "api_key")
ENV_PREFIX = "CALLERID_CLIENT_"
DEFAULT_CONFIG = Path("~/.config/callerid/client.toml")


class ProfileError(Exception):
    pass


@dataclass(frozen=True)
class Profile:
    name: str
    base_url: str
    account_id: str
    key_id: str
    api_key: str


def config_path(explicit: str | None, environ: Mapping[str, str]) -> Path:
    return Path(explicit or environ.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG).expanduser()


def resolve(
    options: Mapping[str, str | None],
    profile: str | None = None,
    config: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Profile:
    """The credentials to use; ``ProfileError`` naming what is missing and where it may be given."""
    env = os.environ if environ is None else environ
    path = config_path(config, env)
    file_values: dict[str, object] = {}
    name = profile or env.get(ENV_PREFIX + "PROFILE")
    if path.exists():
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ProfileError(f"cannot read {path}: {exc}") from exc
        profiles = document.get("profiles", {})
        name = name or document.get("default_profile") or ("default" if "default" in profiles else None)
        if name is not None:
            if name not in profiles:
                raise ProfileError(f"no profile {name!r} in {path} (profiles: {', '.join(sorted(profiles)) or 'none'})")
            file_values = dict(profiles[name])
    elif name is not None and profile is not None:
        raise ProfileError(f"profile {name!r} asked for, but there is no config file at {path}")
    values: dict[str, str] = {}
    for field in FIELDS:
        value = options.get(field) or env.get(ENV_PREFIX + field.upper()) or file_values.get(field)
        if value:
            values[field] = str(value)
    missing = [field for field in FIELDS if field not in values]
    if missing:
        hints = ", ".join(f"--{f.replace('_', '-')} / {ENV_PREFIX}{f.upper()}" for f in missing)
        raise ProfileError(f"missing {', '.join(missing)}: give {hints}, or a profile in {path}")
    return Profile(name or "(environment)", **values)


# --- the token cache: consecutive commands reuse one token instead of minting one each (10 per 30 minutes) ---------


def token_cache_file(profile: Profile, environ: Mapping[str, str] | None = None) -> Path | None:
    """``$CALLERID_CLIENT_CACHE`` (default ``~/.cache/callerid-client``)/token-<hash>.json, one per deployment,
    account and key; None when ``CALLERID_CLIENT_TOKEN_CACHE`` is ``off``."""
    env = os.environ if environ is None else environ
    if env.get(ENV_PREFIX + "TOKEN_CACHE", "").strip().lower() in ("0", "off", "false", "no"):
        return None
    root = Path(env.get(ENV_PREFIX + "CACHE") or "~/.cache/callerid-client").expanduser()
    digest = hashlib.sha256(f"{profile.base_url}|{profile.account_id}|{profile.key_id}".encode()).hexdigest()[:32]
    return root / f"token-{digest}.json"


def load_token(path: Path | None) -> tuple[str, float] | None:
    """The cached token and its age in seconds, or None."""
    if path is None:
        return None
    try:
        saved = json.loads(path.read_text())
        return str(saved["token"]), time.time() - float(saved["minted_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_token(path: Path | None, token: str, age: float) -> None:
    """Keeps the token for the next command, readable only by this user (it is a credential for up to 60 min)."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_suffix(".tmp")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump({"token": token, "minted_at": time.time() - age}, handle)
        os.replace(partial, path)
    except OSError:
        pass  # a cache: without it, the next command mints a token of its own
