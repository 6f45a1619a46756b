"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) in headless Chromium against a real ``callerid serve``, with every
request to another host blocked: the API reference renders from the vendored files alone, asks nothing of any other
host and breaks none of its CSP.

Uses Debian's /usr/bin/chromium through Playwright's ``executable_path`` (``python3 dev.py test`` installs it with
apt-get); Playwright's own browser downloads are never used. Saves ``test-artifacts/docs-swagger.png`` and
``test-artifacts/docs-redoc.png``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.serving import ARTIFACTS, SKIP_REASON, Server

UI_TIMEOUT_MS = 15_000
SUMMARY = "List dynamic labels"
PATH = "/clients/{clientAccountId}/labels"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]


# One server and one browser for the module: starting them is most of the time these tests take.
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("serve"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Visit:
    """A page, and what it did: the requests it made (those to another host blocked) and any console error."""

    page: Any
    requested: list[str] = field(default_factory=list)
    off_host: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@pytest.fixture
async def visit(chromium: Any, server: Server) -> AsyncIterator[Any]:
    context = await chromium.new_context(viewport={"width": 1280, "height": 1000})
    opened: list[Visit] = []

    async def only_this_server(route: Any) -> None:
        url = route.request.url
        opened[-1].requested.append(url)
        if urlsplit(url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            opened[-1].off_host.append(url)
            await route.abort("blockedbyclient")

    await context.route("**/*", only_this_server)

    async def open_page(path: str) -> Visit:
        page = await context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        seen = Visit(page)
        opened.append(seen)
        # CSP violations are console errors too.
        page.on("console", lambda message: seen.problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: seen.problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda request: seen.problems.append(f"failed: {request.url} {request.failure}"))
        await page.goto(f"{server.base}{path}")
        return seen

    try:
        yield open_page
    finally:
        await context.close()


def assert_only_this_server(seen: Visit, server: Server) -> None:
    assert seen.off_host == []
    assert seen.problems == []
    paths = {urlsplit(url).path for url in seen.requested}
    assert {path for path in paths if not path.startswith("/docs/assets/")} <= {"/docs", "/redoc", "/openapi.json"}
    assert all(url.startswith(server.base) for url in seen.requested)


async def test_swagger_ui_lists_the_operations_offline(visit: Any, server: Server) -> None:
    seen = await visit("/docs")
    page = seen.page

    operation = page.locator(f'.opblock-summary-path[data-path="{PATH}"]')
    await operation.wait_for()
    row = page.locator(".opblock", has=operation)
    assert (await row.locator(".opblock-summary-description").inner_text()).strip() == SUMMARY
    assert await page.locator(".opblock").count() > 20
    # Opened, it shows the operation's parameters and responses (rendered with the same CSP).
    await operation.click()
    await row.locator('tr[data-param-name="clientAccountId"][data-param-in="path"]').wait_for()
    await row.locator(".responses-wrapper").wait_for()
    await page.locator(".information-container .title").get_by_text("callerid").wait_for()

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "docs-swagger.png"))
    assert_only_this_server(seen, server)


async def test_redoc_lists_the_operations_offline_and_searches(visit: Any, server: Server) -> None:
    seen = await visit("/redoc")
    page = seen.page

    heading = page.locator("h2", has_text=SUMMARY)
    crashed = page.get_by_text("Something went wrong")
    await heading.or_(crashed).first.wait_for()
    ARTIFACTS.mkdir(exist_ok=True)
    if await crashed.count():
        await page.screenshot(path=str(ARTIFACTS / "docs-redoc.png"))
        pytest.fail(f"ReDoc could not render /openapi.json: {await page.inner_text('body')}")
    operation = page.locator("[data-section-id]", has=heading).last
    await operation.get_by_text(PATH).first.wait_for()
    await heading.evaluate("element => element.scrollIntoView({block: 'start'})")
    await page.screenshot(path=str(ARTIFACTS / "docs-redoc.png"))
    # Search runs in a Web Worker (the CSP's worker-src blob:) and finds the operation.
    await page.get_by_role("textbox", name="Search").press_sequentially("labels", delay=20)
    await page.locator("[data-role='search:results']").get_by_text(SUMMARY).wait_for()
    # Redocly's logo (an image on their CDN) is never asked for, and ReDoc leaves it out.
    assert await page.locator("img").count() == 0
    assert_only_this_server(seen, server)
