"""Secrets at rest (issue point 6): the encrypted form, keys and their rotation, the key file, and the start-up
rule that production (PostgreSQL) has a key."""

from __future__ import annotations

import base64
import stat
import threading
from pathlib import Path

import pytest

from callerid import secretbox
from callerid.config import Settings
from tests.cli.conftest import Cli, clean_env

OLD_KEY = base64.b64encode(b"o" * 32).decode()
NEW_KEY = base64.b64encode(b"n" * 32).decode()
SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw=="
ROW_A = b"webhooks.secret:row-a"
ROW_B = b"webhooks.secret:row-b"
PG_URL = "postgresql+asyncpg://callerid@127.0.0.1:1/callerid"


def keyring(*keys: str) -> secretbox.Keyring:
    return secretbox.Keyring.from_text(",".join(keys))


# --- the encrypted form ------------------------------------------------------------------------------------


def test_round_trip_and_the_stored_form() -> None:
    ring = keyring(OLD_KEY)
    stored = ring.encrypt(SECRET, ROW_A)
    prefix, version, kid, body = stored.split(":", 3)
    assert (prefix, version, kid) == ("enc", "v1", secretbox.key_id(b"o" * 32))
    assert len(base64.b64decode(body, validate=True)) == 12 + len(SECRET) + 16  # nonce, ciphertext, tag
    assert SECRET not in stored and SECRET.removeprefix("whsec_") not in stored
    assert ring.decrypt(stored, ROW_A) == SECRET
    assert ring.encrypt(SECRET, ROW_A) != stored  # a fresh nonce every time
    assert secretbox.is_encrypted(stored) and ring.is_current(stored)


def test_a_wrong_key_fails_clearly() -> None:
    stored = keyring(OLD_KEY).encrypt(SECRET, ROW_A)
    with pytest.raises(secretbox.DecryptionError, match=r"encrypted with key [0-9a-f]{8}, which is not among"):
        keyring(NEW_KEY).decrypt(stored, ROW_A)


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_tampered_ciphertext_fails(position: int) -> None:
    ring = keyring(OLD_KEY)
    stored = ring.encrypt(SECRET, ROW_A)
    head, body = stored.rsplit(":", 1)
    raw = bytearray(base64.b64decode(body))
    raw[position] ^= 0x01
    with pytest.raises(secretbox.DecryptionError, match="altered, or it belongs to another row"):
        ring.decrypt(f"{head}:{base64.b64encode(bytes(raw)).decode()}", ROW_A)
    with pytest.raises(secretbox.DecryptionError, match="base64"):
        ring.decrypt(f"{head}:not*base64", ROW_A)
    with pytest.raises(secretbox.DecryptionError, match="unknown stored format"):
        ring.decrypt(stored.replace("enc:v1:", "enc:v9:"), ROW_A)


def test_a_value_moved_to_another_row_does_not_decrypt() -> None:
    ring = keyring(OLD_KEY)
    stored = ring.encrypt(SECRET, ROW_A)
    with pytest.raises(secretbox.DecryptionError, match="belongs to another row"):
        ring.decrypt(stored, ROW_B)


def test_legacy_clear_text_is_read_as_it_is_until_reencrypted() -> None:
    ring = keyring(OLD_KEY)
    assert ring.decrypt(SECRET, ROW_A) == SECRET
    assert not ring.is_current(SECRET)
    rotated = ring.rotate(SECRET, ROW_A)
    assert rotated is not None and rotated.startswith("enc:v1:") and ring.decrypt(rotated, ROW_A) == SECRET


# --- keys and rotation ------------------------------------------------------------------------------------------


def test_rotation_reencrypts_with_the_first_key_and_dropped_keys_stop_decrypting() -> None:
    old_only = keyring(OLD_KEY).encrypt(SECRET, ROW_A)
    both = keyring(NEW_KEY, OLD_KEY)  # the new key first: it encrypts; the old one still decrypts
    assert both.decrypt(old_only, ROW_A) == SECRET
    assert not both.is_current(old_only)
    rotated = both.rotate(old_only, ROW_A)
    assert rotated is not None and both.is_current(rotated)
    assert rotated.split(":")[2] == secretbox.key_id(b"n" * 32)
    assert both.rotate(rotated, ROW_A) is None  # idempotent
    new_only = keyring(NEW_KEY)  # the old key dropped after the rotation
    assert new_only.decrypt(rotated, ROW_A) == SECRET
    with pytest.raises(secretbox.DecryptionError, match="not among the keys"):
        new_only.decrypt(old_only, ROW_A)  # a value that was not rotated is lost with its key
    with pytest.raises(secretbox.DecryptionError):
        both.rotate(rotated, ROW_B)  # rotation checks that a value opens, not just its key id


@pytest.mark.parametrize(
    "text",
    [
        "",
        " , ",
        "not base64!",
        base64.b64encode(b"short").decode(),
        f"{OLD_KEY},{base64.b64encode(b'x' * 31).decode()}",
    ],
)
def test_malformed_keys_are_refused_without_showing_them(text: str) -> None:
    with pytest.raises(secretbox.SecretKeyError) as refused:
        secretbox.parse_keys(text)
    message = str(refused.value)
    assert "CALLERID_SECRET_KEY" in message and "secret-key generate" in message
    assert OLD_KEY not in message and ("not base64!" not in message or text != "not base64!")


