"""``/docs`` and ``/redoc`` are served from the package: no CDN, a strict CSP, content-hashed files (no browser here;
tests/e2e/test_docs_browser.py renders them)."""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from callerid.app import create_app
from callerid.docs_page import routes
from tests.conftest import make_settings

PAGES = ("/docs", "/redoc")
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # Serving these pages needs no database, so no lifespan (and no SQLite/PostgreSQL parametrisation).
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", tmp_path / "data"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


class Page(HTMLParser):
    """The files a page loads, its scripts (with their nonces and bodies) and anything inline."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        if tag == "style":
            self.inline.append("<style>")
        self.inline.extend(f"{name}= on <{tag}>" for name in attributes if name == "style" or name.startswith("on"))
        loads = tag in ("script", "img") or (tag == "link" and attributes.get("rel") in ("stylesheet", "icon"))
        for name in ("src", "href"):
            value = attributes.get(name)
            if value and loads:
                self.assets.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"script body {data.strip()[:40]!r}")


def directives(policy: str) -> dict[str, list[str]]:
    parsed = (part.split() for part in policy.split(";") if part.strip())
    return {name: values for name, *values in parsed}


async def parse(http: httpx.AsyncClient, path: str) -> tuple[httpx.Response, Page]:
    response = await http.get(path)
    page = Page()
    page.feed(response.text)
    return response, page


@pytest.mark.parametrize("path", PAGES)
async def test_page_is_html_under_a_strict_csp_with_nothing_from_another_host(
    http: httpx.AsyncClient, path: str
) -> None:
    response, page = await parse(http, path)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]  # no inline script, no eval, no other host
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["connect-src"] == ["'self'"]  # /openapi.json and "Try it out"
    assert "font-src" not in policy  # no font files at all: default-src 'none'
    assert policy["frame-ancestors"] == ["'none'"]
    everything = [value for values in policy.values() for value in values]
    assert not [value for value in everything if value in ("'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https:")]
    assert not [value for value in everything if "." in value and not value.startswith("'sha256-")]  # no hosts
    # Nothing in the HTML names another host; nothing is inline; every script is a file of this server's.
    assert [url for url in re.findall(r"https?://[^\s\"'<>]+", response.text) if urlsplit(url).hostname] == []
    assert page.inline == []
    assert page.scripts and all(str(script.get("src")).startswith("/docs/assets/") for script in page.scripts)


async def test_swagger_page_needs_no_inline_style_at_all(http: httpx.AsyncClient) -> None:
    response = await http.get("/docs")

    policy = directives(response.headers["content-security-policy"])
    assert policy["style-src"] == ["'self'"]
    assert "worker-src" not in policy


async def test_redoc_styles_are_let_in_by_a_fresh_nonce_and_two_hashes(http: httpx.AsyncClient) -> None:
    first, page = await parse(http, "/redoc")
    second = await http.get("/redoc")

    policy = directives(first.headers["content-security-policy"])
    nonce = policy["style-src"][1]
    assert re.fullmatch(r"'nonce-[A-Za-z0-9_-]{24}'", nonce)
    assert policy["style-src"] == ["'self'", nonce, *routes.REDOC_STYLE_HASHES.split()]
    assert policy["worker-src"] == ["blob:"]  # ReDoc's search index, a worker its bundle makes from a blob: URL
    # The init script is given the nonce to hand to ReDoc; each response has its own.
    init = next(script for script in page.scripts if "redoc-init.js" in str(script["src"]))
    assert f"'nonce-{init['nonce']}'" == nonce
    assert directives(second.headers["content-security-policy"])["style-src"][1] != nonce
    # Not stored for long: a page is revalidated, so an upgraded server's asset URLs are picked up at once.
    assert first.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("path", PAGES)
async def test_every_file_a_page_loads_is_served_with_its_type_and_cached_for_good(
    http: httpx.AsyncClient, path: str
) -> None:
    _, page = await parse(http, path)

    assert page.assets
    for url in page.assets:
        asset_path, _, query = url.partition("?")
        response = await http.get(url, headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200, url
        assert response.headers["content-type"] == TYPES[Path(asset_path).suffix], url
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert directives(response.headers["content-security-policy"])["default-src"] == ["'none'"]
        assert "content-encoding" not in response.headers
        # The URL names the content: a changed file gets a new URL.
        assert query == "v=" + hashlib.sha256(response.content).hexdigest()[:12]


async def test_files_are_sent_gzipped_to_who_accepts_it(http: httpx.AsyncClient) -> None:
    url = routes.asset_url("swagger-ui-bundle.js")
    plain = await http.get(url, headers={"Accept-Encoding": "identity"})

    async with http.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert len(raw) < len(plain.content) / 2
    assert gzip.decompress(raw) == plain.content


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/nothing.js",
        "/docs/assets/routes.py",  # a file of the package that is not an asset
        "/docs/assets/LICENSE",
        "/docs/assets/swagger-ui-bundle.js.map",
        "/docs/assets/..%2Froutes.py",
        "/docs/oauth2-redirect",  # FastAPI's, not needed: no OAuth
    ],
)
async def test_anything_else_is_not_found(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)

    assert response.status_code == 404
    assert response.json()["slug"] == "not-found"


async def test_the_pages_are_not_in_the_openapi_document(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()

    assert [path for path in document["paths"] if path.startswith(("/docs", "/redoc"))] == []


def test_vendored_files_are_the_pinned_versions_with_their_licences() -> None:
    swagger, redoc = routes.SWAGGER_UI_DIR, routes.REDOC_DIR
    assert swagger.name == f"swagger-ui-{routes.SWAGGER_UI_VERSION}" and routes.SWAGGER_UI_VERSION.startswith("5.")
    assert redoc.name == f"redoc-{routes.REDOC_VERSION}" and routes.REDOC_VERSION.startswith("2.")
    assert sorted(path.name for path in swagger.iterdir()) == [
        "LICENSE",
        "NOTICE",
        "swagger-ui-bundle.js",
        "swagger-ui-bundle.js.LICENSE.txt",
        "swagger-ui.css",
    ]
    assert sorted(path.name for path in redoc.iterdir()) == [
        "LICENSE",
        "redoc.standalone.js",
        "redoc.standalone.js.LICENSE.txt",
    ]
    assert "Apache License" in (swagger / "LICENSE").read_text()
    assert "The MIT License" in (redoc / "LICENSE").read_text()
    # The bundles say which version they are.
    assert f'PACKAGE_VERSION:"{routes.SWAGGER_UI_VERSION}"' in (swagger / "swagger-ui-bundle.js").read_text()
    assert f'Version: "{routes.REDOC_VERSION}"' in (redoc / "redoc.standalone.js.LICENSE.txt").read_text()
