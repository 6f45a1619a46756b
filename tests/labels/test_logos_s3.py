"""The S3-compatible logo store (``CALLERID_LOGO_STORE=s3``), against moto's S3 server on loopback (no network):
objects per image, served with the same headers as the database store, and swept when no row names them.
Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import delete, select

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.labels import service
from callerid.labels.jobs import GRACE, purge_logos_now
from callerid.labels.logos import S3LogoStore, logo_store
from callerid.labels.models import Label, LabelLogo
from callerid.labels.routes import LOGO_CACHE_CONTROL
from tests.conftest import Tenant
from tests.labels.images import image_bytes

BUCKET = "callerid-logos"
TEAL, PINK = image_bytes(color="teal"), image_bytes(color="pink")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh bucket (the credentials are moto's: anything goes)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    name = f"{BUCKET}-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    yield client, name
    for item in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture
def settings_overrides(bucket: Any, s3_endpoint: str) -> dict[str, Any]:
    return {
        "logo_store": "s3",
        "logo_s3_bucket": bucket[1],
        "logo_s3_endpoint_url": s3_endpoint,
        "logo_s3_region": "us-east-1",
    }


def objects(bucket: Any) -> dict[str, bytes]:
    client, name = bucket
    found = client.list_objects_v2(Bucket=name).get("Contents", [])
    return {item["Key"]: client.get_object(Bucket=name, Key=item["Key"])["Body"].read() for item in found}


async def add_label(
    db: Database, settings: Settings, account_id: uuid.UUID, logo: bytes, name: str = "Flower"
) -> Label:
    async with db.transaction() as session:
        return await service.create_label(session, settings, account_id=account_id, name=name, logo=logo)


async def rows(db: Database) -> dict[str, tuple[bytes | None, str | None]]:
    async with db.session() as session:
        found = (await session.scalars(select(LabelLogo))).all()
    return {row.key: (row.data, row.object_name) for row in found}


def test_settings_pick_the_s3_store(settings: Settings) -> None:
    store = logo_store(settings)
    assert isinstance(store, S3LogoStore)
    assert logo_store(settings) is store  # one client per configuration
    assert (store.bucket, store.prefix) == (settings.logo_s3_bucket, "logos/")


async def test_an_uploaded_logo_is_an_object_served_like_any_logo(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant, bucket: Any
) -> None:
    label = await add_label(db, settings, tenant.account_id, TEAL)
    await add_label(db, settings, tenant.account_id, TEAL, "Same Image")  # stored once
    assert label.logo_key == sha(TEAL)
    [(data, object_name)] = (await rows(db)).values()
    assert data is None and object_name is not None
    assert object_name.startswith(f"logos/{sha(TEAL)}-") and object_name.endswith(".png")
    assert objects(bucket) == {object_name: TEAL}
    assert not (settings.data_dir / "logos").exists()

    response = await client.get(f"/logos/{sha(TEAL)}.png")
    assert response.status_code == 200
    assert response.content == TEAL
    assert response.headers["etag"] == f'"{sha(TEAL)}"'
    assert response.headers["cache-control"] == LOGO_CACHE_CONTROL
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    revalidated = await client.get(f"/logos/{sha(TEAL)}.png", headers={"If-None-Match": f'"{sha(TEAL)}"'})
    assert revalidated.status_code == 304


async def test_a_logo_whose_bytes_are_in_its_row_is_served_from_the_row(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant, bucket: Any
) -> None:
    """Logos moved in from files by migration 0015 (or stored by the database store) stay where they are."""
    async with db.transaction() as session:
        session.add(LabelLogo(key=sha(PINK), media_type="image/png", size=len(PINK), data=PINK, created_at=clock.now()))
    label = await add_label(db, settings, tenant.account_id, PINK)
    assert label.logo_key == sha(PINK)
    assert objects(bucket) == {}
    assert (await client.get(f"/logos/{sha(PINK)}.png")).content == PINK


async def test_a_lost_object_is_404(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant, bucket: Any
) -> None:
    await add_label(db, settings, tenant.account_id, TEAL)
    [(_, object_name)] = (await rows(db)).values()
    bucket[0].delete_object(Bucket=bucket[1], Key=object_name)
    assert (await client.get(f"/logos/{sha(TEAL)}.png")).status_code == 404


async def test_objects_of_purged_logos_and_of_failed_uploads_are_swept(
    client: httpx.AsyncClient, db: Database, settings: Settings, tenant: Tenant, bucket: Any
) -> None:
    kept = await add_label(db, settings, tenant.account_id, TEAL, "Kept")
    dropped = await add_label(db, settings, tenant.account_id, PINK, "Dropped")
    navy = image_bytes(color="navy")
    with pytest.raises(RuntimeError):  # the label's transaction fails after its logo was put in the bucket
        async with db.transaction() as session:
            await service.create_label(session, settings, account_id=tenant.account_id, name="Failed", logo=navy)
            raise RuntimeError("the transaction fails")
    stored = await rows(db)
    assert set(stored) == {sha(TEAL), sha(PINK)}
    assert len(objects(bucket)) == 3  # the failed upload's object too
    async with db.transaction() as session:
        await session.execute(delete(Label).where(Label.id == dropped.id))

    # The bucket's clock is real time: the purge is run as if the grace period had passed.
    later = datetime.now(UTC) + GRACE + timedelta(minutes=1)
    early = await purge_logos_now(db, settings, now=datetime.now(UTC))
    assert early.deleted == {"unreferenced_logos": 0, "logo_objects": 0}  # nothing is old enough yet
    run = await purge_logos_now(db, settings, now=later)
    assert run.deleted == {"unreferenced_logos": 1, "logo_objects": 2}
    assert objects(bucket) == {stored[sha(TEAL)][1]: TEAL}
    assert (await client.get(f"/logos/{kept.logo_key}.png")).content == TEAL
    assert (await client.get(f"/logos/{sha(PINK)}.png")).status_code == 404

    # Uploaded again, the image gets a new object (never the one the sweep deleted) and is served again.
    again = await add_label(db, settings, tenant.account_id, PINK, "Again")
    new_name = (await rows(db))[sha(PINK)][1]
    assert new_name is not None and new_name != stored[sha(PINK)][1]
    assert (await client.get(f"/logos/{again.logo_key}.png")).content == PINK


def test_s3_needs_a_bucket() -> None:
    with pytest.raises(ValueError, match="CALLERID_LOGO_STORE=s3 needs CALLERID_LOGO_S3_BUCKET"):
        Settings(logo_store="s3")
