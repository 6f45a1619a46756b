"""Token checks on business endpoints (SPEC §3.4) and per-token rate limits (SPEC §4).

The checks are tested on a probe route and then swept over every real business endpoint of the app, so
endpoints added later are covered automatically.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from callerid import clock
from callerid.accounts.dependencies import require_access
from callerid.accounts.ratelimit import MemoryWindows, RateLimiter
from callerid.accounts.service import TokenPrincipal
from callerid.app import create_app
from tests.conftest import REDIS_URL, Tenant, create_tenant, make_settings, mint, requires_redis

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

MISSING = {"slug": "authorization-error", "message": "Missing authorization header"}
PARSE = {"slug": "internal-server-error", "message": "500/50011 - Failed to parse token"}
LOGIN_AGAIN = {"slug": "authorization-error", "message": "please login again"}
FORBIDDEN = {"slug": "forbidden-error", "message": "not authorized. please contact your admin."}
TOO_MANY = {"slug": "rate-limit-exceeded", "message": "too many requests"}


def add_probe_routes(app: FastAPI) -> None:
    async def read_probe(principal: TokenPrincipal = Depends(require_access("number_management", "read"))) -> Any:
        return {"account": str(principal.account_id)}

    async def write_probe(principal: TokenPrincipal = Depends(require_access("number_management", "write"))) -> Any:
        return {"account": str(principal.account_id)}

    async def batch_probe(
        principal: TokenPrincipal = Depends(require_access("call_personalisation", "write", batch_v2=True)),
    ) -> Any:
        return {"account": str(principal.account_id)}

    app.add_api_route("/clients/{clientAccountId}/probe", read_probe, methods=["GET"])
    app.add_api_route("/clients/{clientAccountId}/probe", write_probe, methods=["POST"])
    app.add_api_route("/clients/{clientAccountId}/batch-probe", batch_probe, methods=["POST"])


@pytest.fixture
def probe_app(app: FastAPI) -> FastAPI:
    add_probe_routes(app)
    return app


async def test_valid_token_passes(client: httpx.AsyncClient, probe_app: Any, tenant: Tenant, auth: Any) -> None:
    response = await client.get(f"/clients/{tenant.account_id}/probe", headers=auth)
    assert response.status_code == 200
    assert response.json() == {"account": str(tenant.account_id)}
    # scheme is case-insensitive; the account id in any case
    token = auth["Authorization"].split()[1]
    response = await client.get(
        f"/clients/{str(tenant.account_id).upper()}/probe", headers={"Authorization": f"bEaReR {token}"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "Token abc",
        "Bearer",
        "Bearer short",
        "Bearer " + "a" * 63,
        "Bearer " + "a" * 65,
        "Bearer " + "a" * 63 + "-",
        "Basic " + "a" * 64,
        "a" * 64,
    ],
)
async def test_unparsable_token(client: httpx.AsyncClient, probe_app: Any, tenant: Tenant, header: str) -> None:
    response = await client.get(f"/clients/{tenant.account_id}/probe", headers={"Authorization": header})
    assert response.status_code == 500
    assert response.json() == PARSE


async def test_missing_unknown_expired(client: httpx.AsyncClient, probe_app: Any, tenant: Tenant, token: str) -> None:
    path = f"/clients/{tenant.account_id}/probe"
    response = await client.get(path)
    assert (response.status_code, response.json()) == (401, MISSING)
    response = await client.get(path, headers={"Authorization": "Bearer " + "Z" * 64})
    assert (response.status_code, response.json()) == (401, LOGIN_AGAIN)
    clock.advance(timedelta(minutes=59, seconds=59))
    assert (await client.get(path, headers={"Authorization": f"Bearer {token}"})).status_code == 200
    clock.advance(timedelta(seconds=1))  # 60 minutes after created_at
    response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert (response.status_code, response.json()) == (401, LOGIN_AGAIN)


async def test_other_accounts_path_is_forbidden(
    client: httpx.AsyncClient, probe_app: Any, db: Any, settings: Any, auth: Any
) -> None:
    other = await create_tenant(db, settings, name="Other")
    for account in (other.account_id, uuid.uuid4(), "not-a-uuid"):
        response = await client.get(f"/clients/{account}/probe", headers=auth)
        assert (response.status_code, response.json()) == (403, FORBIDDEN)


async def test_access_levels(client: httpx.AsyncClient, probe_app: Any, db: Any, settings: Any) -> None:
    reader = await create_tenant(db, settings, access={"number_management": "read"})
    headers = {"Authorization": f"Bearer {await mint(client, reader)}"}
    path = f"/clients/{reader.account_id}/probe"
    assert (await client.get(path, headers=headers)).status_code == 200
    response = await client.post(path, headers=headers)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)

    nothing = await create_tenant(db, settings, access={"call_me_back": "write"})
    headers = {"Authorization": f"Bearer {await mint(client, nothing)}"}
    response = await client.get(f"/clients/{nothing.account_id}/probe", headers=headers)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)


async def test_unsubscribed_feature_is_forbidden(
    client: httpx.AsyncClient, probe_app: Any, db: Any, tenant: Tenant, auth: Any
) -> None:
    from sqlalchemy import update

    from callerid.accounts.models import ClientAccount

    async with db.transaction() as session:
        await session.execute(
            update(ClientAccount).where(ClientAccount.id == tenant.account_id).values(features=["call_personalisation"])
        )
    response = await client.get(f"/clients/{tenant.account_id}/probe", headers=auth)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)


# --- rate limits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_general": "3/minute", "rate_limit_batch_v2": "2/minute"}])
async def test_general_limit_per_token(client: httpx.AsyncClient, probe_app: Any, tenant: Tenant) -> None:
    clock.freeze(T0)
    first = {"Authorization": f"Bearer {await mint(client, tenant)}"}
    second = {"Authorization": f"Bearer {await mint(client, tenant)}"}
    path = f"/clients/{tenant.account_id}/probe"
    for _ in range(3):  # at T0, T0+10 s, T0+20 s
        assert (await client.get(path, headers=first)).status_code == 200
        clock.advance(10)
    response = await client.get(path, headers=first)  # T0+30 s: the window holds 3; the first leaves at T0+60 s
    assert (response.status_code, response.json()) == (429, TOO_MANY)
    assert response.headers["Retry-After"] == "30"
    assert (await client.get(path, headers=second)).status_code == 200  # per token
    clock.advance(29.5)
    assert (await client.get(path, headers=first)).headers["Retry-After"] == "1"  # 0.5 s, rounded up
    clock.advance(0.5)
    assert (await client.get(path, headers=first)).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_general": "5/minute", "rate_limit_batch_v2": "2/minute"}])
async def test_batch_v2_limit_on_top_of_general(client: httpx.AsyncClient, probe_app: Any, tenant: Tenant) -> None:
    clock.freeze(T0)
    headers = {"Authorization": f"Bearer {await mint(client, tenant)}"}
    batch = f"/clients/{tenant.account_id}/batch-probe"
    assert (await client.post(batch, headers=headers)).status_code == 200
    clock.advance(15)
    assert (await client.post(batch, headers=headers)).status_code == 200
    response = await client.post(batch, headers=headers)
    assert (response.status_code, response.json()) == (429, TOO_MANY)
    assert response.headers["Retry-After"] == "45"  # the first batch leaves the minute at T0+60 s
    # The general limit still has room (3 of 5 used), so other endpoints keep working.
    assert (await client.get(f"/clients/{tenant.account_id}/probe", headers=headers)).status_code == 200
    clock.advance(45)
    assert (await client.post(batch, headers=headers)).status_code == 200


def test_default_limits_are_the_spec_numbers() -> None:
    from callerid.config import Settings

    defaults = Settings()
    assert defaults.rate_limit_general == "100/second"
    assert defaults.rate_limit_batch_v2 == "60/minute"
    assert (defaults.token_mint_limit, defaults.token_mint_window_seconds) == (10, 1800)
    assert defaults.token_ttl_seconds == 3600
    assert defaults.max_api_keys_per_account == 5


async def test_hundred_per_second_by_default(client: httpx.AsyncClient, probe_app: Any, tenant: Tenant) -> None:
    """The default settings: within one second (the clock stands still) the 101st request is refused."""
    clock.freeze(T0)
    headers = {"Authorization": f"Bearer {await mint(client, tenant)}"}
    path = f"/clients/{tenant.account_id}/probe"
    statuses = [(await client.get(path, headers=headers)).status_code for _ in range(100)]
    assert statuses == [200] * 100
    refused = await client.get(path, headers=headers)
    assert (refused.status_code, refused.json(), refused.headers["Retry-After"]) == (429, TOO_MANY, "1")
    clock.advance(0.999)
    assert (await client.get(path, headers=headers)).status_code == 429
    clock.advance(0.001)  # the first hundred leave the window together
    assert (await client.get(path, headers=headers)).status_code == 200


@requires_redis
async def test_limits_are_shared_through_redis(tmp_path: Any, database_url: str) -> None:
    """Two app instances (as two processes would be) share one count when Redis is configured."""
    # Counters are keyed by the token's hash, and every run mints new tokens, so runs never collide.
    settings = make_settings(
        database_url, tmp_path, redis_url=REDIS_URL, rate_limit_general="4/minute", rate_limit_batch_v2="60/minute"
    )
    apps = [create_app(settings), create_app(settings)]
    for application in apps:
        add_probe_routes(application)
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        from tests.conftest import empty_all_tables

        await empty_all_tables(apps[0].state.runtime.db)
        tenant = await create_tenant(apps[0].state.runtime.db, settings)
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=a, raise_app_exceptions=False), base_url="http://t")
            for a in apps
        ]
        try:
            headers = {"Authorization": f"Bearer {await mint(clients[0], tenant)}"}
            path = f"/clients/{tenant.account_id}/probe"
            statuses = [(await clients[i % 2].get(path, headers=headers)).status_code for i in range(5)]
            assert statuses == [200, 200, 200, 200, 429]
        finally:
            for c in clients:
                await c.aclose()


async def test_a_revoked_token_is_refused_by_every_process_within_the_token_cache_time(
    tmp_path: Any, database_url: str
) -> None:
    """Two app instances (as two processes would be): one has the token's check cached when the key is deleted
    elsewhere (the CLI, another process's console); it refuses the token once ``token_cache_seconds`` have passed."""
    clock.freeze(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    settings = make_settings(database_url, tmp_path, token_cache_seconds=2.0)
    apps = [create_app(settings), create_app(settings)]
    for application in apps:
        add_probe_routes(application)
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        from tests.conftest import empty_all_tables

        db = apps[0].state.runtime.db
        await empty_all_tables(db)
        tenant = await create_tenant(db, settings)
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=a, raise_app_exceptions=False), base_url="http://t")
            for a in apps
        ]
        try:
            headers = {"Authorization": f"Bearer {await mint(clients[0], tenant)}"}
            path = f"/clients/{tenant.account_id}/probe"
            assert (await clients[1].get(path, headers=headers)).status_code == 200  # now cached there
            async with db.transaction() as session:
                from callerid.accounts import service

                await service.delete_api_key(session, account_id=tenant.account_id, key_id=tenant.key_id)
            clock.advance(1.9)
            assert (await clients[1].get(path, headers=headers)).status_code == 200  # within the documented time
            assert (await clients[0].get(path, headers=headers)).status_code == 401  # not cached here: read anew
            clock.advance(0.1)
            response = await clients[1].get(path, headers=headers)
            assert (response.status_code, response.json()["slug"]) == (401, "authorization-error")
        finally:
            for c in clients:
                await c.aclose()


