"""Text the console stores or looks up (callerid.display_text), on both databases: a NUL (which PostgreSQL cannot
hold) or, in what phones show, an undisplayable character is refused next to its field with the services' own
message; scripts and emoji are kept; a search or sign-in with a NUL answers instead of failing."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from callerid.db import Database
from callerid.labels.models import Label
from tests.console.conftest import ConsoleAccount, browser, page_csrf
from tests.console.test_api_keys_and_labels import create_key, create_label
from tests.labels.images import image_bytes


def error_of(field: str, message: str) -> str:
    return f'<p class="error" id="{field}-error">{message}</p>'


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": "back\x00end"}, "name", "API key name contains characters that cannot be stored"),
        ({"description": "orders\x00"}, "description", "API key description contains characters that cannot be stored"),
    ],
)
async def test_api_key_text_with_a_nul_is_refused_next_to_its_field(
    admin: httpx.AsyncClient, fields: dict[str, str], field: str, message: str
) -> None:
    response = await create_key(admin, **{"name": "backend", **fields})
    assert response.status_code == 400
    assert error_of(field, message) in response.text


@pytest.mark.parametrize("char", ["\x00", "\n", "\u202e", "\u2066", "\u200b", "\ufeff", "\ue000"])
async def test_a_label_name_phones_cannot_display_is_refused(admin: httpx.AsyncClient, db: Database, char: str) -> None:
    response = await create_label(admin, image_bytes(), name=f"Acme{char}Flowers")
    assert response.status_code == 400
    assert error_of("name", "name contains characters that cannot be displayed") in response.text
    async with db.session() as session:
        assert (await session.scalar(select(Label.id))) is None


@pytest.mark.parametrize("name", ["नमस्ते फूल", "مرحبا", "鲜花速递", "👨‍👩‍👧 Family", "❤️ Flowers"])
async def test_a_label_name_in_any_script_is_kept_exactly(
    admin: httpx.AsyncClient, db: Database, console_account: ConsoleAccount, name: str
) -> None:
    response = await create_label(admin, image_bytes(), name=name)
    assert response.status_code == 303, response.text
    async with db.session() as session:
        stored = await session.scalar(select(Label.name).where(Label.account_id == console_account.account_id))
    assert stored == name


async def test_searching_labels_for_a_nul_finds_nothing(admin: httpx.AsyncClient) -> None:
    assert (await create_label(admin, image_bytes(), name="Rose Garden")).status_code == 303
    assert "Rose Garden" in (await admin.get("/console/caller-id", params={"q": "rose"})).text
    listing = await admin.get("/console/caller-id", params={"q": "Rose\x00"})
    assert listing.status_code == 200 and "Rose Garden" not in listing.text
    exported = await admin.get("/console/caller-id/export.csv", params={"q": "\x00"})
    assert exported.status_code == 200 and len(exported.text.splitlines()) == 1


async def test_an_account_name_with_a_nul_is_refused(admin: httpx.AsyncClient) -> None:
    csrf = await page_csrf(admin, "/console/settings")
    response = await admin.post(
        "/console/settings/account", data={"csrf_token": csrf, "name": "Acme\x00Gifts", "timezone": "Asia/Kolkata"}
    )
    assert response.status_code == 400
    assert error_of("name", "account name contains characters that cannot be stored") in response.text


async def test_an_invitation_to_an_address_with_a_nul_is_refused(admin: httpx.AsyncClient) -> None:
    csrf = await page_csrf(admin, "/console/members/invite")
    response = await admin.post(
        "/console/members/invite",
        data={"csrf_token": csrf, "email": "new\x00@example.com", "role": "admin", "scope": ""},
    )
    assert response.status_code == 400
    assert "is not a valid e-mail address" in response.text


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": "Ord\x00ers"}, "name", "name contains characters that cannot be stored"),
        ({"url": "https://example.com/\x00hook"}, "url", "url is not a valid URL"),
    ],
)
async def test_webhook_text_with_a_nul_is_refused_next_to_its_field(
    admin: httpx.AsyncClient, fields: dict[str, str], field: str, message: str
) -> None:
    csrf = await page_csrf(admin, "/console/webhooks/new")
    data = {"csrf_token": csrf, "name": "Orders", "url": "http://127.0.0.1:9/hook", "event_cmb": "on", **fields}
    response = await admin.post("/console/webhooks", data=data)
    assert response.status_code == 400
    assert f'<p class="error" id="{field}-error">{message}' in response.text


@pytest.mark.parametrize("path", ["/console/sign-in", "/console/forgot-password"])
async def test_signing_in_or_resetting_with_a_nul_in_the_address_is_an_answer(app: object, path: str) -> None:
    async with browser(app) as http:
        csrf = await page_csrf(http, path)
        response = await http.post(
            path, data={"csrf_token": csrf, "email": "admin\x00@example.com", "password": "x", "next": ""}
        )
    assert response.status_code == 400
    assert error_of("email", "Enter a valid e-mail address") in response.text
