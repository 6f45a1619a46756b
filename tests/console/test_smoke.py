from __future__ import annotations

import httpx

from tests.console.conftest import page_csrf


async def test_pages_render(admin: httpx.AsyncClient) -> None:
    for path in (
        "/console",
        "/console/api-keys",
        "/console/api-keys/new",
        "/console/caller-id",
        "/console/caller-id/new",
        "/console/webhooks",
        "/console/webhooks/new",
        "/console/webhooks/events",
        "/console/webhooks/events/retry-failed",
        "/console/members",
        "/console/members/roles",
        "/console/members/invite",
        "/console/settings",
    ):
        response = await admin.get(path)
        assert response.status_code == 200, (path, response.text[-3000:])
    csrf = await page_csrf(admin)
    created = await admin.post(
        "/console/api-keys",
        data={
            "csrf_token": csrf,
            "name": "backend",
            "description": "",
            "access_call_personalisation": "write",
            "access_number_management": "read",
            "access_call_me_back": "none",
            "access_user_feedback": "none",
        },
    )
    assert created.status_code == 200, created.text
    assert "I have saved it" in created.text