def test_the_token_cache_forgets_on_revocation_and_at_expiry() -> None:
    from callerid.accounts.service import TokenCache, TokenPrincipal

    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    principal = TokenPrincipal(
        token_hash="h", account_id=uuid.uuid4(), api_key_id=uuid.uuid4(), access={}, features=[], created_by_email=""
    )
    cache = TokenCache(2.0)
    cache.put(principal, expires_at=now + timedelta(seconds=1), now=now)
    assert cache.get("h", now + timedelta(seconds=0.9)) is principal
    assert cache.get("h", now + timedelta(seconds=1)) is None  # the token's own expiry comes first
    cache.put(principal, expires_at=now + timedelta(hours=1), now=now)
    cache.forget()
    assert cache.get("h", now) is None
    TokenCache(0).put(principal, expires_at=now + timedelta(hours=1), now=now)  # 0 disables: nothing kept


# --- every business endpoint of the app -------------------------------------------------------------------


def _all_routes(app: FastAPI) -> list[Any]:
    """Plain routes and, for routers included lazily (FastAPI >= 0.16x), their effective routes."""
    routes: list[Any] = []
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        routes.extend(contexts() if callable(contexts) else [route])
    return routes


def business_routes(app: FastAPI) -> list[tuple[str, str, tuple[str, str]]]:
    found = []
    for route in _all_routes(app):
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        for dep in dependant.dependencies:
            access = getattr(dep.call, "callerid_access", None)
            if access is not None:
                for method in sorted(route.methods or []):
                    found.append((method, route.path, access))
    # The hot endpoints answered before FastAPI's router (callerid.fastlane) run the same check.
    for fast in app.fast_routes:
        if fast.access is not None:
            found.extend((method, fast.path, fast.access) for method in fast.methods)
    return found


