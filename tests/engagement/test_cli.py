"""``callerid feature-sets create --call-me-back``, ``callerid cmb-configs``, ``callerid surveys``: the command, run in
this process (tests/in_process.py)."""

from __future__ import annotations

from pathlib import Path

from callerid.engagement.windows import DEFAULT_WINDOWS
from tests.numbers.test_cli import Cli, logo


def test_cmb_configs_and_surveys_through_the_cli(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    account = cli.json("accounts", "create", "--name", "Acme", "--admin-email", "boss@acme.test")["client_account_id"]
    department = cli.json("departments", "create", "--account", account, "--name", "Flowers")["id"]
    operation = cli.json(
        "operations", "create", "--account", account, "--department", department, "--name", "Deliveries",
        "--calling-operation", "Delivery",
    )["id"]  # fmt: skip
    process = cli.json("processes", "create", "--account", account, "--operation", operation, "--name", "Door")["id"]
    label = cli.json(
        "labels", "create", "--account", account, "--name", "Acme Flowers", "--logo", str(logo(tmp_path)),
        "--type", "static",
    )  # fmt: skip
    label_id = label.get("id") or label["label_id"]

    def feature_set(name: str, *flags: str) -> str:
        created = cli.json(
            "feature-sets", "create", "--account", account, "--process", process, "--name", name, "--label", label_id,
            *flags,
        )  # fmt: skip
        return str(created["id"])

    # --call-me-back alone: a config with the defaults.
    plain = feature_set("Plain", "--call-me-back")
    shown = cli.json("cmb-configs", "show", "--account", account, "--feature-set", plain)
    assert (shown["name"], shown["slot_picker"], shown["windows"]) == ("Call Me Back", False, DEFAULT_WINDOWS)
    assert shown["feature_set_id"] == plain

    picker = feature_set("Picker", "--call-me-back", "--cmb-config-name", "CMBName", "--slot-picker")
    shown = cli.json("cmb-configs", "show", "--account", account, "--feature-set", picker)
    assert (shown["name"], shown["slot_picker"]) == ("CMBName", True)

    changed = cli.json(
        "cmb-configs", "set", "--account", account, "--feature-set", picker, "--no-slot-picker",
        "--window", "sat 12:30-13:00", "--window", "Monday 9:00-9:30",
    )  # fmt: skip
    assert (changed["name"], changed["slot_picker"]) == ("CMBName", False)
    assert changed["windows"] == [
        {"weekday": "Saturday", "start": "12:30", "end": "13:00"},
        {"weekday": "Monday", "start": "09:00", "end": "09:30"},
    ]

    assert "need --call-me-back" in cli.fails(
        "feature-sets", "create", "--account", account, "--process", process, "--name", "X", "--label", label_id,
        "--slot-picker",
    )  # fmt: skip
    assert "is not a weekday" in cli.fails(
        "cmb-configs", "set", "--account", account, "--feature-set", picker, "--window", "Someday 10:00-10:30"
    )
    assert "end must be after the start" in cli.fails(
        "cmb-configs", "set", "--account", account, "--feature-set", picker, "--window", "Monday 10:30-10:00"
    )
    no_cmb = feature_set("Survey only", "--survey")
    assert "call me back is not enabled" in cli.fails(
        "cmb-configs", "set", "--account", account, "--feature-set", no_cmb, "--name", "X"
    )
    assert "has no call me back config" in cli.fails(
        "cmb-configs", "show", "--account", account, "--feature-set", no_cmb
    )

    survey = cli.json(
        "surveys", "create", "--account", account, "--feature-set", no_cmb, "--name", "Flower Quality Check",
        "--question", "How was the delivery experience?", "--question", "Flower Quality?",
    )  # fmt: skip
    assert survey == {
        "id": survey["id"],
        "name": "Flower Quality Check",
        "trigger": "any",
        "questions": ["How was the delivery experience?", "Flower Quality?"],
        "type": "questions",
        "question_details": [
            {"question": "How was the delivery experience?", "kind": "text"},
            {"question": "Flower Quality?", "kind": "text"},
        ],
        "feature_set_id": no_cmb,
        "status": "live",
    }
    listed = cli.json("surveys", "list", "--account", account)
    assert listed == {"surveys": [survey]}
    assert "surveys are not enabled" in cli.fails(
        "surveys", "create", "--account", account, "--feature-set", plain, "--name", "S", "--question", "Q?"
    )
    assert "already has survey" in cli.fails(
        "surveys", "create", "--account", account, "--feature-set", no_cmb, "--name", "S", "--question", "Q?"
    )
