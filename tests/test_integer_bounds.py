"""Integer parameters are bounded before they reach a query (issue 14 point 1): far beyond any database's integer
range, not ASCII digits, or past the last page, the answer is a 400 naming the parameter, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Tenant

HUGE = "1" + "0" * 30  # past BIGINT (and past Python's int-from-text limit when longer still)
BAD_VALUES = [HUGE, "9" * 5000, "²", "١٢", "-1", "0", "1.5", " 1", "1000001"]


@pytest.mark.parametrize(
    "path",
    [
        "/clients/{account}/labels",
        "/clients/{account}/number_management/feature_sets",
        "/clients/{account}/number_management/numbers",
    ],
)
async def test_page_and_limit_are_bounded(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], path: str
) -> None:
    url = path.format(account=tenant.account_id)
    for value in BAD_VALUES:
        response = await client.get(url, params={"page": value}, headers=auth)
        assert (response.status_code, response.json()) == (
            400,
            {"slug": "invalid-input", "message": "page is invalid"},
        ), value
    for value in [HUGE, "²", "1001", "0"]:
        response = await client.get(url, params={"limit": value}, headers=auth)
        assert (response.status_code, response.json()) == (
            400,
            {"slug": "invalid-input", "message": "limit is invalid"},
        ), value
    last = await client.get(url, params={"page": "1000000", "limit": "1000"}, headers=auth)
    assert last.status_code == 200  # the last page there can be: empty, not an error
