"""Phones prove they own their number (issue 14): SMS codes (otp), app credentials (trusted_backend), none.

Every test runs on SQLite and PostgreSQL. The SMS gateway is a local receiver (tests/webhooks/receiver.py); codes
are read from what it received, as a phone would read its SMS.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select, text

from callerid import clock
from callerid.accounts.secrets import sha256_hex
from callerid.config import Settings
from callerid.db import Database
from callerid.delivery.hub import CLOSE
from callerid.delivery.models import AppCredential, Device, PendingRegistration, SmsOutbox
from callerid.delivery.service import register_device
from callerid.secretbox import generate_key
from callerid.webhooks import signing
from tests.cli.conftest import Cli, CliResult, clean_env
from tests.in_process import run_cli
from tests.webhooks.receiver import Receiver

SECRET = signing.new_secret()
NUMBER = "919234567898"
OTHER = "919234567899"
T0 = datetime(2026, 7, 10, 6, 0, tzinfo=UTC)
PHONE = {"phone_number": NUMBER, "platform": "android", "app_version": "2.0.0"}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, receiver: Receiver) -> dict[str, Any]:
    """otp with the local receiver as SMS gateway (on loopback, which the webhook guard must be told to allow);
    a test changes this with indirect parametrisation."""
    overrides: dict[str, Any] = {
        "device_verifier": "otp",
        "sms_webhook_url": receiver.url,
        "sms_webhook_secret": SECRET,
        "webhook_allow_private": True,
    }
    overrides.update(getattr(request, "param", {}))
    return overrides


def with_settings(**overrides: Any) -> Any:
    return pytest.mark.parametrize("settings_overrides", [overrides], indirect=True)


def client_at(app: Any, address: str) -> httpx.AsyncClient:
    """A client whose requests come from ``address`` (the per-address limits count it)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def sms_code(receiver: Receiver, index: int = -1) -> str:
    code: str = orjson.loads(receiver.requests[index].body)["code"]
    return code


async def start(client: httpx.AsyncClient, number: str = NUMBER) -> dict[str, Any]:
    response = await client.post("/app/v1/devices", json={**PHONE, "phone_number": number})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def verify(client: httpx.AsyncClient, registration_id: str, code: str) -> httpx.Response:
    return await client.post("/app/v1/devices/verify", json={"registration_id": registration_id, "code": code})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def rows(db: Database, model: Any) -> list[Any]:
    async with db.session() as session:
        return list((await session.execute(select(model))).scalars())


async def direct_device(db: Database, number: str = NUMBER) -> dict[str, str]:
    async with db.transaction() as session:
        registered = await register_device(session, phone_number=number, platform="android", app_version="1.0.0")
    return {"device_id": registered.device_id, "device_token": registered.device_token}