def fill_path(path: str, account_id: Any) -> str:
    path = path.replace("{clientAccountId}", str(account_id))
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


async def test_every_business_endpoint_checks_tokens(
    client: httpx.AsyncClient, app: FastAPI, db: Any, settings: Any, tenant: Tenant, auth: Any
) -> None:
    routes = business_routes(app)
    # Every endpoint of SPEC §1.4 except T is guarded (the sweep must see them all to mean anything).
    assert len({(method, path) for method, path, _ in routes}) >= 13, routes
    other = await create_tenant(db, settings, name="Other")
    no_access = await create_tenant(db, settings, name="NoAccess", access={"call_me_back": "none"})
    no_access_auth = {"Authorization": f"Bearer {await mint(client, no_access)}"}
    for method, path, (feature, level) in routes:
        mine = fill_path(path, tenant.account_id)
        cases = [
            ({}, mine, 401, MISSING),
            ({"Authorization": "Bearer nope"}, mine, 500, PARSE),
            ({"Authorization": "Bearer " + "Q" * 64}, mine, 401, LOGIN_AGAIN),
            (auth, fill_path(path, other.account_id), 403, FORBIDDEN),
            (no_access_auth, fill_path(path, no_access.account_id), 403, FORBIDDEN),
        ]
        for headers, url, status, body in cases:
            response = await client.request(method, url, headers=headers, json={})
            assert (response.status_code, response.json()) == (status, body), (method, path, feature, level)


