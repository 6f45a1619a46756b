"""The operator CLI's contract (issue point 4), through the real command in a subprocess.

Each start costs about a second, so one scenario per database walks every command; independent failing
commands run at the same time. Credentials the CLI prints are checked against the service in-process.
"""

from __future__ import annotations

import asyncio
import io
import re
import stat
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import select

from callerid import clock, secretbox
from callerid.accounts import service as accounts
from callerid.accounts.models import Member
from callerid.accounts.secrets import verify_password
from callerid.app import create_app
from callerid.cli.common import display_url
from callerid.config import FEATURES, Settings
from callerid.db import Database
from callerid.labels.models import LabelLogo
from tests.cli.conftest import Cli, CliResult
from tests.conftest import make_settings
from tests.ops.probes import SECURE_PATH, add_probe_routes

PUBLIC = {"X-Public-Access": "allow"}
# The public URL the CLI is given, so that the URLs it prints are known exactly (a trailing slash is dropped).
PUBLIC_BASE_URL = "https://callerid.example.test"
ALL_WRITE = dict.fromkeys(FEATURES, "write")


@asynccontextmanager
async def service_on(database_url: str, data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process on the database the CLI wrote to, with an authenticated probe route."""
    app = create_app(make_settings(database_url, data_dir))
    add_probe_routes(app)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def mint_status(client: httpx.AsyncClient, account_id: str, key_id: str, api_key: str) -> tuple[int, str]:
    response = await client.post(
        f"/clients/{account_id}/token", json={"key_id": key_id, "api_key": api_key}, headers=PUBLIC
    )
    return response.status_code, response.json().get("token", "")


TOKEN_CACHE_SECONDS = Settings.model_fields["token_cache_seconds"].default


async def probe_status(client: httpx.AsyncClient, account_id: str, token: str) -> tuple[int, Any]:
    response = await client.get(
        SECURE_PATH.format(clientAccountId=account_id), headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code, response.json()


def assert_no_secret(shown: list[CliResult], quiet: list[CliResult], secrets: list[str]) -> None:
    """No secret on any stderr; on stdout only in the outputs that exist to show them (create, regenerate, demo)."""
    for result in [*shown, *quiet]:
        for secret in secrets:
            assert secret not in result.stderr, (result.args, "stderr")
            if result not in shown:
                assert secret not in result.stdout, (result.args, "stdout")


async def walk_the_contract(cli: Cli, database_url: str, data_dir: Path, *, full: bool) -> None:
    """Every command once. ``full`` adds the failure cases and the text output (run on SQLite only)."""
    shown: list[CliResult] = []  # outputs allowed to print secrets
    quiet: list[CliResult] = []  # every other output
    cli.env["CALLERID_PUBLIC_BASE_URL"] = f"{PUBLIC_BASE_URL}/"

    # --- accounts: works in an empty folder / empty database, exact keys ---------------------------------
    # `migrate` starts at the same time: two first starts must not race to create the same tables.
    created, migrated_result = await asyncio.gather(
        cli.arun("accounts", "create", "--name", "Acme [Flowers] Café", "--admin-email", "Ops@Acme.Example", "--json"),
        cli.arun("migrate", "--json"),
    )
    shown.append(created)
    quiet.append(migrated_result)
    migrated = migrated_result.json()
    # SQLite runs on the default (relative) URL; PostgreSQL's is shown without a password.
    shown_url = "sqlite+aiosqlite:///./callerid.db" if full else display_url(database_url)
    assert migrated == {"migrated": True, "database": shown_url}
    account = created.json()
    assert set(account) == {"client_account_id", "name", "admin_email", "admin_password", "console_url"}
    assert account["console_url"] == f"{PUBLIC_BASE_URL}/console"
    account_id = account["client_account_id"]
    assert str(uuid.UUID(account_id)) == account_id
    assert account["name"] == "Acme [Flowers] Café"
    assert account["admin_email"] == "ops@acme.example"
    assert len(account["admin_password"]) >= 16

    # --- both keys and the list at once; on SQLite also every failing command ----------------------------
    commands = [
        (
            "api-keys", "create", "--account", account_id.upper(), "--name", "CRM", "--description", "outbound",
            "--access", "call_personalisation=write, number_management=read", "--json",
        ),
        ("api-keys", "create", "--account", account_id, "--name", "default", "--json"),
        ("accounts", "list", "--json"),
    ]  # fmt: skip
    failing = [
        (("accounts", "create", "--name", "X", "--admin-email", "[not-an-email]", "--json"),
         "'[not-an-email]' is not a valid e-mail address"),
        (("api-keys", "create", "--account", "not-a-uuid", "--name", "k", "--json"), "'not-a-uuid' is not a UUID"),
        (("api-keys", "create", "--account", str(uuid.uuid4()), "--name", "k", "--json"), "not found"),
        (("api-keys", "create", "--account", account_id, "--name", "k", "--access", "call_me_back=admin", "--json"),
         "unknown access level 'admin' for call_me_back"),
        (("accounts", "create", "--name", "X", "--admin-email", "a@b.example", "--timezone", "Mars/Base", "--json"),
         "'Mars/Base' is not an IANA timezone"),
    ] if full else []  # fmt: skip
    crm_result, default_result, listed, *failed = await asyncio.gather(
        *(cli.arun(*args) for args in commands), *(cli.arun(*args) for args, _ in failing)
    )
    shown += [crm_result, default_result]
    quiet += [listed, *failed]
    for result, (_, reason) in zip(failed, failing, strict=True):
        assert reason in result.failed()

    only = listed.json()["accounts"]
    assert listed.json() == {
        "accounts": [
            {
                "client_account_id": account_id,
                "name": "Acme [Flowers] Café",
                "timezone": "Asia/Kolkata",
                "features": list(FEATURES),
                "created_at": only[0]["created_at"],
            }
        ]
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z", only[0]["created_at"])

    crm = crm_result.json()
    assert set(crm) == {"key_id", "api_key", "name", "access"}
    assert crm["name"] == "CRM"
    assert crm["access"] == {
        "call_personalisation": "write",
        "number_management": "read",
        "call_me_back": "none",
        "user_feedback": "none",
    }
    uuid.UUID(crm["key_id"])
    uuid.UUID(crm["api_key"])
    default = default_result.json()
    assert set(default) == {"key_id", "api_key", "name", "access"}
    assert default["access"] == ALL_WRITE

    settings = make_settings(database_url, data_dir)
    if full:
        # Keys 3-5 directly in the database; the 6th through the CLI must be refused (limit 5).
        db = Database(database_url, null_pool=True)
        try:
            async with db.transaction() as session:
                for n in range(3):
                    await accounts.create_api_key(session, settings, account_id=uuid.UUID(account_id), name=f"k{n}")
        finally:
            await db.dispose()
        sixth = cli.run("api-keys", "create", "--account", account_id, "--name", "sixth", "--json")
        quiet.append(sixth)
        assert "at most 5 API keys" in sixth.failed()

    listed_keys_result = cli.run("api-keys", "list", "--account", account_id, "--json")
    quiet.append(listed_keys_result)
    listed_keys = listed_keys_result.json()
    assert set(listed_keys) == {"client_account_id", "api_keys"}
    assert listed_keys["client_account_id"] == account_id
    assert len(listed_keys["api_keys"]) == (5 if full else 2)
    by_id = {k["key_id"]: k for k in listed_keys["api_keys"]}
    assert by_id[crm["key_id"]]["name"] == "CRM"
    assert by_id[crm["key_id"]]["description"] == "outbound"
    assert by_id[crm["key_id"]]["access"] == crm["access"]
    assert by_id[crm["key_id"]]["created_by_email"] == "ops@acme.example"
    assert all("api_key" not in k for k in listed_keys["api_keys"])

    # --- regenerate and delete take effect, checked against the service: minting at once, tokens in use within
    # token_cache_seconds (a serving process may reuse a token check that long; the CLI is another process) ---
    async with service_on(database_url, data_dir) as client:
        status, old_token = await mint_status(client, account_id, crm["key_id"], crm["api_key"])
        assert status == 200
        assert await probe_status(client, account_id, old_token) == (200, {"account": account_id})

        regenerated_result = cli.run(
            "api-keys", "regenerate", "--account", account_id, "--key-id", crm["key_id"], "--json"
        )
        shown.append(regenerated_result)
        regenerated = regenerated_result.json()
        assert set(regenerated) == {"key_id", "api_key", "name", "access"}
        assert regenerated["key_id"] != crm["key_id"]
        assert regenerated["api_key"] != crm["api_key"]
        assert (regenerated["name"], regenerated["access"]) == ("CRM", crm["access"])

        assert (await mint_status(client, account_id, crm["key_id"], crm["api_key"]))[0] == 401
        clock.advance(TOKEN_CACHE_SECONDS)
        assert await probe_status(client, account_id, old_token) == (
            401,
            {"slug": "authorization-error", "message": "please login again"},
        )
        status, new_token = await mint_status(client, account_id, regenerated["key_id"], regenerated["api_key"])
        assert status == 200
        assert (await probe_status(client, account_id, new_token))[0] == 200

        deleted = cli.run("api-keys", "delete", "--account", account_id, "--key-id", regenerated["key_id"], "--json")
        quiet.append(deleted)
        assert deleted.json() == {"deleted": True, "key_id": regenerated["key_id"]}
        assert (await mint_status(client, account_id, regenerated["key_id"], regenerated["api_key"]))[0] == 401
        clock.advance(TOKEN_CACHE_SECONDS)
        assert (await probe_status(client, account_id, new_token))[0] == 401
        assert (await mint_status(client, account_id, default["key_id"], default["api_key"]))[0] == 200

        # --- migrate, demo (idempotent, credentials keep working) ---------------------------------------
        demo_commands = [("demo", "--json")]
        if full:
            demo_commands.append(  # the key was deleted above: deleting it again fails
                ("api-keys", "delete", "--account", account_id, "--key-id", regenerated["key_id"], "--json")
            )
        first_result, *again = await asyncio.gather(*(cli.arun(*args) for args in demo_commands))
        quiet += again
        shown.append(first_result)
        if full:
            assert "not found" in again[0].failed()

        first = first_result.json()
        assert {"client_account_id", "key_id", "api_key", "admin_email", "admin_password", "label_id"} <= set(first)
        assert first["admin_email"] == "admin@demo.example.com"
        assert first["urls"]["console"] == f"{PUBLIC_BASE_URL}/console"
        if full:  # the embedded default without an SMS gateway: a phone's code shows on /phone
            assert "'Demo SMS'" in first["phone_codes"]
        if full:
            text = cli.run("demo")
            shown.append(text)
            assert text.returncode == 0, text.stderr
            assert not text.stdout.lstrip().startswith("{")
            # What `dev.py start` shows first: where to sign in, and with what.
            assert text.stdout.splitlines()[0] == (
                f"Demo account ready: sign in to the console at {PUBLIC_BASE_URL}/console "
                f"as admin@demo.example.com with password {first['admin_password']}"
            )
            assert "admin_email: admin@demo.example.com" in text.stdout.splitlines()
            assert f"admin_password: {first['admin_password']}" in text.stdout.splitlines()
            assert f"  console: {PUBLIC_BASE_URL}/console" in text.stdout.splitlines()
            assert f"label_id: {first['label_id']}" in text.stdout.splitlines()
            assert f"client_account_id: {first['client_account_id']}" in text.stdout
            assert f"key_id: {first['key_id']}" in text.stdout
            assert f"api_key: {first['api_key']}" in text.stdout
            # soft-wrapped: the ready-to-paste command stays on one line whatever the width
            assert any(line.startswith("try: curl ") and first["api_key"] in line for line in text.stdout.splitlines())
        second = cli.run("demo", "--json")
        shown.append(second)
        assert second.json() == first
        status, demo_token = await mint_status(client, first["client_account_id"], first["key_id"], first["api_key"])
        assert status == 200
        assert (await probe_status(client, first["client_account_id"], demo_token))[0] == 200

    # --- the demo's label: listed, its logo a 200x200 PNG in the database -------------------------------------
    demo_labels_result = cli.run("labels", "list", "--account", first["client_account_id"], "--json")
    quiet.append(demo_labels_result)
    demo_labels = demo_labels_result.json()
    [demo_label] = demo_labels["labels"]
    logo_key = demo_label["logo_url"].rsplit("/", 1)[1]
    assert demo_labels == {
        "client_account_id": first["client_account_id"],
        "labels": [
            {
                "id": first["label_id"],
                "name": "Demo Flowers",
                "logo_url": f"{PUBLIC_BASE_URL}/logos/{logo_key}",
                "category": 10,
                "sub_category": 142,
                "created_by_email": "admin@demo.example.com",
                "created_at": demo_label["created_at"],
                "label_type": "dynamic",
            }
        ],
    }
    assert not (cli.cwd / "callerid-data" / "logos").exists()
    db = Database(database_url, null_pool=True)
    try:
        async with db.session() as session:
            stored = await session.get(LabelLogo, logo_key.removesuffix(".png"))
    finally:
        await db.dispose()
    assert stored is not None
    with Image.open(io.BytesIO(stored.data)) as logo:
        assert (logo.format, logo.size) == ("PNG", (200, 200))

    demo_file = cli.cwd / "callerid-data" / "demo.json"
    assert stat.S_IMODE(demo_file.stat().st_mode) == 0o600
    db = Database(database_url, null_pool=True)
    try:
        async with db.session() as session:
            names = sorted(a.name for a in await accounts.list_accounts(session))
            demo_admin = await session.scalar(
                select(Member).where(
                    Member.account_id == uuid.UUID(first["client_account_id"]),
                    Member.email == "admin@demo.example.com",
                )
            )
    finally:
        await db.dispose()
    assert names == ["Acme [Flowers] Café", "Demo Business"]  # failed commands left nothing behind
    assert demo_admin is not None
    assert verify_password(demo_admin.password_hash, first["admin_password"])  # the printed password signs in

    secrets = [account["admin_password"], crm["api_key"], default["api_key"], regenerated["api_key"]]
    secrets += [first["api_key"], first["admin_password"], old_token, new_token, demo_token]
    assert_no_secret(shown, quiet, secrets)


async def test_cli_contract_on_sqlite_in_an_empty_folder(cli: Cli, tmp_path: Path) -> None:
    assert list(cli.cwd.iterdir()) == []
    database_url = f"sqlite+aiosqlite:///{cli.cwd / 'callerid.db'}"
    await walk_the_contract(cli, database_url, tmp_path / "app-data", full=True)
    assert (cli.cwd / "callerid.db").exists()


async def test_cli_contract_on_a_fresh_postgresql_database(cli: Cli, fresh_postgresql_url: str, tmp_path: Path) -> None:
    cli.env["CALLERID_DATABASE_URL"] = fresh_postgresql_url
    cli.env["CALLERID_SECRET_KEY"] = secretbox.generate_key()  # required with PostgreSQL (see test_secretbox)
    await walk_the_contract(cli, fresh_postgresql_url, tmp_path / "app-data", full=False)
    assert not (cli.cwd / "callerid.db").exists()


async def test_usage_errors_and_an_unreachable_database(cli: Cli) -> None:
    """Refused before touching any database; a database that cannot be reached is named without its password."""
    unreachable_url = "postgresql+asyncpg://me:hunter2secret@127.0.0.1:1/x"
    key = secretbox.generate_key()  # required with PostgreSQL (see test_secretbox)
    unreachable = Cli(cli.cwd, {**cli.env, "CALLERID_DATABASE_URL": unreachable_url, "CALLERID_SECRET_KEY": key})
    missing_option, bad_key_id, no_database = await asyncio.gather(
        cli.arun("accounts", "create", "--name", "X", "--json"),
        cli.arun("api-keys", "delete", "--account", "00000000-0000-0000-0000-000000000000", "--key-id", "no", "--json"),
        unreachable.arun("accounts", "list", "--json"),
    )
    assert "--admin-email" in missing_option.failed()
    assert "key-id 'no' is not a UUID" in bad_key_id.failed()
    reason = no_database.failed()
    assert "cannot prepare the database at postgresql+asyncpg://me:***@127.0.0.1:1/x" in reason
    assert "hunter2secret" not in reason
    assert "Traceback" not in reason
    assert list(cli.cwd.iterdir()) == []
