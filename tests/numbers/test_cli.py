"""``callerid departments|operations|processes|feature-sets create``: one JSON object each.

The commands run in this process (tests/in_process.py); tests/cli runs the real executable."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from PIL import Image

from tests.in_process import Done, run_cli

FS_KEYS = [
    "id", "name", "description", "status", "process_id", "client_account_id", "label_id", "call_reason_id",
    "video_caller_id", "business_profile_id", "call_me_back", "survey", "department_id", "department_name",
    "operation_id", "calling_operation_id", "calling_operation_name", "process_name", "sub_process_name",
    "created_at", "updated_at",
]  # fmt: skip


class Cli:
    def __init__(self, folder: Path):
        self.folder = folder
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERID_")}
        self.env.update(CALLERID_DATABASE_URL=f"sqlite+aiosqlite:///{folder}/cli.db", CALLERID_DATA_DIR=str(folder))

    def run(self, *args: str) -> Done:
        return run_cli(args, self.env, cwd=self.folder)

    def json(self, *args: str) -> dict[str, Any]:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        value: dict[str, Any] = json.loads(done.stdout)
        return value

    def fails(self, *args: str) -> str:
        done = self.run(*args, "--json")
        assert done.returncode != 0 and done.stdout == "", done.stdout
        return done.stderr


def logo(folder: Path) -> Path:
    path = folder / "logo.png"
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), (200, 30, 30)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def test_tree_and_feature_set_through_the_cli(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    account = cli.json("accounts", "create", "--name", "Acme", "--admin-email", "boss@acme.test")["client_account_id"]
    department = cli.json("departments", "create", "--account", account, "--name", "Logistics")
    assert department["name"] == "Logistics" and department["client_account_id"] == account
    operation = cli.json(
        "operations", "create", "--account", account, "--department", department["id"], "--name", "Last mile",
        "--calling-operation", "Delivery",
    )  # fmt: skip
    assert (operation["department_id"], operation["calling_operation_name"]) == (department["id"], "Delivery")
    again = cli.json(
        "operations", "create", "--account", account, "--department", department["id"], "--name", "Returns",
        "--calling-operation", "delivery",
    )  # fmt: skip
    assert again["calling_operation_id"] == operation["calling_operation_id"]  # catalogue entry reused
    process = cli.json("processes", "create", "--account", account, "--operation", operation["id"], "--name", "Door")
    assert process["parent_id"] is None
    sub = cli.json(
        "processes", "create", "--account", account, "--operation", operation["id"], "--name", "Night",
        "--parent", process["id"],
    )  # fmt: skip
    assert sub["parent_id"] == process["id"]
    label = cli.json(
        "labels", "create", "--account", account, "--name", "Acme Parcels", "--logo", str(logo(tmp_path)),
        "--type", "static",
    )  # fmt: skip
    label_id = label.get("id") or label["label_id"]
    fs = cli.json(
        "feature-sets", "create", "--account", account, "--process", sub["id"], "--name", "Night set",
        "--label", label_id, "--call-reason", "Your parcel is on its way", "--call-me-back", "--survey",
    )  # fmt: skip
    assert list(fs) == FS_KEYS
    assert fs["status"] == "draft"
    assert (fs["process_id"], fs["process_name"], fs["sub_process_name"]) == (sub["id"], "Door", "Night")
    assert (fs["department_id"], fs["department_name"]) == (department["id"], "Logistics")
    assert (fs["operation_id"], fs["calling_operation_name"]) == (operation["id"], "Delivery")
    assert (fs["label_id"], fs["call_me_back"], fs["survey"]) == (label_id, True, True)
    assert fs["call_reason_id"] is not None
    archived = cli.json(
        "feature-sets", "set-status", "--account", account, "--feature-set", fs["id"], "--status", "archived"
    )
    assert archived["status"] == "archived"

    # Rule violations: message on stderr, nothing on stdout, non-zero exit.
    assert "call_reason cannot start or end" in cli.fails(
        "feature-sets", "create", "--account", account, "--process", sub["id"], "--name", "Bad",
        "--label", label_id, "--call-reason", "Your parcel is late.",
    )  # fmt: skip
    assert "sub-processes cannot have sub-processes" in cli.fails(
        "processes",
        "create",
        "--account",
        account,
        "--operation",
        operation["id"],
        "--name",
        "X",
        "--parent",
        sub["id"],
    )
    other = cli.json("accounts", "create", "--name", "Other", "--admin-email", "o@other.test")["client_account_id"]
    assert "not found in this account" in cli.fails(
        "operations", "create", "--account", other, "--department", department["id"], "--name", "X",
        "--calling-operation", "Sales",
    )  # fmt: skip
    assert "not found in this account" in cli.fails(
        "feature-sets", "create", "--account", other, "--process", sub["id"], "--name", "X", "--label", label_id
    )
    assert "is not a UUID" in cli.fails("departments", "create", "--account", "nope", "--name", "X")