# --- the in-memory moving window (no Redis) ----------------------------------------------------------------


def test_memory_windows_are_exact_moving_windows() -> None:
    windows = MemoryWindows()
    # 3 per 10 s: hits at 0, 1, 2 fill it; at 9.9 the oldest is still inside, at 10.0 it has left.
    assert [windows.hit("token", 3, 10.0, t) for t in (0.0, 1.0, 2.0)] == [None, None, None]
    wait = windows.hit("token", 3, 10.0, 9.9)
    assert wait is not None and abs(wait - 0.1) < 1e-9  # seconds until the hit at 0 leaves the window
    assert windows.hit("token", 3, 10.0, 10.0) is None
    assert windows.hit("token", 3, 10.0, 10.5) is not None  # 1, 2 and 10 inside
    # Other identities and other limits of the same identity have windows of their own.
    assert windows.hit("other", 3, 10.0, 10.5) is None
    assert windows.hit("token", 60, 60.0, 10.5) is None


def test_memory_windows_drop_idle_keys_but_keep_live_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from callerid.accounts import ratelimit

    monkeypatch.setattr(ratelimit, "SWEEP_AT_KEYS", 4)
    windows = MemoryWindows()
    windows._sweep_at = 4
    windows.hit("long", 1, 60.0, 0.0)  # a 60 s window, still live at t=30
    for name in ("a", "b", "c"):
        windows.hit(name, 5, 1.0, 0.0)  # 1 s windows, idle by t=30
    windows.hit("new", 5, 1.0, 30.0)  # the 5th key: sweeps the idle ones first
    assert len(windows) == 2
    assert windows.hit("long", 1, 60.0, 30.0) is not None  # its hit at 0 still counts