async def token_works(client: httpx.AsyncClient, token: str) -> bool:
    response = await client.get(f"/app/v1/caller-id?caller={OTHER}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


# --- otp: the flow --------------------------------------------------------------------------------------------


async def test_nothing_changes_until_the_code_is_confirmed(
    client: httpx.AsyncClient, db: Database, runtime: Any, receiver: Receiver
) -> None:
    old = await direct_device(db)
    hub = runtime.hub
    async with hub.attach(old["device_id"]) as old_stream:
        answer = await start(client)
        assert set(answer) == {"registration_id", "status", "expires_at", "resend_after"}  # no demo_code here
        assert answer["status"] == "code_sent"
        # Pending: the old device is still the number's, its token works and its stream is open.
        assert [str(d.id) for d in await rows(db, Device)] == [old["device_id"]]
        assert await token_works(client, old["device_token"])
        assert old_stream.queue.empty()
        assert len(await rows(db, PendingRegistration)) == 1

        confirmed = await verify(client, answer["registration_id"], sms_code(receiver))
        assert confirmed.status_code == 201, confirmed.text
        body = confirmed.json()
        assert set(body) == {"device_id", "device_token"}
        # Confirmed: the new device replaced the old one (token refused, stream told to close).
        [device] = await rows(db, Device)
        assert (str(device.id), device.phone_number, device.token_hash) == (
            body["device_id"],
            NUMBER,
            sha256_hex(body["device_token"]),
        )
        assert not await token_works(client, old["device_token"])
        assert await token_works(client, body["device_token"])
        assert old_stream.queue.get_nowait() == CLOSE
    assert await rows(db, PendingRegistration) == []
    assert await rows(db, SmsOutbox) == []  # a real SMS gateway: the development outbox is never written
    # A code confirms once.
    again = await verify(client, answer["registration_id"], sms_code(receiver))
    assert (again.status_code, again.json()) == (
        404,
        {"slug": "not-found", "message": "registration_id is unknown or has ended: register again"},
    )


async def test_the_sms_webhook_is_called_once_and_signed(
    client: httpx.AsyncClient, receiver: Receiver, settings: Settings
) -> None:
    from standardwebhooks.webhooks import Webhook

    answer = await start(client)
    [sent] = receiver.requests
    assert (sent.method, sent.target) == ("POST", "/hook?key=s3cret")
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"] == settings.webhook_user_agent
    body = orjson.loads(sent.body)
    assert set(body) == {"to", "message", "code", "expires_at"}
    assert body["to"] == NUMBER
    assert len(body["code"]) == 6 and body["code"].isdigit()
    assert body["message"] == f"Your callerid code is {body['code']}"
    assert body["expires_at"] == answer["expires_at"]
    # A Standard Webhooks signature with the configured secret, checked by the reference implementation.
    headers = {name: sent.headers[name] for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    assert Webhook(SECRET).verify(sent.body, headers) == body
    assert signing.verify(
        SECRET, headers["webhook-id"], headers["webhook-timestamp"], sent.body, headers["webhook-signature"]
    )


async def test_a_wrong_code_says_the_tries_left_and_the_fifth_ends_the_registration(
    client: httpx.AsyncClient, db: Database, receiver: Receiver
) -> None:
    answer = await start(client)
    code = sms_code(receiver)
    for left in (4, 3, 2, 1):
        response = await verify(client, answer["registration_id"], wrong(code) if left != 2 else "abc")
        assert (response.status_code, response.json()) == (
            400,
            {"slug": "invalid-input", "message": f"code is not right ({left} {'tries' if left > 1 else 'try'} left)"},
        )
    response = await verify(client, answer["registration_id"], wrong(code))
    assert (response.status_code, response.json()) == (
        410,
        {"slug": "registration-ended", "message": "code was wrong 5 times: registration_id has ended, register again"},
    )
    # Ended: even the right code no longer registers anything.
    assert (await verify(client, answer["registration_id"], code)).status_code == 404
    assert await rows(db, Device) == [] and await rows(db, PendingRegistration) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "registration_id is required"),
        ({"registration_id": "nope", "code": "123456"}, "registration_id is invalid"),
        ({"registration_id": str(uuid.uuid4())}, "code is required"),
        ({"registration_id": str(uuid.uuid4()), "code": 123456}, "code is invalid"),
    ],
)
async def test_verify_names_the_bad_field(client: httpx.AsyncClient, body: dict[str, Any], message: str) -> None:
    response = await client.post("/app/v1/devices/verify", json=body)
    assert (response.status_code, response.json()) == (400, {"slug": "invalid-input", "message": message})


