"""The bearer-token check every business endpoint runs first (SPEC §3.4), as a FastAPI dependency."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from callerid.accounts.service import TokenPrincipal, allows, resolve_token
from callerid.db.pointread import point_session
from callerid.errors import authorization_error, forbidden, rate_limited, token_parse_error
from callerid.runtime import runtime_of

_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9]{64})$")


def require_access(
    feature: str, level: str, *, batch_v2: bool = False
) -> Callable[[Request], Awaitable[TokenPrincipal]]:
    """Dependency: a live token of the path's account whose key has ``level`` on ``feature``.

    Checks run in the spec's order and the first failure answers: header missing (401), unparsable
    (500, as the reference), unknown/expired/revoked (401), other account (403), no access (403),
    rate limit (429).
    """

    async def dependency(request: Request) -> TokenPrincipal:
        header = request.headers.get("authorization")
        if header is None:
            raise authorization_error("Missing authorization header")
        match = _BEARER.match(header.strip())
        if match is None:
            raise token_parse_error()
        runtime = runtime_of(request)
        async with point_session(runtime.db) as session:
            principal = await resolve_token(session, match.group(1))
        if principal is None:
            raise authorization_error("please login again")
        path_account = str(request.path_params.get("clientAccountId", "")).lower()
        if path_account != str(principal.account_id):
            raise forbidden()
        if feature not in principal.features or not allows(principal.access, feature, level):
            raise forbidden()
        limiter = runtime.limiter
        wait = await limiter.hit(limiter.general, principal.token_hash)
        if wait is None and batch_v2:
            wait = await limiter.hit(limiter.batch_v2, principal.token_hash)
        if wait is not None:
            raise rate_limited(wait)
        request.state.principal = principal
        return principal

    # Lets tests (and the OpenAPI docs) find every endpoint guarded by a token and what it needs.
    dependency.callerid_access = (feature, level)  # type: ignore[attr-defined]
    return dependency
