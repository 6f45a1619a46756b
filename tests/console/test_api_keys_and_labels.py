"""API keys and caller-ID labels through the console: the same rules as the API and CLI, secrets shown once,
errors next to their field, names shown as text."""

from __future__ import annotations

import io
import re
import uuid
from typing import Any
from urllib.parse import unquote

import httpx
from PIL import Image
from sqlalchemy import select

from callerid.config import FEATURES
from callerid.db import Database
from callerid.labels.models import Label
from tests.console.conftest import ConsoleAccount, page_csrf
from tests.labels.images import image_bytes, png_of_exact_length, png_with_corrupt_pixels

ACCESS = {f"access_{feature}": "write" for feature in FEATURES}


async def create_key(admin: httpx.AsyncClient, name: str, **fields: str) -> httpx.Response:
    csrf = await page_csrf(admin, "/console/api-keys/new")
    return await admin.post("/console/api-keys", data={"csrf_token": csrf, "name": name, **ACCESS, **fields})


def shown_secret(page: str, label: str) -> str:
    found = re.search(rf"<dt>{label}</dt>\s*<dd>.*?<code class=\"mono\">([^<]+)</code>", page, re.S)
    assert found is not None, f"{label} not shown"
    return found.group(1)


async def mint(http: httpx.AsyncClient, account_id: uuid.UUID, key_id: str, api_key: str) -> int:
    response = await http.post(
        f"/clients/{account_id}/token",
        json={"key_id": key_id, "api_key": api_key},
        headers={"X-Public-Access": "allow"},
    )
    return response.status_code


async def test_an_api_key_is_created_shown_once_regenerated_and_deleted(
    admin: httpx.AsyncClient, console_account: ConsoleAccount
) -> None:
    created = await create_key(
        admin, "backend", description="orders", access_number_management="read", access_user_feedback="none"
    )
    assert created.status_code == 200
    assert created.headers["cache-control"] == "no-store"
    key_id, secret = shown_secret(created.text, "key_id"), shown_secret(created.text, "api_key")
    assert shown_secret(created.text, "Client account id") == str(console_account.account_id)
    assert "It will not be shown again" in created.text
    download = re.search(
        r'download="(callerid-api-key-backend\.json)" href="data:application/json;charset=utf-8,([^"]+)"', created.text
    )
    assert download is not None
    assert f'"api_key": "{secret}"' in unquote(download.group(2))
    assert await mint(admin, console_account.account_id, key_id, secret) == 200

    listing = await admin.get("/console/api-keys")
    assert secret not in listing.text  # never again
    assert key_id in listing.text and "orders" in listing.text
    assert str(console_account.account_id) in listing.text
    entry = re.search(r'href="/console/api-keys/([0-9a-f-]{36})/regenerate"', listing.text)
    assert entry is not None

    confirm = await admin.get(f"/console/api-keys/{entry.group(1)}/regenerate")
    assert "Regenerate backend?" in confirm.text
    assert "1 token minted from it is revoked" in confirm.text
    regenerated = await admin.post(
        f"/console/api-keys/{entry.group(1)}/regenerate", data={"csrf_token": await page_csrf(admin)}
    )
    new_key_id, new_secret = shown_secret(regenerated.text, "key_id"), shown_secret(regenerated.text, "api_key")
    assert new_key_id != key_id
    assert await mint(admin, console_account.account_id, key_id, secret) == 401
    assert await mint(admin, console_account.account_id, new_key_id, new_secret) == 200

    deleted = await admin.post(
        f"/console/api-keys/{entry.group(1)}/delete", data={"csrf_token": await page_csrf(admin)}
    )
    assert deleted.status_code == 303
    assert await mint(admin, console_account.account_id, new_key_id, new_secret) == 401
    after = await admin.get("/console/api-keys")
    assert '<p class="flash" role="status">API key backend deleted</p>' in after.text
    assert "No API keys yet" in after.text
    # The flash is shown once.
    assert "API key backend deleted" not in (await admin.get("/console/api-keys")).text


