"""The demo phone page in headless Chromium against a real ``callerid serve``: register (proving the number with
the SMS code, shown as a demo SMS by the embedded default), receive a pushed personalisation, look callers up,
answer / decline / let ring (the call signals it sends are stored and counted), survive a server restart, get
replaced, forget.

Uses Debian's /usr/bin/chromium through Playwright's ``executable_path`` (``python3 dev.py test`` installs it
with apt-get); Playwright's own browser downloads are never used. Saves
``test-artifacts/phone-incoming-call.png``.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from tests.e2e.serving import ARTIFACTS, SKIP_REASON, Server

SCREENSHOT = ARTIFACTS / "phone-incoming-call.png"
UI_TIMEOUT_MS = 15_000
BAD_REQUEST_LOGGED = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
UNAUTHORIZED_LOGGED = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
TOO_MANY_LOGGED = "Failed to load resource: the server responded with a status of 429 (Too Many Requests)"

PHONE = "919234567898"
OTHER_PHONE = "919234567899"
CALLER = "911234567898"
UNKNOWN_CALLER = "915550000001"
LABEL_NAME = "Flower rasm"
CALL_REASON = "Your flower delivery is at the door"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]


# One server, business and browser for the module: starting them is most of the time these tests take.
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    running = Server(folder)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def logo_png() -> bytes:
    """A 200x200 PNG (the console's required size): a flower on green."""
    image = Image.new("RGB", (200, 200), (34, 139, 84))
    draw = ImageDraw.Draw(image)
    for dx, dy in ((0, -45), (0, 45), (-45, 0), (45, 0), (-32, -32), (32, 32), (-32, 32), (32, -32)):
        draw.ellipse((100 + dx - 28, 100 + dy - 28, 100 + dx + 28, 100 + dy + 28), fill=(255, 182, 193))
    draw.ellipse((72, 72, 128, 128), fill=(255, 209, 59))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class Business:
    """An account with an API key and a dynamic label, made with the CLI as an operator would."""

    def __init__(self, server: Server):
        self.server = server
        account = server.cli("accounts", "create", "--name", "Flower Era", "--admin-email", "admin@flowers.test")
        self.account_id = account["client_account_id"]
        key = server.cli("api-keys", "create", "--account", self.account_id, "--name", "phone test")
        logo = server.folder / "logo.png"
        logo.write_bytes(logo_png())
        label = server.cli(
            "labels", "create", "--account", self.account_id, "--name", "Flower Era", "--logo", str(logo)
        )
        self.label_id = label["id"]
        self.logo_url = label["logo_url"]
        minted = httpx.post(
            f"{server.base}/clients/{self.account_id}/token",
            json={"key_id": key["key_id"], "api_key": key["api_key"]},
            headers={"X-Public-Access": "allow"},
        )
        assert minted.status_code == 200, minted.text
        self.token = minted.json()["token"]

    async def push(self, receiver: str) -> dict[str, Any]:
        """R2: one real-time record for a call from CALLER to ``receiver`` in a window around now."""
        now_ms = int(time.time() * 1000)  # the server's wall clock is the real one here
        async with httpx.AsyncClient(base_url=self.server.base) as http:
            response = await http.post(
                f"/v2/clients/{self.account_id}/dynamic_call_record",
                headers={"Authorization": f"Bearer {self.token}"},
                json={
                    "label_id": self.label_id,
                    "dynamic_label_name": LABEL_NAME,
                    "dynamic_call_reason": CALL_REASON,
                    "caller_number": CALLER,
                    "receiver_number": receiver,
                    "starts_at": now_ms - 60_000,
                    "ends_at": now_ms + 3_600_000,
                },
            )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


# --- the browser ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def business(server: Server) -> Business:
    return Business(server)


async def open_phone(chromium: Any, server: Server) -> tuple[Any, Any, list[str]]:
    """A phone-sized page on /phone, collecting every console error and failed request."""
    context = await chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = await context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    await page.goto(f"{server.base}/phone")
    return context, page, problems


async def wait_connected(page: Any) -> None:
    await page.wait_for_selector('#connection[data-state="connected"]')


async def wait_demo_sms(page: Any) -> str:
    """The code step with the embedded default's demo SMS (no SMS gateway): the code it shows."""
    await page.wait_for_selector("#verify-form:not([hidden]) #demo-sms:not([hidden])")
    code: str = await page.text_content("#demo-sms-code") or ""
    assert len(code) == 6 and code.isdigit(), code
    return code


async def register_on_page(page: Any, number: str) -> None:
    """Register from the form, confirm the (demo) SMS code, wait for the stream."""
    await page.fill("#phone-number", number)
    await page.click("#register")
    code = await wait_demo_sms(page)
    assert await page.input_value("#code") == code
    await page.click("#verify")
    await wait_connected(page)


async def register_over_http(server: Server, number: str) -> None:
    """What another phone (app) does: register, then send back the code (the demo code: no SMS gateway here)."""
    async with httpx.AsyncClient(base_url=server.base) as http:
        started = await http.post(
            "/app/v1/devices", json={"phone_number": number, "platform": "android", "app_version": "1.0.0"}
        )
        assert started.status_code == 202, started.text
        answer = started.json()
        confirmed = await http.post(
            "/app/v1/devices/verify", json={"registration_id": answer["registration_id"], "code": answer["demo_code"]}
        )
    assert confirmed.status_code == 201, confirmed.text


async def incoming_call(page: Any, *, source: str) -> dict[str, Any]:
    """Wait for the call screen, then read what it shows."""
    await page.wait_for_selector(f'#incoming-call[data-source="{source}"]:not([hidden])')
    shown: dict[str, Any] = await page.evaluate(
        """() => {
            const text = (id) => document.getElementById(id).textContent.trim();
            const visible = (id) => !document.getElementById(id).hidden;
            const call = document.getElementById("incoming-call");
            return {
                verified: call.dataset.verified, name: text("call-name"), reason: text("call-reason"),
                number: text("call-number"), badge: visible("call-verified"),
                announced: text("call-announcer"), focused: document.activeElement.id,
            };
        }"""
    )
    return shown


async def wait_logo(page: Any) -> dict[str, Any]:
    await page.wait_for_selector('#call-logo[data-state="loaded"]')
    logo: dict[str, Any] = await page.evaluate(
        """() => {
            const img = document.getElementById("call-logo");
            return {src: img.src, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
                    alt: img.alt, visible: !img.hidden};
        }"""
    )
    return logo


async def recent_calls(page: Any) -> list[str]:
    rows: list[str] = await page.locator("#recent-calls li").all_inner_texts()
    return [" ".join(row.split()) for row in rows]


def _read(server: Server, sql: str, *values: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(server.folder / "callerid.db", timeout=10)) as connection:
        return connection.execute(sql, values).fetchall()


async def signals_of(server: Server, caller: str, *, count: int) -> list[tuple[str, int | None]]:
    """The call signals stored for calls from ``caller`` (kind, duration), once ``count`` have arrived: the page
    sends them in the background."""
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while True:
        rows = _read(server, "SELECT kind, duration_seconds FROM call_signals WHERE business_number = ?", int(caller))
        if len(rows) >= count or time.monotonic() > deadline:
            return [(kind, duration) for kind, duration in rows]
        await asyncio.sleep(0.1)


def figures_of(server: Server) -> tuple[int, ...]:
    [row] = _read(server, "SELECT sum(shown), sum(answered), sum(rejected), sum(missed), sum(ended) FROM daily_figures")
    return tuple(row)


# --- the tests ---------------------------------------------------------------------------------------


async def test_phone_receives_a_pushed_call_and_looks_callers_up(
    chromium: Any, server: Server, business: Business
) -> None:
    context, page, problems = await open_phone(chromium, server)

    # A fresh phone: nothing registered, nothing to look up with.
    assert await page.text_content("#connection-text") == "Not registered"
    assert await page.is_disabled("#simulate-call")
    assert await page.is_visible("#simulate-needs-registration")
    # Fits a phone: nothing sticks out sideways.
    assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")

    await page.fill("#phone-number", f"+{PHONE}")
    await page.select_option("#platform", "android")
    await page.fill("#app-version", "1.4.0")
    await page.click("#register")
    # The number must be proven with the code sent to it by SMS. The embedded default has no SMS gateway, so the
    # server hands the code back and the page shows it as a clearly marked demo SMS, and fills it in.
    code = await wait_demo_sms(page)
    assert await page.is_hidden("#register-form")
    assert await page.text_content("#connection-text") == "Waiting for the SMS code"
    assert await page.text_content("#verify-number") == f"+{PHONE}"
    assert await page.text_content("#demo-sms-title") == "Demo SMS"
    assert await page.input_value("#code") == code
    # The operator sees the same code in the development SMS outbox.
    [sms] = server.cli("sms", "outbox", "--number", PHONE, "--limit", "1")["sms"]
    assert (sms["to"], sms["code"]) == (PHONE, code)
    # A new code cannot be asked for at once: the page says how long to wait.
    await page.click("#resend")
    await page.wait_for_selector("#verify-error:text('a code was just sent: ask for another in')")
    assert await page.input_value("#code") == code
    await page.click("#verify")
    await wait_connected(page)
    assert await page.is_hidden("#verify-form")
    assert await page.text_content("#registered-number") == f"+{PHONE}"
    assert await page.is_hidden("#register-form")
    assert await page.is_hidden("#simulate-needs-registration")
    stored = await page.evaluate("() => JSON.parse(localStorage.getItem('callerid.phone.registration'))")
    assert stored["phone_number"] == PHONE
    assert stored["device_token"]

    # The business pushes a personalisation for this phone: the incoming-call screen comes up.
    assert await business.push(PHONE) == {
        "status_info": {"status": "success", "message": "Record processed successfully"}
    }
    shown = await incoming_call(page, source="push")
    assert shown == {
        "verified": "true",
        "name": LABEL_NAME,
        "reason": CALL_REASON,
        "number": f"+{CALLER}",
        "badge": True,
        "announced": f"Incoming call from {LABEL_NAME}, verified: {CALL_REASON}. +{CALLER}",
        "focused": "answer",
    }
    logo = await wait_logo(page)
    assert logo == {
        "src": business.logo_url,
        "complete": True,
        "width": 200,
        "height": 200,
        "alt": f"{LABEL_NAME} logo",
        "visible": True,
    }
    assert await page.locator("#call-verified").inner_text() == "Verified"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), animations="disabled")
    with Image.open(SCREENSHOT) as saved:
        assert saved.size == (390 * 2, 844 * 2)

    # Answered: the call screen becomes the call (its time running) until it is hung up.
    await page.click("#answer")
    await page.wait_for_selector("#hang-up:not([hidden])")
    assert (await page.text_content("#call-kind") or "").startswith("On call · 0:0")
    assert await page.is_hidden("#answer") and await page.is_hidden("#decline") and await page.is_hidden("#let-ring")
    assert await page.evaluate("() => document.activeElement.id") == "hang-up"
    assert await page.text_content("#call-announcer") == f"On call with {LABEL_NAME}"
    await page.click("#hang-up")
    await page.wait_for_selector("#incoming-call", state="hidden")
    assert await recent_calls(page) == [f"{LABEL_NAME} ✓ +{CALLER} · answered"]

    # The phone rings from the same caller: the lookup finds the same verified identity.
    await page.fill("#caller-number", CALLER)
    await page.click("#simulate-call")
    shown = await incoming_call(page, source="lookup")
    assert (shown["verified"], shown["name"], shown["reason"], shown["number"], shown["badge"]) == (
        "true",
        LABEL_NAME,
        CALL_REASON,
        f"+{CALLER}",
        True,
    )
    assert (await wait_logo(page))["width"] == 200
    await page.click("#decline")
    await page.wait_for_selector("#incoming-call", state="hidden")

    # A caller with no record: shown as unverified, without badge, logo or reason.
    await page.fill("#caller-number", UNKNOWN_CALLER)
    await page.click("#simulate-call")
    await page.wait_for_selector('#incoming-call[data-verified="false"]:not([hidden])')
    shown = await incoming_call(page, source="lookup")
    assert shown == {
        "verified": "false",
        "name": "Unverified caller",
        "reason": "",
        "number": f"+{UNKNOWN_CALLER}",
        "badge": False,
        "announced": f"Incoming call from unverified caller +{UNKNOWN_CALLER}",
        "focused": "answer",
    }
    assert await page.get_attribute("#call-logo", "data-state") == "none"
    assert await page.is_hidden("#call-logo")
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#incoming-call", state="hidden")
    assert await recent_calls(page) == [
        f"Unverified caller +{UNKNOWN_CALLER} · declined",
        f"{LABEL_NAME} ✓ +{CALLER} · declined",
        f"{LABEL_NAME} ✓ +{CALLER} · answered",
    ]

    # Let it ring: the call is missed.
    await page.fill("#caller-number", CALLER)
    await page.click("#simulate-call")
    await incoming_call(page, source="lookup")
    assert await page.is_visible("#let-ring")
    await page.click("#let-ring")
    await page.wait_for_selector("#incoming-call", state="hidden")
    assert (await recent_calls(page))[0] == f"{LABEL_NAME} ✓ +{CALLER} · missed"

    # The page told the server what happened to each verified call (the unverified one showed nothing to count).
    rows = await signals_of(server, CALLER, count=7)
    assert sorted(kind for kind, _ in rows) == sorted(
        ["displayed", "answered", "ended", "displayed", "rejected", "displayed", "missed"]
    )
    assert [duration is not None for kind, duration in rows] == [kind == "ended" for kind, _ in rows]
    shown, answered, rejected, missed, ended = figures_of(server)
    assert (shown, answered, rejected, missed, ended) == (3, 1, 1, 1, 1)

    # A bad number is the server's invalid-input message, next to the field.
    await page.fill("#caller-number", "12ab")
    await page.click("#simulate-call")
    await page.wait_for_selector("#simulate-error:text('caller is invalid')")
    assert await page.is_hidden("#incoming-call")

    # Chromium logs every failed request; the 429 of the early resend and the 400 of the bad lookup are the only
    # ones, and nothing else went wrong (no script error, no Content-Security-Policy refusal, no missing file).
    assert problems == [TOO_MANY_LOGGED, BAD_REQUEST_LOGGED]
    await context.close()