# --- the Redis windows: one script per check -------------------------------------------------------------------


def count_script_calls(limiter: RateLimiter) -> list[Any]:
    """The Redis script calls ``limiter`` makes from now on (one entry per round trip)."""
    calls: list[Any] = []
    original = limiter.redis.client.evalsha  # type: ignore[union-attr]

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return await original(*args, **kwargs)

    limiter.redis.client.evalsha = counted  # type: ignore[union-attr,method-assign]
    return calls


@requires_redis
async def test_redis_windows_count_all_limits_or_none_and_say_how_long_to_wait(tmp_path: Any) -> None:
    from limits import parse

    limiter = RateLimiter(make_settings("sqlite://", tmp_path, redis_url=REDIS_URL))
    identity = f"test-{uuid.uuid4().hex}"
    general, batches = parse("5/minute"), parse("2/minute")
    try:
        calls = count_script_calls(limiter)
        assert await limiter.hit_all((general, batches), identity) is None
        assert await limiter.hit_all((general, batches), identity) is None
        assert len(calls) == 2  # one round trip per check, for both limits
        wait = await limiter.hit_all((general, batches), identity)  # the batch limit is full
        assert wait is not None and 59 <= wait <= 60
        assert len(calls) == 3  # the refusal and its wait came in the same answer
        # The refused request was counted nowhere: three more general hits fit, the fourth does not.
        assert [await limiter.hit(general, identity) for _ in range(4)] == [None, None, None, 60]
        assert await limiter.blocked(general, identity) == 60  # looking counts nothing either
        assert await limiter.blocked(parse("1/second"), identity) is None
    finally:
        await limiter.reset()
        await limiter.close()


@requires_redis
async def test_concurrent_redis_checks_share_script_calls_and_count_exactly(tmp_path: Any) -> None:
    """Checks that arrive together go to Redis in one script call, in order: a full window refuses exactly the
    hits beyond its limit, whichever group they landed in, and a refused check counts nowhere."""
    from limits import parse

    limiter = RateLimiter(make_settings("sqlite://", tmp_path, redis_url=REDIS_URL))
    identities = [f"test-{uuid.uuid4().hex}" for _ in range(3)]
    general, batches = parse("7/minute"), parse("3/minute")
    try:
        calls = count_script_calls(limiter)
        # Per identity: 5 requests under both limits, then 5 under the general one only, all at once.
        checks = [limiter.hit_all((general, batches), identity) for identity in identities for _ in range(5)]
        checks += [limiter.hit(general, identity) for identity in identities for _ in range(5)]
        waits = await asyncio.gather(*checks)
        assert len(calls) < len(checks) / 4  # grouped: far fewer round trips than checks
        both, general_only = waits[:15], waits[15:]
        for index in range(3):
            mine = both[index * 5 : index * 5 + 5]
            assert mine[:3] == [None] * 3 and all(wait is not None and 59 <= wait <= 60 for wait in mine[3:])
            # 3 general hits counted by the allowed batch requests: 4 more fit, the 5th is refused.
            assert general_only[index * 5 : index * 5 + 5] == [None] * 4 + [60]
    finally:
        await limiter.reset()
        await limiter.close()


@requires_redis
async def test_redis_windows_are_moving_windows(tmp_path: Any) -> None:
    from limits import parse

    limiter = RateLimiter(make_settings("sqlite://", tmp_path, redis_url=REDIS_URL))
    identity = f"test-{uuid.uuid4().hex}"
    try:
        item = parse("2/second")
        assert [await limiter.hit(item, identity) for _ in range(3)] == [None, None, 1]
        await asyncio.sleep(1.05)  # Redis's own clock times these windows
        assert await limiter.hit(item, identity) is None
    finally:
        await limiter.reset()
        await limiter.close()
