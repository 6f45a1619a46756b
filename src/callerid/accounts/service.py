"""Accounts, API keys and access tokens: the rules, free of HTTP."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock, failures
from callerid.accounts.models import AccessToken, ApiKey, ClientAccount, Member
from callerid.accounts.secrets import hash_password, new_access_token, new_password, sha256_hex
from callerid.config import FEATURES, Settings
from callerid.db import UtcDateTime
from callerid.display_text import storage_problem, unstorable

if TYPE_CHECKING:
    from callerid.runtime import Runtime

ACCESS_LEVELS = ("none", "read", "write")
# Access a key may carry beyond the account's subscribed features (extensions; SPEC §3.1 keeps its four). Such a
# feature needs no subscription, and is in a key's map only when granted by name: keys made before it, or without
# naming it, have none, and what a reference client sees of a key is unchanged. ``analytics``: read the analytics
# API (issue 13); reading is all there is, so its levels are none and read.
ANALYTICS = "analytics"
KEY_ONLY_FEATURES = (ANALYTICS,)
KEY_ONLY_LEVELS = ("none", "read")
KEY_FEATURES = (*FEATURES, *KEY_ONLY_FEATURES)
_LEVEL_RANK = {level: rank for rank, level in enumerate(ACCESS_LEVELS)}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AccountsError(failures.InvalidInput):
    """A rule of this domain was broken; the message says which, for a person to read, and ``field`` names the
    input it is about (the console shows the message next to that field)."""


class NotFound(failures.NotFound, AccountsError):
    """No such account, key or member (or none the actor may see)."""


class LimitReached(AccountsError):
    """A count the account may not exceed (e.g. ``max_api_keys_per_account``)."""


def check_storable(text: str, what: str, *, field: str) -> None:
    """Text PostgreSQL and SQLite store alike, else AccountsError naming it (callerid.display_text)."""
    problem = storage_problem(text, what)
    if problem is not None:
        raise AccountsError(problem, field=field)


# --- accounts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedAccount:
    account: ClientAccount
    admin_email: str
    admin_password: str


def check_email(email: str, *, what: str = "admin email") -> str:
    """A plausible e-mail address, lower-cased (addresses are compared case-insensitively)."""
    email = email.strip()
    if not _EMAIL.match(email) or len(email) > 320 or unstorable(email) is not None:
        raise AccountsError(f"{what} {email!r} is not a valid e-mail address", field="email")
    return email.lower()


async def create_account(
    session: AsyncSession, *, name: str, admin_email: str, timezone: str = "Asia/Kolkata"
) -> CreatedAccount:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise AccountsError("account name must be between 1 and 200 characters")
    check_storable(name, "account name", field="name")
    email = check_email(admin_email)
    now = clock.now()
    account = ClientAccount(id=uuid.uuid4(), name=name, timezone=timezone, features=list(FEATURES), created_at=now)
    password = new_password()
    session.add(account)
    await session.flush()
    session.add(
        Member(account_id=account.id, email=email, role="admin", password_hash=hash_password(password), created_at=now)
    )
    await session.flush()
    return CreatedAccount(account=account, admin_email=email, admin_password=password)


async def list_accounts(session: AsyncSession) -> list[ClientAccount]:
    return list((await session.scalars(select(ClientAccount).order_by(ClientAccount.created_at))).all())


async def get_account(session: AsyncSession, account_id: uuid.UUID) -> ClientAccount:
    account = await session.get(ClientAccount, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


async def lock_account(session: AsyncSession, account_id: uuid.UUID) -> ClientAccount:
    """The account, row-locked until the caller's transaction ends: serialises changes of one account's counted
    things (keys, tokens, webhooks) between processes on PostgreSQL (SQLite has one writer anyway)."""
    account = await session.get(ClientAccount, account_id, with_for_update=True)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


async def admin_emails(session: AsyncSession, account_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(
        select(Member.email)
        .where(Member.account_id == account_id, Member.role == "admin", Member.status == "active")
        .order_by(Member.email)
    )
    return list(rows.all())


# --- API keys ----------------------------------------------------------------------------------------


def parse_access(spec: str | None) -> dict[str, str]:
    """``"call_personalisation=write,number_management=read"`` -> full access map; unnamed features: write
    when no spec is given, none when one is. A key-only feature (``analytics=read``) is in the map only if named."""
    if spec is None or spec.strip() == "":
        return {feature: "write" for feature in FEATURES}
    access = {feature: "none" for feature in FEATURES}
    for part in spec.split(","):
        if not part.strip():
            continue
        feature, sep, level = part.partition("=")
        feature, level = feature.strip(), level.strip()
        if not sep or feature not in KEY_FEATURES:
            raise AccountsError(f"unknown feature {feature!r}; features are {', '.join(KEY_FEATURES)}", field="access")
        if feature in KEY_ONLY_FEATURES and level not in KEY_ONLY_LEVELS:
            raise AccountsError(f"unknown access level {level!r} for {feature}; levels are none, read", field=feature)
        if level not in ACCESS_LEVELS:
            raise AccountsError(
                f"unknown access level {level!r} for {feature}; levels are none, read, write", field=feature
            )
        access[feature] = level
    return access


def allows(access: dict[str, Any], feature: str, needed: str) -> bool:
    """``write`` implies ``read`` (SPEC §3.1)."""
    return _LEVEL_RANK.get(str(access.get(feature, "none")), 0) >= _LEVEL_RANK[needed]


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str


async def create_api_key(
    session: AsyncSession,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    name: str,
    description: str = "",
    access: dict[str, str] | None = None,
    created_by_email: str | None = None,
) -> IssuedKey:
    account = await get_account(session, account_id)
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise AccountsError("API key name must be between 1 and 100 characters", field="name")
    check_storable(name, "API key name", field="name")
    if len(description) > 500:
        raise AccountsError("API key description must be at most 500 characters", field="description")
    check_storable(description, "API key description", field="description")
    # Lock the account row (PostgreSQL) so two concurrent creates cannot both pass the cap.
    await session.execute(select(ClientAccount.id).where(ClientAccount.id == account.id).with_for_update())
    count = await session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.account_id == account.id))
    if (count or 0) >= settings.max_api_keys_per_account:
        raise LimitReached(
            f"an account can have at most {settings.max_api_keys_per_account} API keys; delete one first"
        )
    if created_by_email is None:
        emails = await admin_emails(session, account.id)
        created_by_email = emails[0] if emails else ""
    secret = str(uuid.uuid4())
    key = ApiKey(
        id=uuid.uuid4(),
        account_id=account.id,
        key_id=uuid.uuid4(),
        secret_hash=sha256_hex(secret),
        name=name,
        description=description,
        access=access or parse_access(None),
        created_by_email=created_by_email,
        created_at=clock.now(),
    )
    session.add(key)
    await session.flush()
    return IssuedKey(key=key, secret=secret)


async def list_api_keys(session: AsyncSession, account_id: uuid.UUID) -> list[ApiKey]:
    await get_account(session, account_id)
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.created_at, ApiKey.id)
    )
    return list(rows.all())


async def get_api_key(session: AsyncSession, account_id: uuid.UUID, entry_id: uuid.UUID) -> ApiKey:
    """A key entry by its stable id (``ApiKey.id``, unchanged by regeneration), within the account."""
    key = await session.get(ApiKey, entry_id)
    if key is None or key.account_id != account_id:
        raise NotFound("API key not found")
    return key


async def live_token_count(session: AsyncSession, api_key_entry_id: uuid.UUID) -> int:
    """Tokens minted from the key that still work (what regenerating or deleting it revokes)."""
    count = await session.scalar(
        select(func.count())
        .select_from(AccessToken)
        .where(
            AccessToken.api_key_id == api_key_entry_id,
            AccessToken.revoked.is_(False),
            AccessToken.expires_at > clock.now(),
        )
    )
    return int(count or 0)


async def _key_by_key_id(session: AsyncSession, account_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    key = await session.scalar(select(ApiKey).where(ApiKey.account_id == account_id, ApiKey.key_id == key_id))
    if key is None:
        raise NotFound(f"API key {key_id} not found in account {account_id}")
    return key


async def _revoke_tokens(session: AsyncSession, api_key_id: uuid.UUID) -> None:
    await session.execute(update(AccessToken).where(AccessToken.api_key_id == api_key_id).values(revoked=True))


async def regenerate_api_key(session: AsyncSession, *, account_id: uuid.UUID, key_id: uuid.UUID) -> IssuedKey:
    """New ``key_id`` and secret for the entry; the old pair and its tokens stop working at once."""
    key = await _key_by_key_id(session, account_id, key_id)
    await _revoke_tokens(session, key.id)
    secret = str(uuid.uuid4())
    key.key_id = uuid.uuid4()
    key.secret_hash = sha256_hex(secret)
    key.regenerated_at = clock.now()
    await session.flush()
    return IssuedKey(key=key, secret=secret)


async def delete_api_key(session: AsyncSession, *, account_id: uuid.UUID, key_id: uuid.UUID) -> None:
    key = await _key_by_key_id(session, account_id, key_id)
    await _revoke_tokens(session, key.id)
    await session.execute(delete(ApiKey).where(ApiKey.id == key.id))


async def verify_api_key(session: AsyncSession, key_id: uuid.UUID, secret: str) -> ApiKey | None:
    key = await session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    if key is None or key.secret_hash != sha256_hex(secret):
        return None
    return key


# --- access tokens -----------------------------------------------------------------------------------


class TokenMintLimit(failures.LimitExceeded):
    """The account minted ``token_mint_limit`` tokens in the trailing window already (429, SPEC §3.3)."""


@dataclass(frozen=True)
class MintedToken:
    token: str
    created_at: Any


async def mint_token(
    session: AsyncSession, settings: Settings, *, account_id: uuid.UUID, key_id: uuid.UUID, secret: str
) -> MintedToken | None:
    """A new token for a valid key pair of ``account_id``; None for bad credentials.

    Raises TokenMintLimit when the account already minted ``token_mint_limit`` tokens in the trailing
    window (SPEC §3.3). The account row is locked on PostgreSQL so concurrent mints count correctly.
    """
    key = await verify_api_key(session, key_id, secret)
    if key is None or key.account_id != account_id:
        return None
    await session.execute(select(ClientAccount.id).where(ClientAccount.id == account_id).with_for_update())
    now = clock.now()
    window_start = now - timedelta(seconds=settings.token_mint_window_seconds)
    minted, oldest = (
        await session.execute(
            select(func.count(), func.min(AccessToken.created_at))
            .select_from(AccessToken)
            .where(AccessToken.account_id == account_id, AccessToken.created_at > window_start)
        )
    ).one()
    if minted >= settings.token_mint_limit:
        oldest_at = UtcDateTime().process_result_value(oldest, session.get_bind().dialect) or now
        frees_at = oldest_at + timedelta(seconds=settings.token_mint_window_seconds)
        raise TokenMintLimit(
            f"maximum of {settings.token_mint_limit} tokens can be created every "
            f"{settings.token_mint_window_seconds // 60} minutes",
            retry_after=max(1, math.ceil((frees_at - now).total_seconds())),
        )
    token = new_access_token()
    await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    session.add(
        AccessToken(
            token_hash=sha256_hex(token),
            account_id=account_id,
            api_key_id=key.id,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.token_ttl_seconds),
        )
    )
    await session.flush()
    return MintedToken(token=token, created_at=now)


@dataclass(frozen=True)
class TokenPrincipal:
    """Who a valid bearer token speaks for."""

    token_hash: str
    account_id: uuid.UUID
    api_key_id: uuid.UUID
    access: dict[str, Any]
    features: list[Any]
    created_by_email: str


def _token_query() -> Any:
    tokens, keys, accounts = AccessToken.__table__.c, ApiKey.__table__.c, ClientAccount.__table__.c
    return (
        select(
            tokens.account_id,
            tokens.expires_at,
            tokens.revoked,
            keys.id,
            keys.access,
            keys.created_by_email,
            accounts.features,
        )
        .join_from(AccessToken.__table__, ApiKey.__table__, keys.id == tokens.api_key_id)
        .join(ClientAccount.__table__, accounts.id == tokens.account_id)
        .where(tokens.token_hash == bindparam("token_hash"))
    )


# Built once, on table columns: every business request runs it, and rebuilding an ORM select (plus adapting
# its result columns to the cached compiled form) cost more than the query itself.
_TOKEN_QUERY = _token_query()


async def principal_of(runtime: Runtime, token: str) -> TokenPrincipal | None:
    """``resolve_token`` for a request: from the process's token cache without touching the database when it has
    the token."""
    cached = runtime.tokens.get(sha256_hex(token), clock.now())
    if cached is not None:
        return cached
    async with runtime.db.point_session() as session:
        return await resolve_token(session, token, runtime.tokens)


class TokenCache:
    """Live tokens recently resolved, so a business request costs no database read for its token.

    Only live tokens are kept, each until ``ttl_seconds`` have passed or the token expires, whichever is first. A
    token revoked (its key regenerated or deleted) is refused at once by the process that revoked it (``forget``)
    and by every other process within ``ttl_seconds`` (setting ``token_cache_seconds``; 0 disables the cache).
    """

    def __init__(self, ttl_seconds: float, max_entries: int = 100_000):
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[str, tuple[TokenPrincipal, datetime]] = {}

    def get(self, token_hash: str, now: datetime) -> TokenPrincipal | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if now >= entry[1]:
            self._entries.pop(token_hash, None)
            return None
        return entry[0]

    def put(self, principal: TokenPrincipal, expires_at: datetime, now: datetime) -> None:
        if self._ttl <= 0:
            return
        if len(self._entries) >= self._max:
            self._entries.clear()  # bounded; refilled by the next requests
        self._entries[principal.token_hash] = (principal, min(expires_at, now + timedelta(seconds=self._ttl)))

    def forget(self) -> None:
        """After a revocation in this process: every token is read again (revocations are rare)."""
        self._entries.clear()


async def resolve_token(session: AsyncSession, token: str, cache: TokenCache | None = None) -> TokenPrincipal | None:
    """The principal of a live token (not expired, not revoked, key still there), else None; remembered in
    ``cache`` (see ``TokenCache``)."""
    token_hash = sha256_hex(token)
    now = clock.now()
    row = (await session.execute(_TOKEN_QUERY, {"token_hash": token_hash})).first()
    if row is None or row.revoked or row.expires_at <= now:
        return None
    principal = TokenPrincipal(
        token_hash=token_hash,
        account_id=row.account_id,
        api_key_id=row.id,
        access=row.access,
        features=row.features,
        created_by_email=row.created_by_email,
    )
    if cache is not None:
        cache.put(principal, row.expires_at, now)
    return principal