async def test_registration_is_reused_reconnects_and_is_forgotten(
    chromium: Any, server: Server, business: Business
) -> None:
    context, page, problems = await open_phone(chromium, server)
    await page.fill("#phone-number", OTHER_PHONE)
    await page.click("#register")
    code = await wait_demo_sms(page)
    # A wrong code is refused with the tries left; the right one registers.
    await page.fill("#code", f"{(int(code) + 1) % 1_000_000:06d}")
    await page.click("#verify")
    await page.wait_for_selector("#verify-error:text('code is not right (4 tries left)')")
    assert await page.is_visible("#verify-form")
    await page.fill("#code", code)
    await page.click("#verify")
    await wait_connected(page)
    token = await page.evaluate("() => JSON.parse(localStorage.getItem('callerid.phone.registration')).device_token")

    # Reload: the kept registration is reused (same token), no form to fill.
    await page.reload()
    await wait_connected(page)
    assert await page.is_hidden("#register-form")
    assert await page.text_content("#registered-number") == f"+{OTHER_PHONE}"
    assert (
        await page.evaluate("() => JSON.parse(localStorage.getItem('callerid.phone.registration')).device_token")
        == token
    )

    # The server goes away: the page says so and retries; when it is back the stream is too.
    server.stop()
    await page.wait_for_selector('#connection[data-state="reconnecting"]')
    assert (await page.text_content("#connection-text") or "").startswith("Offline: reconnecting in ")
    server.start()
    await page.wait_for_selector('#connection[data-state="connected"]', timeout=45_000)
    assert (await business.push(OTHER_PHONE))["status_info"]["status"] == "success"
    assert (await incoming_call(page, source="push"))["name"] == LABEL_NAME
    await page.click("#decline")

    # Another registration for the number replaces this one: the server closes the stream, the page
    # drops the dead token and offers the form again.
    await register_over_http(server, OTHER_PHONE)
    await page.wait_for_selector('#connection[data-state="gone"]')
    assert await page.text_content("#connection-text") == "Registration replaced or removed: register again"
    assert await page.is_visible("#register-form")
    assert await page.evaluate("() => localStorage.getItem('callerid.phone.registration')") is None

    # Replaced while the page was closed: on return the kept token is refused, and the page says so rather
    # than retrying for ever.
    await register_on_page(page, OTHER_PHONE)
    await page.goto("about:blank")
    await register_over_http(server, OTHER_PHONE)
    await page.goto(f"{server.base}/phone")
    await page.wait_for_selector('#connection[data-state="gone"]')
    assert await page.text_content("#connection-text") == "Registration no longer valid: register again"
    assert await page.is_visible("#register-form")
    assert await page.evaluate("() => localStorage.getItem('callerid.phone.registration')") is None

    # Register again from the page, then forget: the server no longer knows the phone.
    await register_on_page(page, OTHER_PHONE)
    await page.click("#forget")
    await page.wait_for_selector('#connection[data-state="idle"]')
    assert await page.text_content("#connection-text") == "Not registered"
    assert await page.is_visible("#register-form")
    assert await page.is_disabled("#simulate-call")
    assert await page.evaluate("() => localStorage.getItem('callerid.phone.registration')") is None
    assert await business.push(OTHER_PHONE) == {
        "status_info": {"status": "error", "reason": "not_app_user", "message": "Not an app user"}
    }

    # A rejected registration shows the server's message and keeps the form.
    await page.fill("#phone-number", "0123")
    await page.click("#register")
    await page.wait_for_selector("#register-error:text('phone_number is invalid')")
    assert await page.is_visible("#register-form")

    # Chromium's log holds only what the test provoked: failed connections and token checks while the server
    # was down, the refused token (handshake and its 401), the wrong code's and the refused registration's 400s.
    expected = (BAD_REQUEST_LOGGED, UNAUTHORIZED_LOGGED, "Failed to load resource: net::ERR_CONNECTION_REFUSED")
    assert [p for p in problems if p not in expected and not p.startswith("WebSocket connection to")] == []
    assert problems.count(BAD_REQUEST_LOGGED) == 2
    assert problems.count(UNAUTHORIZED_LOGGED) == 1
    await context.close()