async def test_registration_input_is_checked_before_any_code_is_sent(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    response = await client.post("/app/v1/devices", json={**PHONE, "phone_number": "12"})
    assert (response.status_code, response.json()) == (
        400,
        {"slug": "invalid-input", "message": "phone_number is invalid"},
    )
    assert receiver.requests == []


async def test_a_nul_in_any_field_is_a_400_naming_it(client: httpx.AsyncClient, receiver: Receiver) -> None:
    answer = await start(client)
    registration = answer["registration_id"]
    for path, body, field in (
        ("/app/v1/devices", {**PHONE, "phone_number": "9192345\x0067898"}, "phone_number"),
        ("/app/v1/devices", {**PHONE, "platform": "android\x00"}, "platform"),
        ("/app/v1/devices", {**PHONE, "app_version": "2.0.0\x00"}, "app_version"),
        ("/app/v1/devices/verify", {"registration_id": registration + "\x00", "code": "123456"}, "registration_id"),
        ("/app/v1/devices/verify", {"registration_id": registration, "code": "123\x00456"}, "code"),
        ("/app/v1/devices/resend", {"registration_id": registration + "\x00"}, "registration_id"),
    ):
        response = await client.post(path, json=body)
        assert response.status_code == 400, (path, body, response.text)
        assert response.json()["message"].startswith(field), response.text


async def test_the_code_expires_after_ten_minutes(client: httpx.AsyncClient, db: Database, receiver: Receiver) -> None:
    clock.freeze(T0)
    answer = await start(client)
    assert answer["expires_at"] == "2026-07-10T06:10:00.0Z"
    assert answer["resend_after"] == "2026-07-10T06:01:00.0Z"
    clock.advance(timedelta(minutes=10) - timedelta(seconds=1))
    assert (await verify(client, answer["registration_id"], wrong(sms_code(receiver)))).status_code == 400
    clock.advance(1)
    expired = await verify(client, answer["registration_id"], sms_code(receiver))
    assert (expired.status_code, expired.json()) == (
        410,
        {"slug": "registration-ended", "message": "registration_id has expired: register again"},
    )
    assert await rows(db, Device) == [] and await rows(db, PendingRegistration) == []


async def test_a_resend_waits_a_minute_replaces_the_code_and_keeps_the_tries(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    clock.freeze(T0)
    answer = await start(client)
    first = sms_code(receiver)
    registration = {"registration_id": answer["registration_id"]}
    response = await verify(client, answer["registration_id"], wrong(first))
    assert response.json()["message"] == "code is not right (4 tries left)"
    clock.advance(45)
    early = await client.post("/app/v1/devices/resend", json=registration)
    assert (early.status_code, early.headers["retry-after"], early.json()) == (
        429,
        "15",
        {"slug": "rate-limit-exceeded", "message": "a code was just sent: ask for another in 15 seconds"},
    )
    assert len(receiver.requests) == 1
    clock.advance(15)
    resent = await client.post("/app/v1/devices/resend", json=registration)
    assert resent.status_code == 202, resent.text
    assert resent.json() == {
        "registration_id": answer["registration_id"],
        "status": "code_sent",
        "expires_at": "2026-07-10T06:11:00.0Z",
        "resend_after": "2026-07-10T06:02:00.0Z",
    }
    assert len(receiver.requests) == 2
    second = sms_code(receiver)
    if second != first:  # one chance in a million that the new code is the old one
        stale = await verify(client, answer["registration_id"], first)
        assert stale.json()["message"] == "code is not right (3 tries left)"
    assert (await verify(client, answer["registration_id"], second)).status_code == 201


async def test_codes_are_stored_only_as_hashes_bound_to_their_registration(
    client: httpx.AsyncClient, db: Database, receiver: Receiver
) -> None:
    answer = await start(client)
    code = sms_code(receiver)
    async with db.session() as session:
        raw = (await session.execute(text("SELECT * FROM device_registrations"))).mappings().one()
    registration_id = uuid.UUID(answer["registration_id"])
    assert raw["code_hash"] == sha256_hex(f"device-registration:{registration_id}:{code}")
    assert raw["code_hash"] != sha256_hex(code)
    assert all(code not in str(value) for value in raw.values())
    assert raw["phone_number"] == NUMBER and raw["tries"] == 0


# --- otp: throttling ------------------------------------------------------------------------------------------


async def test_codes_per_number_are_limited_with_the_exact_retry_after(app: Any, receiver: Receiver) -> None:
    clock.freeze(T0)
    async with client_at(app, "10.0.0.1") as first, client_at(app, "10.0.0.2") as second:
        for minute in range(5):  # the default: 5 codes an hour per number
            await start(first if minute % 2 else second)
            clock.advance(60)
        refused = await first.post("/app/v1/devices", json=PHONE)
        assert (refused.status_code, refused.headers["retry-after"], refused.json()) == (
            429,
            str(3600 - 5 * 60),
            {
                "slug": "rate-limit-exceeded",
                "message": "phone_number has been sent too many codes: try again in 3300 seconds",
            },
        )
        assert (await second.post("/app/v1/devices", json=PHONE)).status_code == 429  # any address
        await start(first, OTHER)  # another number is not affected
        assert len(receiver.requests) == 6
        clock.advance(3300)
        await start(first)


async def test_codes_per_address_are_limited(app: Any, receiver: Receiver) -> None:
    clock.freeze(T0)
    async with client_at(app, "10.0.0.1") as busy, client_at(app, "10.0.0.2") as other:
        for n in range(20):  # the default: 20 codes an hour per client address
            await start(busy, f"9190000000{n:02d}")
        clock.advance(10)
        refused = await busy.post("/app/v1/devices", json=PHONE)
        assert (refused.status_code, refused.headers["retry-after"]) == (429, "3590")
        assert refused.json()["message"] == "too many codes asked for from here: try again in 3590 seconds"
        await start(other)
    assert len(receiver.requests) == 21


async def test_wrong_codes_are_limited_per_number(app: Any, db: Database, receiver: Receiver) -> None:
    clock.freeze(T0)
    async with client_at(app, "10.0.0.1") as one, client_at(app, "10.0.0.2") as two:
        for phone in (one, two):  # two registrations, 5 wrong codes each: the default 10 an hour per number
            answer = await start(phone)
            for _ in range(5):
                await verify(phone, answer["registration_id"], wrong(sms_code(receiver)))
                clock.advance(1)
        answer = await start(one)
        clock.advance(100)
        refused = await verify(one, answer["registration_id"], sms_code(receiver))
        assert (refused.status_code, refused.headers["retry-after"], refused.json()) == (
            429,
            str(3600 - 110),
            {
                "slug": "rate-limit-exceeded",
                "message": "code: too many wrong codes for this number: try again in 3490 seconds",
            },
        )
        assert await rows(db, Device) == []
        clock.advance(3490)
        assert (await verify(one, answer["registration_id"], sms_code(receiver))).status_code == 410  # expired now


async def test_wrong_codes_are_limited_per_address(app: Any, receiver: Receiver) -> None:
    clock.freeze(T0)
    async with client_at(app, "10.0.0.1") as guesser, client_at(app, "10.0.0.2") as honest:
        for n in range(6):  # 6 numbers, 5 wrong codes each: the default 30 an hour per address
            answer = await start(guesser, f"9190000000{n:02d}")
            for _ in range(5):
                assert (await verify(guesser, answer["registration_id"], "000000")).status_code in (400, 410)
        answer = await start(guesser)
        clock.advance(60)
        refused = await verify(guesser, answer["registration_id"], sms_code(receiver))
        assert (refused.status_code, refused.headers["retry-after"]) == (429, "3540")
        assert refused.json()["message"] == "code: too many wrong codes from here: try again in 3540 seconds"
        # The same registration confirmed from another address (the phone's own connection) still works.
        assert (await verify(honest, answer["registration_id"], sms_code(receiver))).status_code == 201


# --- otp: the SMS gateway failing -------------------------------------------------------------------------------


async def test_a_failing_sms_gateway_answers_502_and_activates_nothing(
    client: httpx.AsyncClient, db: Database, receiver: Receiver
) -> None:
    old = await direct_device(db)
    receiver.status = 500
    response = await client.post("/app/v1/devices", json=PHONE)
    assert (response.status_code, response.json()) == (
        502,
        {
            "slug": "sms-not-sent",
            "message": "the code could not be sent by SMS and nothing was registered: try again later",
        },
    )
    assert len(receiver.requests) == 1
    assert await rows(db, PendingRegistration) == []
    assert [str(d.id) for d in await rows(db, Device)] == [old["device_id"]]
    assert await token_works(client, old["device_token"])


@with_settings(sms_webhook_timeout_seconds=0.3)
async def test_a_silent_sms_gateway_answers_502_in_time(
    client: httpx.AsyncClient, db: Database, receiver: Receiver
) -> None:
    receiver.hang = True
    response = await client.post("/app/v1/devices", json=PHONE)
    assert (response.status_code, response.json()["slug"]) == (502, "sms-not-sent")
    assert await rows(db, PendingRegistration) == []


@with_settings(webhook_allow_private=False)
async def test_the_sms_gateway_goes_through_the_webhook_address_guard(
    client: httpx.AsyncClient, db: Database, receiver: Receiver
) -> None:
    response = await client.post("/app/v1/devices", json=PHONE)
    assert (response.status_code, response.json()["slug"]) == (502, "sms-not-sent")
    assert receiver.requests == []  # refused at connect time: 127.0.0.1 is loopback
    assert await rows(db, PendingRegistration) == []


# --- otp: the development SMS outbox ----------------------------------------------------------------------------


@with_settings(sms_webhook_url=None, sms_webhook_secret=None)
async def test_without_an_sms_gateway_codes_go_to_the_development_outbox_on_sqlite_only(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    response = await client.post("/app/v1/devices", json=PHONE)
    if not settings.embedded:  # production has no development outbox (and `serve` refuses to start like this)
        assert (response.status_code, response.json()) == (
            503,
            {
                "slug": "sms-not-configured",
                "message": "registration codes cannot be sent: no SMS gateway is configured",
            },
        )
        assert await rows(db, PendingRegistration) == [] and await rows(db, SmsOutbox) == []
        return
    assert response.status_code == 202
    answer = response.json()
    assert set(answer) == {"registration_id", "status", "expires_at", "resend_after", "demo_code"}
    [sms] = await rows(db, SmsOutbox)
    assert (sms.phone_number, sms.code, str(sms.registration_id)) == (
        NUMBER,
        answer["demo_code"],
        answer["registration_id"],
    )
    assert sms.message == f"Your callerid code is {answer['demo_code']}"
    assert (await verify(client, answer["registration_id"], answer["demo_code"])).status_code == 201


# --- trusted_backend and none ------------------------------------------------------------------------------------


async def issue(db: Database, name: str = "acme-backend") -> str:
    from callerid.delivery.app_credentials import create_credential

    async with db.transaction() as session:
        return (await create_credential(session, name)).secret


@with_settings(device_verifier="trusted_backend")
async def test_trusted_backend_registers_at_once_with_an_active_credential(
    client: httpx.AsyncClient, db: Database, receiver: Receiver
) -> None:
    from callerid.delivery.app_credentials import revoke_credential

    old = await direct_device(db)
    credential = await issue(db)
    [stored] = await rows(db, AppCredential)
    assert stored.token_hash == sha256_hex(credential) and credential.startswith("appc_")

    vouched = await client.post("/app/v1/devices", json=PHONE, headers={"Authorization": f"Bearer {credential}"})
    assert vouched.status_code == 201, vouched.text
    assert set(vouched.json()) == {"device_id", "device_token"}
    assert [str(d.id) for d in await rows(db, Device)] == [vouched.json()["device_id"]]
    assert not await token_works(client, old["device_token"])
    assert receiver.requests == []

    for headers, message in (
        ({}, "Missing app credential: on this server phones are registered by the app's own server "
             "(Authorization: Bearer <app credential>)"),
        ({"Authorization": "Bearer appc_unknown"}, "invalid app credential"),
        ({"Authorization": f"Bearer {vouched.json()['device_token']}"}, "invalid app credential"),
    ):  # fmt: skip
        refused = await client.post("/app/v1/devices", json={**PHONE, "phone_number": OTHER}, headers=headers)
        assert (refused.status_code, refused.json()) == (401, {"slug": "authorization-error", "message": message})
    # Authorisation comes before the body.
    refused = await client.post("/app/v1/devices", content=b"nope")
    assert refused.status_code == 401

    async with db.transaction() as session:
        await revoke_credential(session, "acme-backend")
    revoked = await client.post("/app/v1/devices", json=PHONE, headers={"Authorization": f"Bearer {credential}"})
    assert (revoked.status_code, revoked.json()["message"]) == (401, "invalid app credential")
    assert [str(d.id) for d in await rows(db, Device)] == [vouched.json()["device_id"]]
    no_codes = await client.post("/app/v1/devices/verify", json={"registration_id": str(uuid.uuid4()), "code": "1"})
    assert (no_codes.status_code, no_codes.json()["message"]) == (
        404,
        "this server does not send registration codes (device verifier: trusted_backend)",
    )


@with_settings(device_verifier="none")
async def test_none_answers_exactly_as_before(client: httpx.AsyncClient, db: Database, receiver: Receiver) -> None:
    response = await client.post("/app/v1/devices", json=PHONE)
    assert response.status_code == 201
    assert set(response.json()) == {"device_id", "device_token"}
    assert response.json()["device_token"].startswith("dev_")
    assert receiver.requests == []
    async with db.session() as session:
        assert (await session.execute(select(func.count()).select_from(PendingRegistration))).scalar_one() == 0
    resend = await client.post("/app/v1/devices/resend", json={"registration_id": str(uuid.uuid4())})
    assert resend.status_code == 404


# --- the operator CLI -------------------------------------------------------------------------------------------

PG_URL = "postgresql+asyncpg://callerid@127.0.0.1:1/callerid"  # never reached: refused before
PHONE_SETTINGS = ("CALLERID_DEVICE_VERIFIER", "CALLERID_SMS_WEBHOOK_URL", "CALLERID_SMS_WEBHOOK_SECRET")


def phone_env(**settings: str) -> dict[str, str]:
    """The CLI's environment with the phone settings at their defaults unless given here."""
    env = clean_env()
    for name in PHONE_SETTINGS:
        env.pop(name, None)
    env.update(settings)
    return env


class InProcessCli(Cli):
    """``Cli`` with the commands run in this process (tests/in_process.py); the start-up refusals below run the real
    executable."""

    def run(self, *args: str, timeout: float = 60) -> CliResult:
        done = run_cli(args, self.env, cwd=self.cwd)
        return CliResult(args, done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The command in an empty folder, on its default database (the embedded default: otp, no SMS gateway)."""
    folder = tmp_path / "cli"
    folder.mkdir()
    return InProcessCli(folder, phone_env())


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["devices", "register", "--number", NUMBER,
                                     "--platform", "android", "--app-version", "2.0.0"]])  # fmt: skip
def test_postgresql_with_otp_and_no_sms_gateway_refuses_to_start(tmp_path: Path, command: list[str]) -> None:
    env = phone_env(CALLERID_DATABASE_URL=PG_URL, CALLERID_SECRET_KEY=generate_key())
    folder = tmp_path / "cli"
    folder.mkdir()
    stderr = Cli(folder, env).run(*command, "--json", timeout=30).failed()
    assert "error: cannot start: CALLERID_DEVICE_VERIFIER=otp (the default) needs CALLERID_SMS_WEBHOOK_URL" in stderr
    assert "Traceback" not in stderr
    assert list(folder.iterdir()) == []


def test_an_sms_gateway_needs_its_signing_secret(tmp_path: Path) -> None:
    env = phone_env(CALLERID_SMS_WEBHOOK_URL="https://sms.example.com/send")
    stderr = Cli(tmp_path, env).run("serve", "--port", "1", "--json", timeout=30).failed()
    assert "CALLERID_SMS_WEBHOOK_SECRET is required with CALLERID_SMS_WEBHOOK_URL" in stderr


def test_cli_app_credentials_and_the_development_outbox(cli: Cli) -> None:
    created = cli.run("app-credentials", "create", "--name", "acme-backend", "--json").json()
    assert set(created) == {"id", "name", "status", "created_at", "revoked_at", "credential"}
    assert (created["name"], created["status"]) == ("acme-backend", "active")
    assert "already used" in cli.run("app-credentials", "create", "--name", "acme-backend", "--json").failed()
    listed = cli.run("app-credentials", "list", "--json").json()["app_credentials"]
    assert [c["id"] for c in listed] == [created["id"]] and "credential" not in listed[0]
    revoked = cli.run("app-credentials", "revoke", "--id", created["id"], "--json").json()
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    assert "no app credential" in cli.run("app-credentials", "revoke", "--id", "nobody", "--json").failed()

    # otp on the embedded default: `devices register` confirms the development code itself.
    registered = cli.run(
        "devices", "register", "--number", NUMBER, "--platform", "android", "--app-version", "2.0.0", "--json"
    ).json()
    assert set(registered) == {"device_id", "device_token"}
    [sms] = cli.run("sms", "outbox", "--number", f"+{NUMBER}", "--json").json()["sms"]
    assert sms["to"] == NUMBER and sms["message"] == f"Your callerid code is {sms['code']}"
    assert cli.run("sms", "outbox", "--number", OTHER, "--json").json() == {"sms": []}
    assert cli.run("sms", "generate-secret", "--json").json()["secret"].startswith("whsec_")


async def test_cli_register_and_verify_through_an_sms_gateway(tmp_path: Path, receiver: Receiver) -> None:
    folder = tmp_path / "cli"
    folder.mkdir()
    env = phone_env(
        CALLERID_SMS_WEBHOOK_URL=receiver.url, CALLERID_SMS_WEBHOOK_SECRET=SECRET, CALLERID_WEBHOOK_ALLOW_PRIVATE="true"
    )
    cli = InProcessCli(folder, env)
    pending = (
        await cli.arun("devices", "register", "--number", NUMBER, "--platform", "ios", "--app-version", "3.0", "--json")
    ).json()
    assert pending["status"] == "code_sent" and "demo_code" not in pending
    assert pending["verify"] == f"callerid devices verify --registration-id {pending['registration_id']} --code <code>"
    assert (await cli.arun("sms", "outbox", "--json")).json() == {"sms": []}
    wrong_code = await cli.arun("devices", "verify", "--registration-id", pending["registration_id"], "--code", "x")
    assert "code is not right (4 tries left)" in wrong_code.failed()
    confirmed = await cli.arun(
        "devices", "verify", "--registration-id", pending["registration_id"], "--code", sms_code(receiver), "--json"
    )
    assert set(confirmed.json()) == {"device_id", "device_token"}
