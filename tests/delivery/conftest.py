"""Fixtures for phones: an app served through Starlette's TestClient (which speaks WebSocket)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from callerid.app import create_app
from tests.conftest import empty_all_tables, make_settings


@pytest.fixture
def phone_client(database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]) -> Iterator[TestClient]:
    """A TestClient running the whole app (lifespan included) in its own event-loop thread.

    Run coroutines against the app's objects (hub, database) with ``phone_client.portal.call(fn, ...)``
    so they share the loop the WebSocket handlers run on.
    """
    settings = make_settings(database_url, tmp_path / "data", **settings_overrides)
    application = create_app(settings)
    with TestClient(application) as client:
        client.portal.call(empty_all_tables, application.state.runtime.db)
        yield client


def register(client: TestClient, number: str, platform: str = "android", app_version: str = "2.0.0") -> dict[str, Any]:
    response = client.post(
        "/app/v1/devices", json={"phone_number": number, "platform": platform, "app_version": app_version}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
