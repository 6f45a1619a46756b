"""Domain errors (``callerid.failures``) and their one map to HTTP (``callerid.errors``): each kind answers its status
with ``{"slug", "message"}``, through the routes, the fast lane and the WebSocket alike; the CLI prints each as
``error: <message>`` (issue 15 point 3)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from callerid import errors, failures
from callerid.accounts import permissions, signin
from callerid.accounts import service as accounts
from callerid.cli.common import run_with_db
from callerid.engagement import service as engagement
from callerid.fastlane import FastRequest, FastResponse, FastRoute, operation
from callerid.labels.service import LabelError
from callerid.numbers.service import NumbersError
from callerid.webhooks import service as webhooks

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def body(slug: str, message: str) -> dict[str, str]:
    return {"slug": slug, "message": message}


# (error, status, body)
FAMILY: list[tuple[failures.DomainError, int, dict[str, str]]] = [
    (failures.InvalidInput("name is required"), 400, body("invalid-input", "name is required")),
    (failures.Unauthorized("please login again"), 401, body("authorization-error", "please login again")),
    (failures.Forbidden(), 403, body("forbidden-error", "not authorized. please contact your admin.")),
    (failures.NotFound(), 404, body("not-found", "not found")),
    (failures.NotFound("survey not found"), 404, body("not-found", "survey not found")),
    (failures.Conflict("surveys are not enabled"), 409, body("conflict", "surveys are not enabled")),
    (failures.Gone("registration-ended", "register again"), 410, body("registration-ended", "register again")),
    (failures.LimitExceeded(retry_after=3), 429, body("rate-limit-exceeded", "too many requests")),
    (failures.UpstreamFailed("sms-not-sent", "try again later"), 502, body("sms-not-sent", "try again later")),
    (failures.Unavailable("sms-not-configured", "no gateway"), 503, body("sms-not-configured", "no gateway")),
    (failures.DomainError("invalid-input", "a bare rule"), 400, body("invalid-input", "a bare rule")),
]


@pytest.mark.parametrize(("error", "status", "expected"), FAMILY, ids=[type(e).__name__ for e, _, _ in FAMILY])
def test_each_kind_maps_to_its_status_and_the_common_body(
    error: failures.DomainError, status: int, expected: dict[str, str]
) -> None:
    problem = errors.problem_of(error)
    assert (problem.status_code, problem.body()) == (status, expected)
    assert errors.status_of(error) == status
    assert errors.body_of(error) == expected
    assert str(error) == error.message == expected["message"]


def test_every_kind_in_the_family_has_a_status() -> None:
    kinds = [
        value for value in vars(failures).values() if inspect.isclass(value) and issubclass(value, failures.DomainError)
    ]
    assert set(kinds) == set(errors.STATUS)


def test_only_a_limit_carries_a_header_and_its_retry_after_is_never_0() -> None:
    assert errors.problem_of(failures.LimitExceeded(retry_after=0)).headers == {"Retry-After": "1"}
    assert errors.problem_of(failures.LimitExceeded("wait", retry_after=42)).headers == {"Retry-After": "42"}
    for error, _, _ in FAMILY:
        if not isinstance(error, failures.LimitExceeded):
            assert errors.problem_of(error).headers is None


def test_an_api_error_is_its_own_answer() -> None:
    problem = errors.ApiError(426, "upgrade-required", "use a WebSocket")
    assert errors.problem_of(problem) is problem


# (domain error, status, the domain's own class its front ends catch)
DOMAIN: list[tuple[failures.DomainError, int, type[Exception]]] = [
    (accounts.AccountsError("password is too short", field="password"), 400, accounts.AccountsError),
    (accounts.LimitReached("at most 5 API keys"), 400, accounts.AccountsError),
    (accounts.NotFound("API key not found"), 404, accounts.AccountsError),
    (signin.Throttled("Too many failed sign-ins", 60), 429, accounts.AccountsError),
    (accounts.TokenMintLimit("maximum of 10 tokens", retry_after=5), 429, failures.LimitExceeded),
    (permissions.Forbidden(permissions.Permission.MANAGE_MEMBERS), 403, failures.Forbidden),
    (webhooks.WebhooksError("url is invalid"), 400, webhooks.WebhooksError),
    (webhooks.NotFound("webhook not found"), 404, webhooks.WebhooksError),
    (webhooks.LimitReached("at most 10 webhooks"), 400, webhooks.WebhooksError),
    (LabelError("name is invalid"), 400, LabelError),
    (NumbersError("department not found"), 400, NumbersError),
    (engagement.EngagementError("questions must be different"), 400, engagement.EngagementError),
    (engagement.NothingInRange(engagement.NO_CMB), 404, failures.NotFound),
]


@pytest.mark.parametrize(("error", "status", "caught_as"), DOMAIN, ids=[type(e).__name__ for e, _, _ in DOMAIN])
def test_a_domains_own_errors_answer_as_the_kind_they_derive_from(
    error: failures.DomainError, status: int, caught_as: type[Exception]
) -> None:
    assert isinstance(error, caught_as)
    assert errors.status_of(error) == status
    assert errors.body_of(error) == {"slug": error.slug, "message": error.message}


def test_a_field_and_a_retry_after_survive_the_double_descent() -> None:
    throttled = signin.Throttled("Too many e-mails", 90)
    assert (throttled.slug, throttled.retry_after, throttled.field) == ("rate-limit-exceeded", 90, None)
    missing = accounts.NotFound("member not found")
    assert (missing.slug, missing.message) == ("not-found", "member not found")
    assert accounts.AccountsError("choose a role", "role").field == "role"


@SQLITE_ONLY
async def test_routes_and_the_fast_lane_answer_every_kind_alike(app: Any, client: httpx.AsyncClient) -> None:
    @app.get("/probe/domain-error/{index}")
    async def raise_kind(index: int) -> Any:
        raise FAMILY[index][0]

    async def fast(request: FastRequest) -> FastResponse:
        raise FAMILY[int(request.path_params["index"])][0]

    route = FastRoute(
        ("GET",),
        r"/probe/fast-error/{index}",
        fast,
        operation("f", summary="-", description="-", tags=[], responses={}),
    )
    await client.get("/healthz")  # the middleware stack is built on the first request
    lane = app.middleware_stack.app  # RequestLimits -> FastLane
    lane.routes.append(route)
    try:
        for index, (error, status, expected) in enumerate(FAMILY):
            for path in (f"/probe/domain-error/{index}", f"/probe/fast-error/{index}"):
                response = await client.get(path)
                assert (response.status_code, response.json()) == (status, expected), (path, error)
                assert response.headers["content-type"] == "application/json; charset=utf-8"
                if isinstance(error, failures.LimitExceeded):
                    assert response.headers["retry-after"] == str(error.retry_after)
                else:
                    assert "retry-after" not in response.headers
    finally:
        lane.routes.remove(route)


@pytest.mark.parametrize(
    "error",
    [
        failures.InvalidInput("name [bad] is invalid"),
        accounts.NotFound("account 7 not found"),
        signin.Throttled("wait", 5),
    ],
    ids=lambda e: type(e).__name__,
)
def test_the_cli_prints_every_domain_error_in_one_place(
    error: failures.DomainError, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLERID_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("CALLERID_DATA_DIR", str(tmp_path / "data"))

    async def command(*_: Any) -> None:
        raise error

    with pytest.raises(typer.Exit) as ended:
        run_with_db(command)
    assert ended.value.exit_code == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"error: {error.message}\n")