async def test_the_sixth_key_is_refused_and_bad_input_is_shown_next_to_its_field(
    admin: httpx.AsyncClient, settings: Any
) -> None:
    blank = await create_key(admin, "  ")
    assert blank.status_code == 400
    assert '<p class="error" id="name-error">API key name must be between 1 and 100 characters</p>' in blank.text
    bad_level = await create_key(admin, "x", access_call_me_back="admin")
    assert (
        '<p class="error" id="access_call_me_back-error">choose an access level for Call Me Back</p>' in bad_level.text
    )
    for number in range(settings.max_api_keys_per_account):
        assert (await create_key(admin, f"key {number}")).status_code == 200
    sixth = await create_key(admin, "one too many")
    assert sixth.status_code == 400
    assert "an account can have at most 5 API keys; delete one first" in sixth.text
    listing = await admin.get("/console/api-keys")
    assert "Create API key</a>" not in listing.text
    assert "This account has 5 of 5 API keys" in listing.text


async def create_label(admin: httpx.AsyncClient, logo: bytes | None, **fields: str) -> httpx.Response:
    csrf = await page_csrf(admin, "/console/caller-id/new")
    data = {
        "csrf_token": csrf,
        "name": "Acme Flowers",
        "label_type": "dynamic",
        "category": "10",
        "sub_category": "142",
    }
    data.update(fields)
    files = {"logo": ("logo.png", logo, "image/png")} if logo is not None else None
    return await admin.post("/console/caller-id", data=data, files=files)


async def test_a_label_with_a_logo_is_created_and_listed(
    admin: httpx.AsyncClient, db: Database, console_account: ConsoleAccount
) -> None:
    created = await create_label(admin, image_bytes())
    assert created.status_code == 303
    async with db.session() as session:
        label = await session.scalar(select(Label).where(Label.account_id == console_account.account_id))
    assert label is not None
    assert (label.name, label.category, label.sub_category) == ("Acme Flowers", 10, 142)
    assert label.created_by_email == console_account.email
    assert created.headers["location"] == f"/console/caller-id/{label.id}"
    page = await admin.get(created.headers["location"])
    assert f'src="/logos/{label.logo_key}.png"' in page.text
    assert "Retail and e-commerce / Flowers and gifts" in page.text
    logo = await admin.get(f"/logos/{label.logo_key}.png")
    with Image.open(io.BytesIO(logo.content)) as image:
        assert image.size == (200, 200)
    listing = await admin.get("/console/caller-id")
    assert str(label.id) in listing.text and 'aria-label="Copy label id of Acme Flowers"' in listing.text
    exported = await admin.get("/console/caller-id/export.csv?q=acme")
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert exported.text.splitlines()[1].startswith(f"{label.id},Acme Flowers,dynamic,Retail and e-commerce,")
    assert len((await admin.get("/console/caller-id/export.csv?q=nothing-like-it")).text.splitlines()) == 1


