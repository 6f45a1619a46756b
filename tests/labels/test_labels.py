"""L - GET /clients/{id}/labels (SPEC §5.1, §2.7), the logo rules (SPEC §10.2) and logo serving."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.labels import service
from callerid.labels.models import Label, LabelLogo
from callerid.labels.routes import LOGO_CACHE_CONTROL
from tests.conftest import Tenant, create_tenant, mint
from tests.labels.images import image_bytes, png_of_exact_length, png_with_corrupt_pixels

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}Z$")


async def add_label(db: Database, settings: Settings, account_id: uuid.UUID, name: str, **kwargs: Any) -> Label:
    async with db.transaction() as session:
        return await service.create_label(
            session, settings, account_id=account_id, name=name, logo=image_bytes(), **kwargs
        )


async def label_count(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Label)) or 0)


async def logo_count(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(LabelLogo)) or 0)


async def test_no_labels_is_an_empty_array(client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str]) -> None:
    response = await client.get(f"/clients/{tenant.account_id}/labels", headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == []


async def test_lists_dynamic_labels_of_the_account_newest_first_in_the_spec_shape(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant, auth: dict[str, str]
) -> None:
    clock.freeze(datetime(2026, 3, 1, 6, 53, 55, 402122, tzinfo=UTC))
    token_free_auth = auth  # minted before the freeze; still valid (expires 60 min after real now)
    first = await add_label(db, settings, tenant.account_id, "FlowerEra", category=10, sub_category=142)
    clock.advance(1)
    await add_label(db, settings, tenant.account_id, "Static One", label_type="static")
    clock.advance(1)
    second = await add_label(db, settings, tenant.account_id, "Bank KYC")
    other = await create_tenant(db, settings, name="Other Co")
    await add_label(db, settings, other.account_id, "Not Mine")

    response = await client.get(f"/clients/{tenant.account_id}/labels", headers=token_free_auth)
    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body] == [str(second.id), str(first.id)]
    assert body[1] == {
        "id": str(first.id),
        "name": "FlowerEra",
        "logo_url": f"http://testserver/logos/{first.logo_key}.png",
        "category": 10,
        "sub_category": 142,
        "created_by_email": tenant.admin_email,
        "created_at": "2026-03-01T06:53:55.402122Z",
        "label_type": "dynamic",
    }
    assert body[0]["category"] is None and body[0]["sub_category"] is None
    assert first.logo_key == hashlib.sha256(image_bytes()).hexdigest()  # content-addressed


async def test_pagination_defaults_limits_and_past_the_end(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant, auth: dict[str, str]
) -> None:
    created = []
    for index in range(5):
        created.append(await add_label(db, settings, tenant.account_id, f"Label {index}"))
        clock.advance(timedelta(seconds=1))
    newest_first = [str(label.id) for label in reversed(created)]
    path = f"/clients/{tenant.account_id}/labels"

    async def ids(query: str) -> list[str]:
        response = await client.get(f"{path}{query}", headers=auth)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()]

    assert await ids("") == newest_first
    assert await ids("?limit=1000") == newest_first
    assert await ids("?page=1&limit=2") == newest_first[:2]
    assert await ids("?page=2&limit=2") == newest_first[2:4]
    assert await ids("?page=3&limit=2") == newest_first[4:]
    assert await ids("?page=4&limit=2") == []
    assert await ids("?page=2") == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?page=0", "page is invalid"),
        ("?page=-1", "page is invalid"),
        ("?page=x", "page is invalid"),
        ("?limit=0", "limit is invalid"),
        ("?limit=1001", "limit is invalid"),
        ("?limit=2.5", "limit is invalid"),
    ],
)
async def test_bad_page_or_limit_is_400(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str], query: str, message: str
) -> None:
    response = await client.get(f"/clients/{tenant.account_id}/labels{query}", headers=auth)
    assert response.status_code == 400
    assert response.json() == {"slug": "invalid-input", "message": message}


async def test_needs_call_personalisation_read(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    reader = await create_tenant(db, settings, access={"call_personalisation": "read"})
    outsider = await create_tenant(db, settings, access={"number_management": "write"})
    ok = await client.get(
        f"/clients/{reader.account_id}/labels", headers={"Authorization": f"Bearer {await mint(client, reader)}"}
    )
    assert ok.status_code == 200
    denied = await client.get(
        f"/clients/{outsider.account_id}/labels", headers={"Authorization": f"Bearer {await mint(client, outsider)}"}
    )
    assert denied.status_code == 403
    assert denied.json() == {"slug": "forbidden-error", "message": "not authorized. please contact your admin."}
    missing = await client.get(f"/clients/{reader.account_id}/labels")
    assert missing.status_code == 401
    assert missing.json() == {"slug": "authorization-error", "message": "Missing authorization header"}


async def test_logo_is_served_at_its_url_without_a_token(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant
) -> None:
    label = await add_label(db, settings, tenant.account_id, "FlowerEra")
    url = service.logo_url(settings, label.logo_key)
    assert url == f"http://testserver/logos/{hashlib.sha256(image_bytes()).hexdigest()}.png"
    response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == LOGO_CACHE_CONTROL
    assert response.content == image_bytes()
    assert not (settings.data_dir / "logos").exists()  # in the database, not on this host's disk


@pytest.mark.parametrize(
    "key",
    [
        "00000000-0000-0000-0000-000000000000-1.png",  # a well-formed old file name, never stored
        f"{'0' * 64}.png",  # a well-formed content key, never stored
        f"{hashlib.sha256(image_bytes()).hexdigest()}",  # without .png
        f"{hashlib.sha256(image_bytes()).hexdigest().upper()}.png",
        "..%2F..%2Fcallerid-test.db",
        "logo.png",
    ],
)
async def test_unknown_or_malformed_logo_is_404(client: httpx.AsyncClient, key: str) -> None:
    response = await client.get(f"/logos/{key}")
    assert response.status_code == 404
    assert response.json() == {"slug": "not-found", "message": "not found"}


def test_logo_url_uses_host_and_port_without_public_base_url(tmp_path: Any) -> None:
    settings = Settings(public_base_url=None, host="10.0.0.5", port=9000, data_dir=tmp_path)
    assert service.logo_url(settings, "k") == "http://10.0.0.5:9000/logos/k.png"
    settings = Settings(public_base_url="https://media.example.com/", data_dir=tmp_path)
    assert service.logo_url(settings, "k") == "https://media.example.com/logos/k.png"
    assert service.logo_url(settings, None) == ""  # a label without a logo: the field stays a string


# --- creation rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logo", "message"),
    [
        (image_bytes((201, 200)), "logo must be exactly 200x200 pixels (it is 201x200)"),
        (image_bytes((200, 199)), "logo must be exactly 200x200 pixels (it is 200x199)"),
        (image_bytes((100, 100)), "logo must be exactly 200x200 pixels (it is 100x100)"),
        (image_bytes(image_format="JPEG"), "logo must be a PNG image (it is JPEG)"),
        (image_bytes(image_format="GIF"), "logo must be a PNG image (it is GIF)"),
        (b"not an image at all", "logo must be a PNG image"),
        (image_bytes()[:-30], "logo must be a PNG image (the file is damaged)"),  # truncated
        (png_with_corrupt_pixels(), "logo must be a PNG image (the file is damaged)"),
        (b"", "logo must be a PNG image"),
        (
            png_of_exact_length(2 * 1024 * 1024),
            "logo must be smaller than 2 MB (2,097,152 bytes); it has 2,097,152 bytes",
        ),
        (png_of_exact_length(3_000_000), "logo must be smaller than 2 MB (2,097,152 bytes); it has 3,000,000 bytes"),
    ],
)
async def test_bad_logo_is_refused_and_nothing_is_stored(
    db: Database, settings: Settings, tenant: Tenant, logo: bytes, message: str
) -> None:
    with pytest.raises(service.LabelError) as raised:
        async with db.transaction() as session:
            await service.create_label(session, settings, account_id=tenant.account_id, name="FlowerEra", logo=logo)
    assert str(raised.value) == message
    assert await label_count(db) == 0
    assert await logo_count(db) == 0


async def test_logo_just_under_2_mib_is_accepted(db: Database, settings: Settings, tenant: Tenant) -> None:
    logo = png_of_exact_length(2 * 1024 * 1024 - 1)
    async with db.transaction() as session:
        label = await service.create_label(session, settings, account_id=tenant.account_id, name="Big", logo=logo)
    async with db.session() as session:
        stored = await session.get(LabelLogo, label.logo_key)
    assert stored is not None and (stored.data, stored.size, stored.media_type) == (logo, len(logo), "image/png")


@pytest.mark.parametrize(
    ("name", "ok"),
    [("ab", False), ("abc", True), ("x" * 40, True), ("x" * 41, False), ("ñé😀", True), ("   ", False), ("", False)],
)
async def test_name_is_3_to_40_characters(
    db: Database, settings: Settings, tenant: Tenant, name: str, ok: bool
) -> None:
    if ok:
        label = await add_label(db, settings, tenant.account_id, name)
        assert label.name == name
        return
    with pytest.raises(service.LabelError, match=r"^name must be between 3 and 40 characters$"):
        await add_label(db, settings, tenant.account_id, name)
    assert await label_count(db) == 0


@pytest.mark.parametrize(
    "name",
    ["Flo\x00wer", "Flower\n", "Flo\u202ewer", "Flo\u2066wer", "Flo\u200bwer", "\ufeffFlower", "Flo\ue000wer"],
    ids=["NUL", "newline", "RLO", "LRI", "ZWSP", "BOM", "private use"],
)
async def test_a_name_phones_cannot_display_is_refused(
    db: Database, settings: Settings, tenant: Tenant, name: str
) -> None:
    with pytest.raises(service.LabelError, match=r"^name contains characters that cannot be displayed$"):
        await add_label(db, settings, tenant.account_id, name)
    assert await label_count(db) == 0


@pytest.mark.parametrize("name", ["नमस्ते", "مرحبا", "鲜花速递", "🌸 Flowers", "👨‍👩‍👧", "❤️ Roses"])
async def test_a_name_in_any_script_is_stored_and_listed_exactly(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant, auth: dict[str, str], name: str
) -> None:
    await add_label(db, settings, tenant.account_id, name)
    response = await client.get(f"/clients/{tenant.account_id}/labels", headers=auth)
    assert [label["name"] for label in response.json()] == [name]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label_type": "fancy"}, "label type must be one of dynamic, static"),
        ({"category": -1}, "category must be a non-negative integer"),
        ({"category": 1, "sub_category": -2}, "sub-category must be a non-negative integer"),
        ({"sub_category": 5}, "a sub-category needs a category"),
        ({"account_id": uuid.UUID(int=7)}, "account 00000000-0000-0000-0000-000000000007 not found"),
    ],
)
async def test_other_creation_rules(
    db: Database, settings: Settings, tenant: Tenant, kwargs: dict[str, Any], message: str
) -> None:
    values: dict[str, Any] = {"account_id": tenant.account_id, "name": "FlowerEra", "logo": image_bytes(), **kwargs}
    with pytest.raises(service.LabelError) as raised:
        async with db.transaction() as session:
            await service.create_label(session, settings, **values)
    assert str(raised.value) == message
    assert await label_count(db) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"category": 99}, "category 99 is not in the catalogue"),
        ({"category": 10, "sub_category": 101}, "sub-category 101 does not belong to category 10"),
        ({"category": 10, "sub_category": 999}, "sub-category 999 is not in the catalogue"),
        ({"require_category": True}, "category is required"),
        ({"category": 10, "require_category": True}, "sub-category is required"),
        ({"sub_category": 142, "require_category": True}, "category is required"),
        ({"category": 99, "sub_category": 142, "require_category": True}, "category 99 is not in the catalogue"),
        (
            {"category": 10, "sub_category": 101, "require_category": True},
            "sub-category 101 does not belong to category 10",
        ),
    ],
)
async def test_category_and_sub_category_come_from_the_catalogue(
    db: Database, settings: Settings, tenant: Tenant, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(service.LabelError) as raised:
        await add_label(db, settings, tenant.account_id, "FlowerEra", **kwargs)
    assert str(raised.value) == message
    assert await label_count(db) == 0


@pytest.mark.parametrize(
    ("kwargs", "stored"),
    [
        ({}, (None, None)),  # the API and the CLI may leave both out, as the reference does
        ({"category": 10}, (10, None)),
        ({"category": 10, "sub_category": 142, "require_category": True}, (10, 142)),
    ],
)
async def test_labels_with_catalogue_categories_are_created(
    db: Database, settings: Settings, tenant: Tenant, kwargs: dict[str, Any], stored: tuple[int | None, int | None]
) -> None:
    label = await add_label(db, settings, tenant.account_id, "FlowerEra", **kwargs)
    assert (label.category, label.sub_category) == stored


async def test_dynamic_labels_lookup_ignores_static_and_foreign_labels(
    db: Database, settings: Settings, tenant: Tenant
) -> None:
    mine = await add_label(db, settings, tenant.account_id, "Mine")
    static = await add_label(db, settings, tenant.account_id, "Static", label_type="static")
    other = await create_tenant(db, settings, name="Other Co")
    foreign = await add_label(db, settings, other.account_id, "Foreign")
    async with db.session() as session:
        found = await service.dynamic_labels(session, tenant.account_id, {mine.id, static.id, foreign.id, uuid.uuid4()})
    assert found == {mine.id: service.DynamicLabel(mine.id, "Mine", mine.logo_key)}
