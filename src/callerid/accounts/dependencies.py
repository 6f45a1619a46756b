"""The bearer-token check every business endpoint runs first (SPEC §3.4): as a function for the fast routes
(``callerid.fastlane``) and as a FastAPI dependency for the others."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from callerid.accounts.service import KEY_ONLY_FEATURES, TokenPrincipal, allows, principal_of
from callerid.errors import token_parse_error
from callerid.failures import Forbidden, LimitExceeded, Unauthorized
from callerid.runtime import Runtime, runtime_of

_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9]{64})$")


async def check_access(
    runtime: Runtime,
    authorization: str | None,
    path_account: str,
    feature: str,
    level: str,
    *,
    batch_v2: bool = False,
) -> TokenPrincipal:
    """A live token of the path's account whose key has ``level`` on ``feature``, else a domain error.

    Checks run in the spec's order and the first failure answers: header missing (401), unparsable
    (500, as the reference), unknown/expired/revoked (401), other account (403), no access (403),
    rate limit (429).
    """
    if authorization is None:
        raise Unauthorized("Missing authorization header")
    match = _BEARER.match(authorization.strip())
    if match is None:
        raise token_parse_error()
    principal = await principal_of(runtime, match.group(1))
    if principal is None:
        raise Unauthorized("please login again")
    if path_account.lower() != str(principal.account_id):
        raise Forbidden()
    subscribed = feature in principal.features or feature in KEY_ONLY_FEATURES  # those need no subscription
    if not subscribed or not allows(principal.access, feature, level):
        raise Forbidden()
    limiter = runtime.limiter
    limits = (limiter.general, limiter.batch_v2) if batch_v2 else (limiter.general,)
    wait = await limiter.hit_all(limits, principal.token_hash)
    if wait is not None:
        raise LimitExceeded(retry_after=wait)
    return principal


def require_access(
    feature: str, level: str, *, batch_v2: bool = False
) -> Callable[[Request], Awaitable[TokenPrincipal]]:
    """FastAPI dependency running ``check_access`` for the path's ``clientAccountId``."""

    async def dependency(request: Request) -> TokenPrincipal:
        return await check_access(
            runtime_of(request),
            request.headers.get("authorization"),
            str(request.path_params.get("clientAccountId", "")),
            feature,
            level,
            batch_v2=batch_v2,
        )

    # Lets tests (and the OpenAPI docs) find every endpoint guarded by a token and what it needs.
    dependency.callerid_access = (feature, level)  # type: ignore[attr-defined]
    return dependency
