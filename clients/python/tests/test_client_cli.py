"""``callerid-client`` against the real server (in-process through typer's runner, one real process for the entry
point), the CSV rules, and ``listen`` receiving a webhook the server signs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from callerid_client.cli.app import app
from callerid_client.cli.profiles import ProfileError, resolve
from typer.testing import CliRunner

from conftest import ANDROID, Served, free_port, server_cli

CLIENT = Path(sys.executable).parent / "callerid-client"


def env_of(served: Served) -> dict[str, str]:
    return {
        "CALLERID_CLIENT_BASE_URL": served.base,
        "CALLERID_CLIENT_ACCOUNT_ID": served.account_id,
        "CALLERID_CLIENT_KEY_ID": served.key_id,
        "CALLERID_CLIENT_API_KEY": served.api_key,
        "CALLERID_CLIENT_CONFIG": "/nonexistent/client.toml",
        "CALLERID_CLIENT_CACHE": str(served.folder / "client-cache"),  # one token for every command
    }


def run(served: Served, *args: str, code: int = 0) -> Any:
    done = CliRunner().invoke(app, list(args), env=env_of(served))
    assert done.exit_code == code, f"{args}: exit {done.exit_code}\n{done.output}"
    return json.loads(done.stdout) if "--json" in args and code == 0 else done


def write_calls(path: Path, rows: list[list[Any]]) -> None:
    header = "caller_number,receiver_number,label_id,dynamic_call_reason,starts_at,ends_at,customer_ref\n"
    path.write_text(header + "".join(",".join(str(cell) for cell in row) + "\n" for row in rows))


def test_personalise_a_csv_and_wait_for_every_outcome(served: Served, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    rows = [["911234567890", ANDROID[i % 2], served.label_id, "Your delivery today", now, now + 600_000, f"c{i}"]
            for i in range(30)]  # fmt: skip
    rows.append(["911234567890", "919999000001", served.label_id, "", now, "2099-01-01T00:00:00+00:00", "x"])
    calls = tmp_path / "calls.csv"
    write_calls(calls, rows)
    answer = run(served, "personalise", "--csv", str(calls), "--wait", "--skip-invalid", "--json")
    assert answer["total"] == 31 and answer["finished"]
    assert answer["outcomes"] == {"success": 30, "invalid_input": 1}  # 2099 is more than 24 h after now
    lines = (tmp_path / "calls.outcomes.csv").read_text().splitlines()
    assert lines[0].startswith("line,caller_number,receiver_number,outcome")
    assert lines[1].startswith(f"2,911234567890,{ANDROID[0]},success,success")
    assert lines[-1].startswith("32,") and "ends_at cannot be more than 24 hours after starts_at" in lines[-1]


def test_a_bad_row_sends_nothing_and_names_its_line_and_field(served: Served, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    calls = tmp_path / "bad.csv"
    good = ["911234567890", ANDROID[0], served.label_id, "Your delivery today", now, now + 1000, "a"]
    write_calls(calls, [good, [*good[:1], "12", *good[2:]]])
    done = run(served, "personalise", "--csv", str(calls), code=2)
    assert "line 3, field receiver_number: receiver_number is invalid" in done.output
    assert "nothing sent" in done.output
    assert not (tmp_path / "bad.outcomes.csv").exists()
    answer = run(served, "personalise", "--csv", str(calls), "--skip-invalid", "--json")
    assert answer["outcomes"] == {"pending": 1, "invalid_input": 1} and len(answer["batch_ids"]) == 1
    status = run(served, "batch", "status", answer["batch_ids"][0], "--json")
    assert len(status["data"]) == 1

    missing = tmp_path / "missing.csv"
    missing.write_text("caller_number,label_id\n1,2\n")
    done = run(served, "personalise", "--csv", str(missing), code=2)
    assert "missing column(s) receiver_number, starts_at, ends_at" in done.output


def test_numbers_feature_sets_labels_token_and_exports(served: Served, tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("# to list\n918200000001\n918200000002  # the second one\n\nbogus\n")
    published = run(served, "numbers", "publish", "--feature-set", served.feature_set_id, "--file", str(numbers),
                    "--wait", "--json")  # fmt: skip
    assert published["finished"] and published["counts"] == {"listed": 2}
    assert published["buckets"]["invalid_numbers"] == ["bogus"]
    listed = run(served, "numbers", "list", "--feature-set", served.feature_set_id, "--json")
    assert {"918200000001", "918200000002"} <= {n["phone_number"] for n in listed["numbers"]}
    delisted = run(served, "numbers", "delist", "--feature-set", served.feature_set_id, "--file", str(numbers),
                   "--wait", "--json")  # fmt: skip
    assert delisted["counts"] == {"delisted": 2}
    sets = run(served, "feature-sets", "list", "--process", served.extra["process_id"], "--json")
    assert [fs["id"] for fs in sets["feature_sets"]] == [served.feature_set_id]
    labels = run(served, "labels", "--json")
    assert served.label_id in [label["id"] for label in labels["labels"]]
    assert "Renewals" in run(served, "feature-sets", "list").output
    nothing = run(served, "cmb", "export", "--from", "2001-01-01", "--to", "2001-01-02", "--json", code=1)
    assert json.loads(nothing.stderr)["error"]["status"] == 404
    survey = run(served, "feedback", "export", "00000000-0000-4000-8000-000000000000", "--from", "2025-01-01", code=1)
    assert "survey not found" in survey.output


def test_the_entry_point_mints_a_token(served: Served) -> None:
    done = subprocess.run(
        [str(CLIENT), "token", "--json"], env={**os.environ, **env_of(served)}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["token"]) == 64


def test_listen_verifies_and_prints_a_webhook_from_the_server(served: Served) -> None:
    port = free_port()
    created = server_cli(
        served.env, "webhooks", "create", "--account", served.account_id, "--name", f"listen-{port}",
        "--url", f"http://127.0.0.1:{port}/hook", "--events", "cmb,user_feedback",
    )  # fmt: skip
    listener = subprocess.Popen(
        [str(CLIENT), "listen", "--port", str(port), "--secret", created["secret"], "--max-events", "3", "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the receiver binds its port (another process's start-up)
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        for event_type in ("cmb", "user_feedback"):
            server_cli(served.env, "webhooks", "test", "--account", served.account_id, "--id", created["id"],
                       "--event-type", event_type)  # fmt: skip
        forged = httpx.post(
            f"http://127.0.0.1:{port}/hook",
            content=b"{}",
            headers={"webhook-id": "x", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"},
        )
        assert forged.status_code == 401
        out, _ = listener.communicate(timeout=60)
    finally:
        listener.kill()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["verified"] for line in lines] == [True, True, False]
    assert [line["event"]["event_type"] for line in lines[:2]] == ["cmb", "user_feedback"]
    assert lines[0]["event"]["cmb_payload"]["cmb_config_name"] == "CMBName"
    assert "no webhook-signature matches" in lines[2]["problem"]


def test_profiles_come_from_options_then_environment_then_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "client.toml"
    config.write_text(
        'default_profile = "prod"\n[profiles.prod]\nbase_url = "https://prod"\naccount_id = "a"\nkey_id = "k"\n'
        'api_key = "s"\n[profiles.dev]\nbase_url = "http://dev"\naccount_id = "da"\nkey_id = "dk"\napi_key = "ds"\n'
    )
    assert resolve({}, None, str(config), {}).base_url == "https://prod"
    assert resolve({}, "dev", str(config), {}).account_id == "da"
    env = {"CALLERID_CLIENT_PROFILE": "dev", "CALLERID_CLIENT_API_KEY": "from-env"}
    chosen = resolve({"key_id": "from-option"}, None, str(config), env)
    assert (chosen.name, chosen.api_key, chosen.key_id) == ("dev", "from-env", "from-option")
    with pytest.raises(ProfileError, match="no profile 'qa'"):
        resolve({}, "qa", str(config), {})
    with pytest.raises(ProfileError, match="missing base_url, account_id, key_id, api_key"):
        resolve({}, None, str(tmp_path / "none.toml"), {})