def test_keys_are_parsed_in_order_without_duplicates() -> None:
    assert secretbox.parse_keys(f" {NEW_KEY} ,{OLD_KEY},{NEW_KEY}") == (b"n" * 32, b"o" * 32)
    generated = secretbox.generate_key()
    assert len(secretbox.parse_keys(generated)[0]) == 32 and generated != secretbox.generate_key()


# --- the key file of the embedded default -------------------------------------------------------------------------


def test_the_key_file_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.key"
    first = secretbox.load_or_create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secretbox.parse_keys(first)[0]) == 32
    assert secretbox.load_or_create_key_file(path) == first  # reused afterwards
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.key"]  # no temporary file left behind


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    found: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        found.append(secretbox.load_or_create_key_file(path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1
    assert path.read_text().strip() == found[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.key"]


def test_sqlite_without_a_key_uses_the_key_file_and_every_process_reads_the_same(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/c.db", data_dir=tmp_path / "data")
    ring = secretbox.check_startup(settings)  # on first start: generated
    key_file = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert ring.keys == secretbox.parse_keys(key_file.read_text())
    stored = ring.encrypt(SECRET, ROW_A)
    # Another process of the same deployment (nothing cached): the same key from the same file.
    other = secretbox.Keyring.from_text(secretbox.load_or_create_key_file(key_file))
    assert other.decrypt(stored, ROW_A) == SECRET


def test_a_configured_key_wins_over_the_key_file(tmp_path: Path) -> None:
    settings = Settings(database_url="sqlite+aiosqlite:///x.db", data_dir=tmp_path, secret_key=f"{NEW_KEY},{OLD_KEY}")
    assert secretbox.check_startup(settings).keys == (b"n" * 32, b"o" * 32)
    assert not (tmp_path / "secret.key").exists()
    assert "n" * 8 not in repr(settings) and NEW_KEY not in repr(settings)  # the key is not shown in reprs/logs


# --- production requires a key ---------------------------------------------------------------------------------------


def test_production_without_a_key_refuses_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLERID_SECRET_KEY", "")  # blank is unset
    settings = Settings(database_url=PG_URL, data_dir=tmp_path)
    assert settings.secret_key is None
    with pytest.raises(secretbox.MissingSecretKey) as refused:
        secretbox.check_startup(settings)
    message = str(refused.value)
    assert "CALLERID_SECRET_KEY is required with a PostgreSQL database" in message
    assert "callerid secret-key generate" in message and "secrets.token_bytes(32)" in message
    assert not (tmp_path / "secret.key").exists()  # no host invents its own key
    configured = Settings(database_url=PG_URL, data_dir=tmp_path, secret_key=NEW_KEY)
    assert secretbox.check_startup(configured).keys == (b"n" * 32,)
    with pytest.raises(secretbox.SecretKeyError, match="key 1 of CALLERID_SECRET_KEY is not base64 of 32 bytes"):
        secretbox.check_startup(Settings(database_url=PG_URL, data_dir=tmp_path, secret_key="nope"))


@pytest.mark.parametrize("command", [["migrate"], ["worker"], ["serve", "--port", "1"], ["accounts", "list"]])
def test_the_cli_refuses_production_without_a_key_before_touching_anything(tmp_path: Path, command: list[str]) -> None:
    env = clean_env(CALLERID_DATABASE_URL=PG_URL)
    env.pop("CALLERID_SECRET_KEY", None)
    folder = tmp_path / "cli"
    folder.mkdir()
    result = Cli(folder, env).run(*command, "--json", timeout=30)
    stderr = result.failed()
    assert "error: cannot start: CALLERID_SECRET_KEY is required with a PostgreSQL database" in stderr
    assert "callerid secret-key generate" in stderr
    assert "Traceback" not in stderr
    assert list(folder.iterdir()) == []  # no key file, no database


def test_the_cli_names_a_malformed_key(tmp_path: Path) -> None:
    env = clean_env(CALLERID_DATABASE_URL=PG_URL, CALLERID_SECRET_KEY=f"{NEW_KEY},hunter2")
    result = Cli(tmp_path, env).run("migrate", "--json", timeout=30)
    stderr = result.failed()
    assert "key 2 of CALLERID_SECRET_KEY is not base64 of 32 bytes" in stderr
    assert "hunter2" not in stderr and NEW_KEY not in stderr


def test_secret_key_generate(tmp_path: Path) -> None:
    cli = Cli(tmp_path, clean_env())
    made = cli.run("secret-key", "generate", "--json").json()
    assert set(made) == {"secret_key", "key_id"}
    assert made["key_id"] == secretbox.key_id(secretbox.parse_keys(made["secret_key"])[0])
    bare = cli.run("secret-key", "generate")
    assert bare.returncode == 0 and len(secretbox.parse_keys(bare.stdout.strip())) == 1
    assert bare.stdout.strip() != made["secret_key"]
    assert list(tmp_path.iterdir()) == []  # nothing stored
