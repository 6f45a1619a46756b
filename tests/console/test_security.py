"""The console's access rules as a matrix: every route x every role, signed out, another account's ids, missing CSRF.

The expected permission of each route is written out here (not read from the code), and the test fails when a
console route exists that this table does not list, so a new page cannot skip the matrix.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from callerid.accounts.permissions import ROLE_PERMISSIONS, Permission
from callerid.config import Settings
from callerid.console.routes import (
    activity,
    analytics,
    api_keys,
    auth,
    call_me_back,
    call_records,
    feature_sets,
    home,
    labels,
    listing,
    members,
    numbers,
    organisation,
    settings,
    setup,
    surveys,
    webhooks,
)
from callerid.db import Database
from tests.console.conftest import World, browser, build_world, csrf_of, sign_in

P = Permission
# (method, path template) -> the permission a member needs. Path parameters are filled from World.objects.
PROTECTED: dict[tuple[str, str], Permission] = {
    ("GET", "/console"): P.VIEW_HOME,
    ("GET", "/console/organisation"): P.VIEW_ORGANISATION,
    ("GET", "/console/organisation/export.csv"): P.VIEW_ORGANISATION,
    ("GET", "/console/organisation/new"): P.MANAGE_ORGANISATION,
    ("POST", "/console/organisation"): P.MANAGE_ORGANISATION,
    ("GET", "/console/organisation/{node_id}/rename"): P.MANAGE_ORGANISATION,
    ("POST", "/console/organisation/{node_id}/rename"): P.MANAGE_ORGANISATION,
    ("GET", "/console/organisation/{node_id}/archive"): P.MANAGE_ORGANISATION,
    ("POST", "/console/organisation/{node_id}/archive"): P.MANAGE_ORGANISATION,
    ("POST", "/console/organisation/{node_id}/restore"): P.MANAGE_ORGANISATION,
    ("GET", "/console/caller-id"): P.VIEW_LABELS,
    ("GET", "/console/caller-id/export.csv"): P.VIEW_LABELS,
    ("GET", "/console/caller-id/{label_id}"): P.VIEW_LABELS,
    ("GET", "/console/caller-id/new"): P.MANAGE_LABELS,
    ("GET", "/console/caller-id/new/sub-categories"): P.MANAGE_LABELS,
    ("POST", "/console/caller-id"): P.MANAGE_LABELS,
    ("GET", "/console/api-keys"): P.MANAGE_API_KEYS,
    ("GET", "/console/api-keys/new"): P.MANAGE_API_KEYS,
    ("POST", "/console/api-keys"): P.MANAGE_API_KEYS,
    ("GET", "/console/api-keys/{entry}/regenerate"): P.MANAGE_API_KEYS,
    ("POST", "/console/api-keys/{entry}/regenerate"): P.MANAGE_API_KEYS,
    ("GET", "/console/api-keys/{entry}/delete"): P.MANAGE_API_KEYS,
    ("POST", "/console/api-keys/{entry}/delete"): P.MANAGE_API_KEYS,
    ("GET", "/console/webhooks"): P.MANAGE_WEBHOOKS,
    ("GET", "/console/webhooks/new"): P.MANAGE_WEBHOOKS,
    ("POST", "/console/webhooks"): P.MANAGE_WEBHOOKS,
    ("GET", "/console/webhooks/{webhook_id}"): P.MANAGE_WEBHOOKS,
    ("POST", "/console/webhooks/{webhook_id}"): P.MANAGE_WEBHOOKS,
    ("POST", "/console/webhooks/{webhook_id}/test"): P.MANAGE_WEBHOOKS,
    ("GET", "/console/webhooks/{webhook_id}/{action}"): P.MANAGE_WEBHOOKS,
    ("POST", "/console/webhooks/{webhook_id}/rotate-secret"): P.MANAGE_WEBHOOKS,
    ("POST", "/console/webhooks/{webhook_id}/delete"): P.MANAGE_WEBHOOKS,
    ("GET", "/console/webhooks/events"): P.MANAGE_WEBHOOKS,
    ("GET", "/console/webhooks/events/export.csv"): P.MANAGE_WEBHOOKS,
    ("GET", "/console/webhooks/events/retry-failed"): P.MANAGE_WEBHOOKS,
    ("POST", "/console/webhooks/events/retry-failed"): P.MANAGE_WEBHOOKS,
    ("GET", "/console/webhooks/events/{event_id}"): P.MANAGE_WEBHOOKS,
    ("POST", "/console/webhooks/events/{event_id}/resend"): P.MANAGE_WEBHOOKS,
    ("GET", "/console/webhooks/retry-runs/{run_id}"): P.MANAGE_WEBHOOKS,
    ("GET", "/console/webhooks/retry-runs/{run_id}/progress"): P.MANAGE_WEBHOOKS,
    ("GET", "/console/feature-sets"): P.VIEW_FEATURE_SETS,
    ("GET", "/console/feature-sets/export.csv"): P.VIEW_FEATURE_SETS,
    ("GET", "/console/feature-sets/new"): P.MANAGE_FEATURE_SETS,
    ("POST", "/console/feature-sets"): P.MANAGE_FEATURE_SETS,
    ("GET", "/console/feature-sets/{feature_set_id}"): P.VIEW_FEATURE_SETS,
    ("GET", "/console/feature-sets/{feature_set_id}/edit"): P.MANAGE_FEATURE_SETS,
    ("POST", "/console/feature-sets/{feature_set_id}"): P.MANAGE_FEATURE_SETS,
    ("GET", "/console/feature-sets/{feature_set_id}/call-me-back"): P.MANAGE_FEATURE_SETS,
    ("GET", "/console/feature-sets/{feature_set_id}/call-me-back/window"): P.MANAGE_FEATURE_SETS,
    ("POST", "/console/feature-sets/{feature_set_id}/call-me-back"): P.MANAGE_FEATURE_SETS,
    ("GET", "/console/members"): P.VIEW_MEMBERS,
    ("GET", "/console/members/roles"): P.VIEW_MEMBERS,
    ("GET", "/console/members/invite"): P.MANAGE_MEMBERS,
    ("GET", "/console/members/scope-field"): P.MANAGE_MEMBERS,
    ("POST", "/console/members/invite"): P.MANAGE_MEMBERS,
    ("GET", "/console/members/{member}"): P.VIEW_MEMBERS,
    ("POST", "/console/members/{member}/role"): P.MANAGE_MEMBERS,
    ("GET", "/console/members/{member}/{action}"): P.MANAGE_MEMBERS,
    ("POST", "/console/members/{member}/{action}"): P.MANAGE_MEMBERS,
    ("GET", "/console/numbers"): P.VIEW_NUMBERS,
    ("GET", "/console/numbers/export.csv"): P.VIEW_NUMBERS,
    ("GET", "/console/numbers/delist"): P.MANAGE_NUMBERS,
    ("POST", "/console/numbers/delist"): P.MANAGE_NUMBERS,
    ("GET", "/console/feature-sets/{feature_set_id}/listing"): P.MANAGE_NUMBERS,
    ("POST", "/console/feature-sets/{feature_set_id}/listing/preview"): P.MANAGE_NUMBERS,
    ("POST", "/console/feature-sets/{feature_set_id}/listing"): P.MANAGE_NUMBERS,
    ("GET", "/console/feature-sets/{feature_set_id}/listing/jobs/{job_id}"): P.VIEW_NUMBERS,
    ("GET", "/console/feature-sets/{feature_set_id}/listing/jobs/{job_id}/progress"): P.VIEW_NUMBERS,
    ("GET", "/console/settings"): P.OWN_PROFILE,
    ("POST", "/console/settings/account"): P.MANAGE_ACCOUNT,
    ("POST", "/console/settings/password"): P.OWN_PROFILE,
    ("POST", "/console/settings/two-factor"): P.OWN_PROFILE,
    ("POST", "/console/settings/sessions/end-others"): P.OWN_PROFILE,
    # Call activity: Call Me Back and survey answers per feature set (owners: theirs); call records admins only.
    ("GET", "/console/activity"): P.VIEW_ACTIVITY,
    ("GET", "/console/activity/call-me-back"): P.VIEW_ACTIVITY,
    ("GET", "/console/activity/call-me-back/export.csv"): P.VIEW_ACTIVITY,
    ("GET", "/console/activity/survey-answers"): P.VIEW_ACTIVITY,
    ("GET", "/console/activity/survey-answers/export.csv"): P.VIEW_ACTIVITY,
    ("GET", "/console/activity/batches"): P.VIEW_CALL_RECORDS,
    ("GET", "/console/activity/batches/export.csv"): P.VIEW_CALL_RECORDS,
    ("GET", "/console/activity/batches/{batch_id}"): P.VIEW_CALL_RECORDS,
    ("GET", "/console/activity/batches/{batch_id}/export.csv"): P.VIEW_CALL_RECORDS,
    ("GET", "/console/activity/records/{record}"): P.VIEW_CALL_RECORDS,
    ("GET", "/console/activity/real-time"): P.VIEW_CALL_RECORDS,
    ("GET", "/console/activity/real-time/export.csv"): P.VIEW_CALL_RECORDS,
    ("GET", "/console/activity/search"): P.VIEW_CALL_RECORDS,
    ("GET", "/console/activity/search/export.csv"): P.VIEW_CALL_RECORDS,
    # Analytics: figures of the account (owners: of their subtree); the weekly report switch is the member's own.
    ("GET", "/console/analytics"): P.VIEW_ANALYTICS,
    ("GET", "/console/analytics/export.csv"): P.VIEW_ANALYTICS,
    ("POST", "/console/settings/weekly-report"): P.OWN_PROFILE,
    ("GET", "/console/surveys"): P.VIEW_FEATURE_SETS,
    ("GET", "/console/surveys/export.csv"): P.VIEW_FEATURE_SETS,
    ("GET", "/console/surveys/new"): P.MANAGE_FEATURE_SETS,
    ("GET", "/console/feature-sets/{feature_set_id}/survey"): P.VIEW_FEATURE_SETS,
    ("POST", "/console/feature-sets/{feature_set_id}/survey"): P.MANAGE_FEATURE_SETS,
    ("POST", "/console/feature-sets/{feature_set_id}/survey/status"): P.MANAGE_FEATURE_SETS,
    # First-run setup: admins only (it creates departments and labels, account-wide things).
    ("GET", "/console/setup"): P.SET_UP_ACCOUNT,
    ("GET", "/console/setup/operation"): P.SET_UP_ACCOUNT,
    ("GET", "/console/setup/process"): P.SET_UP_ACCOUNT,
    ("GET", "/console/setup/feature-set"): P.SET_UP_ACCOUNT,
    ("GET", "/console/setup/label"): P.SET_UP_ACCOUNT,
    ("GET", "/console/setup/numbers"): P.SET_UP_ACCOUNT,
    ("GET", "/console/setup/done"): P.SET_UP_ACCOUNT,
    ("POST", "/console/setup/operation"): P.SET_UP_ACCOUNT,
    ("POST", "/console/setup/process"): P.SET_UP_ACCOUNT,
    ("POST", "/console/setup/feature-set"): P.SET_UP_ACCOUNT,
    ("POST", "/console/setup/label"): P.SET_UP_ACCOUNT,
    ("POST", "/console/setup/numbers/preview"): P.SET_UP_ACCOUNT,
    ("POST", "/console/setup/numbers"): P.SET_UP_ACCOUNT,
    ("POST", "/console/setup/skip"): P.SET_UP_ACCOUNT,
    ("POST", "/console/setup/start-again"): P.SET_UP_ACCOUNT,
    ("POST", "/console/setup/dismiss"): P.SET_UP_ACCOUNT,
    ("POST", "/console/setup/finish"): P.SET_UP_ACCOUNT,
}
PUBLIC = {
    ("GET", "/"),
    ("GET", "/console/sign-in"),
    ("POST", "/console/sign-in"),
    ("GET", "/console/sign-in/code"),
    ("POST", "/console/sign-in/code"),
    ("POST", "/console/sign-in/code/resend"),
    ("POST", "/console/sign-out"),
    ("GET", "/console/forgot-password"),
    ("POST", "/console/forgot-password"),
    ("GET", "/console/reset-password/{token}"),
    ("POST", "/console/reset-password/{token}"),
    ("GET", "/console/invitation/{token}"),
    ("POST", "/console/invitation/{token}"),
}
ACTIONS = {"/console/webhooks/{webhook_id}/{action}": "delete", "/console/members/{member}/{action}": "revoke"}
ROLES = ("admin", "department_owner", "operation_owner", "process_owner")
PARAM = re.compile(r"\{(\w+)\}")


def console_routes() -> set[tuple[str, str]]:
    found = set()
    CONSOLE_MODULES = (
        auth,
        home,
        organisation,
        api_keys,
        labels,
        listing,
        feature_sets,
        call_me_back,
        numbers,
        activity,
        analytics,
        call_records,
        webhooks,
        members,
        settings,
        surveys,
        setup,
    )
    for module in CONSOLE_MODULES:
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            for method in route.methods:
                found.add((method, route.path))
    return found


def test_every_console_route_is_in_the_matrix() -> None:
    assert console_routes() == set(PROTECTED) | PUBLIC


def fill(template: str, objects: dict[str, str]) -> str:
    path = template.replace("{action}", ACTIONS.get(template, ""))
    return PARAM.sub(lambda match: objects[match.group(1)], path)


@pytest.fixture
async def worlds(db: Database, settings: Settings) -> tuple[World, World]:
    return await build_world(db, settings, "Acme Flowers"), await build_world(db, settings, "Other Co")


def assert_console_headers(response: httpx.Response) -> None:
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_signed_out_visitors_are_sent_to_sign_in(app: Any, worlds: tuple[World, World]) -> None:
    mine, _ = worlds
    async with browser(app) as http:
        for (method, template), _permission in PROTECTED.items():
            path = fill(template, mine.objects)
            response = await http.request(method, path, data={"csrf_token": "x"} if method == "POST" else None)
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/console/sign-in"), (method, path)
            assert_console_headers(response)
        # htmx asks get a 401 with a redirect header instead, so the whole page (not a fragment) goes to sign-in.
        response = await http.get("/console/webhooks", headers={"HX-Request": "true"})
        assert response.status_code == 401
        assert response.headers["hx-redirect"] == "/console/sign-in?next=%2Fconsole%2Fwebhooks"
    root = await http_get(app, "/")
    assert (root.status_code, root.headers["location"]) == (307, "/console")


async def http_get(app: Any, path: str) -> httpx.Response:
    async with browser(app) as http:
        return await http.get(path)


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_gets_exactly_its_routes_and_never_another_accounts_objects(
    app: Any, worlds: tuple[World, World], role: str
) -> None:
    mine, theirs = worlds
    person = mine.people[role]
    granted = ROLE_PERMISSIONS[role]
    async with browser(app) as http:
        assert (await sign_in(http, person.email, person.password)).status_code == 303
        home_page = await http.get("/console")
        csrf = csrf_of(home_page.text)
        for (method, template), permission in PROTECTED.items():
            has_params = "{" in template
            if method == "GET":
                response = await http.get(fill(template, mine.objects))
                if permission not in granted:
                    assert response.status_code == 403, (role, template, response.status_code)
                    assert "Not allowed" in response.text
                else:
                    assert response.status_code == 200, (role, template, response.status_code, response.text[:500])
                assert_console_headers(response)
            if has_params:
                # Another account's ids: the same answer as an id that does not exist, for reads and writes.
                other = fill(template, theirs.objects)
                data = {"csrf_token": csrf} if method == "POST" else None
                response = await http.request(method, other, data=data)
                expected = 404 if permission in granted else 403
                assert response.status_code == expected, (role, method, other, response.status_code)
            if method == "POST" and permission in granted:
                # Without the CSRF token nothing happens, whoever asks.
                response = await http.post(fill(template, mine.objects), data={})
                assert response.status_code == 403, (role, template, response.status_code)
                assert "This form has expired" in response.text


async def test_owners_see_and_manage_only_their_subtree(app: Any, worlds: tuple[World, World]) -> None:
    mine, _ = worlds
    outsider = mine.people["outsider"]  # department owner of Support, outside Sales
    async with browser(app) as http:
        person = mine.people["department_owner"]
        await sign_in(http, person.email, person.password)
        listing = await http.get("/console/members")
        shown = set(re.findall(r'href="/console/members/([0-9a-f-]{36})"', listing.text))
        expected = {str(mine.people[r].member_id) for r in ("department_owner", "operation_owner", "process_owner")}
        assert shown == expected
        assert (await http.get(f"/console/members/{outsider.member_id}")).status_code == 404
        assert (await http.get(f"/console/members/{mine.people['admin'].member_id}")).status_code == 404
        csrf = csrf_of(listing.text)
        revoke = await http.post(f"/console/members/{outsider.member_id}/revoke", data={"csrf_token": csrf})
        assert revoke.status_code == 404
    async with browser(app) as http:
        person = mine.people["process_owner"]
        await sign_in(http, person.email, person.password)
        listing = await http.get("/console/members")
        shown = set(re.findall(r'href="/console/members/([0-9a-f-]{36})"', listing.text))
        assert shown == {str(person.member_id)}
        # An owner cannot raise anyone above their own level, nor bind them outside their subtree.
        csrf = csrf_of(listing.text)
        invite = await http.post(
            "/console/members/invite",
            data={"csrf_token": csrf, "email": "x@example.com", "role": "operation_owner", "scope": ""},
        )
        assert invite.status_code == 400
        assert "you can only give roles at or below your own" in invite.text
        invite = await http.post(
            "/console/members/invite",
            data={
                "csrf_token": csrf,
                "email": "x@example.com",
                "role": "process_owner",
                "scope": str(mine.nodes["support"]),
            },
        )
        assert invite.status_code == 400
        assert "choose a process of this account" in invite.text
