"""The browser every browser test module drives (Debian's Chromium through Playwright, one per module) and the one
``callerid serve`` that every console browser test module shares (one start-up for all of them)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.e2e.serving import CHROMIUM, CHROMIUM_ARGS, Server


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(scope="session")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for every console journey; each module creates its own account (own names and e-mails)."""
    running = Server(tmp_path_factory.mktemp("console"))
    # Test webhooks go to receivers on loopback, which an operator must allow (SPEC §9.1 safety).
    running.env["CALLERID_WEBHOOK_ALLOW_PRIVATE"] = "true"
    running.start()
    try:
        yield running
    finally:
        running.stop()