async def test_every_logo_and_category_rule_is_shown_next_to_its_field(admin: httpx.AsyncClient, db: Database) -> None:
    cases = [
        ({"logo": None}, "logo", "logo is required: a PNG of exactly 200x200 pixels, under 2 MB"),
        ({"logo": image_bytes((201, 200))}, "logo", "logo must be exactly 200x200 pixels (it is 201x200)"),
        ({"logo": image_bytes(image_format="JPEG")}, "logo", "logo must be a PNG image (it is JPEG)"),
        ({"logo": b"not an image"}, "logo", "logo must be a PNG image"),
        ({"logo": png_with_corrupt_pixels()}, "logo", "logo must be a PNG image (the file is damaged)"),
        (
            {"logo": png_of_exact_length(2 * 1024 * 1024)},
            "logo",
            "logo must be smaller than 2 MB (2,097,152 bytes); it has 2,097,152 bytes",
        ),
        ({"name": "AB"}, "name", "name must be between 3 and 40 characters"),
        ({"category": ""}, "category", "category is required"),
        ({"sub_category": ""}, "sub_category", "sub-category is required"),
        ({"category": "10", "sub_category": "101"}, "sub_category", "sub-category 101 does not belong to category 10"),
        ({"category": "99"}, "category", "category 99 is not in the catalogue"),
        ({"category": "ten"}, "category", "category must be chosen from the list"),
    ]
    for fields, field, message in cases:
        logo = fields.pop("logo", image_bytes()) if "logo" in fields else image_bytes()
        response = await create_label(admin, logo, **fields)  # type: ignore[arg-type]
        assert response.status_code == 400, (fields, response.status_code)
        assert f'<p class="error" id="{field}-error">{message}</p>' in response.text, (field, message)
        if field != "logo":
            assert 'value="Acme Flowers"' in response.text or fields.get("name") == "AB"  # the form keeps input
    async with db.session() as session:
        assert (await session.scalar(select(Label.id))) is None  # nothing half-written


async def test_a_label_named_like_markup_is_shown_as_text(admin: httpx.AsyncClient) -> None:
    created = await create_label(admin, image_bytes(), name="<script>x</script>")
    assert created.status_code == 303
    for path in (created.headers["location"], "/console/caller-id"):
        page = await admin.get(path)
        assert "<script>x</script>" not in page.text
        assert "&lt;script&gt;x&lt;/script&gt;" in page.text


async def test_choosing_a_category_narrows_the_sub_categories(admin: httpx.AsyncClient) -> None:
    field = await admin.get("/console/caller-id/new/sub-categories?category=10", headers={"HX-Request": "true"})
    assert field.status_code == 200 and field.text.startswith('<div id="sub-category-field">')
    options = re.findall(r'<option value="(\d*)"', field.text)
    assert options == ["", "141", "142", "143", "144", "145"]
    unknown = await admin.get("/console/caller-id/new/sub-categories?category=nope")
    assert len(re.findall(r'<option value="\d+"', unknown.text)) == 43  # every one, by group, as without JavaScript


async def test_a_page_number_it_cannot_use_shows_the_first_page(admin: httpx.AsyncClient) -> None:
    for value in ["\u00b2", "1" + "0" * 30, "0", "-3"]:
        for path in ("/console/caller-id", "/console/webhooks/events"):
            response = await admin.get(path, params={"page": value})
            assert response.status_code == 200, (path, value)


async def test_an_api_key_gets_the_analytics_access_level_only_when_chosen(
    admin: httpx.AsyncClient, console_account: ConsoleAccount, client: httpx.AsyncClient
) -> None:
    form = await admin.get("/console/api-keys/new")
    select = re.search(r'<select id="access_analytics".*?</select>', form.text, re.S)
    assert select is not None and re.findall(r'<option value="(\w+)"', select.group(0)) == ["none", "read"]
    refused = await create_key(admin, "bad", access_analytics="write")
    assert refused.status_code == 400
    assert '<p class="error" id="access_analytics-error">choose No access or Read for Analytics</p>' in refused.text

    analytics = f"/clients/{console_account.account_id}/analytics?from=2026-11-01&to=2026-11-30"
    for fields, status in (({}, 403), ({"access_analytics": "none"}, 403), ({"access_analytics": "read"}, 200)):
        created = await create_key(admin, f"key {status} {len(fields)}", **fields)
        assert created.status_code == 200
        token = await client.post(
            f"/clients/{console_account.account_id}/token",
            json={"key_id": shown_secret(created.text, "key_id"), "api_key": shown_secret(created.text, "api_key")},
            headers={"X-Public-Access": "allow"},
        )
        answer = await client.get(analytics, headers={"Authorization": f"Bearer {token.json()['token']}"})
        assert answer.status_code == status, (fields, answer.text)
    listed = await admin.get("/console/api-keys")
    assert "Analytics:" in listed.text
