"""Logos live with the rest of the state (issue 15 #9): a logo uploaded through one ``callerid serve`` process (the
console) or one host's CLI is served by another process with a different data directory, on one PostgreSQL
database. Before, a logo was a file on the host that received it, and the other host answered 404."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_postgresql_database, requires_postgres
from tests.console.conftest import csrf_of
from tests.labels.images import image_bytes
from tests.personalisation.processes import Deployment

pytestmark = [pytest.mark.slow, requires_postgres]


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[Deployment, Deployment]]:
    """Two hosts: each its own data directory (and port), one PostgreSQL database."""
    with fresh_postgresql_database("callerid_logo_hosts") as url:
        roots = [tmp_path / "host-a", tmp_path / "host-b"]
        for root in roots:
            root.mkdir()
        yield Deployment(roots[0], database_url=url), Deployment(roots[1], database_url=url)


def console_upload(base_url: str, email: str, password: str, logo: bytes) -> str:
    """Sign in to the console of ``base_url`` and create a dynamic label with ``logo``; the label page's logo URL."""
    with httpx.Client(base_url=base_url, follow_redirects=False, timeout=30) as browser:
        form = browser.get("/console/sign-in")
        signed_in = browser.post(
            "/console/sign-in",
            data={"email": email, "password": password, "csrf_token": csrf_of(form.text), "next": ""},
        )
        assert signed_in.status_code == 303, signed_in.text
        new = browser.get("/console/caller-id/new")
        assert new.status_code == 200, new.text
        created = browser.post(
            "/console/caller-id",
            data={
                "csrf_token": csrf_of(new.text),
                "name": "Acme Flowers",
                "label_type": "dynamic",
                "category": "10",
                "sub_category": "142",
            },
            files={"logo": ("logo.png", logo, "image/png")},
        )
        assert created.status_code == 303, created.text
        page = browser.get(created.headers["location"])
        assert page.status_code == 200
        found = re.search(r'<img class="logo logo-large" src="(/logos/[0-9a-f]{64}\.png)"', page.text)
        assert found is not None, page.text
        return found.group(1)


def test_a_logo_uploaded_through_one_process_is_served_by_another(
    hosts: tuple[Deployment, Deployment], tmp_path: Path
) -> None:
    a, b = hosts
    account = a.cli_json("accounts", "create", "--name", "Acme Flowers", "--admin-email", "admin@acme.test")
    console_logo = image_bytes(color="pink")
    cli_logo = image_bytes(color="navy")
    cli_file = tmp_path / "navy.png"
    cli_file.write_bytes(cli_logo)

    with a.serving(), b.serving():
        # Uploaded through host A's console...
        path = console_upload(a.base_url, account["admin_email"], account["admin_password"], console_logo)
        assert path == f"/logos/{hashlib.sha256(console_logo).hexdigest()}.png"
        # ... fetched through host B, which has never seen the file.
        served = httpx.get(f"{b.base_url}{path}", timeout=10)
        assert served.status_code == 200
        assert served.content == console_logo
        etag = served.headers["etag"]
        assert etag == f'"{hashlib.sha256(console_logo).hexdigest()}"'
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert served.headers["content-type"] == "image/png"
        revalidated = httpx.get(f"{b.base_url}{path}", headers={"If-None-Match": etag}, timeout=10)
        assert revalidated.status_code == 304

        # And the other way round: uploaded with host B's CLI, listed (logo_url) and served by host A.
        label = b.cli_json(
            "labels", "create", "--account", account["client_account_id"], "--name", "Navy", "--logo", str(cli_file)
        )
        listed = a.cli_json("labels", "list", "--account", account["client_account_id"])["labels"]
        [navy] = [item for item in listed if item["id"] == label["id"]]
        assert navy["logo_url"] == f"{a.base_url}/logos/{hashlib.sha256(cli_logo).hexdigest()}.png"
        assert httpx.get(navy["logo_url"], timeout=10).content == cli_logo

    for host in hosts:  # neither host keeps logos on its disk
        assert not (host.root / "data" / "logos").exists()
