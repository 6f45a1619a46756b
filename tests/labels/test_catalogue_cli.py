"""``callerid catalogue ...``: one JSON object on stdout, errors on stderr, state as said.

The commands run in this process (typer's CliRunner, ~0.15 s each instead of ~2 s for a new interpreter); one test
runs the real ``callerid`` executable to show the command is wired the same way there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from callerid.cli.main import app
from callerid.labels import catalogue
from tests.labels.images import image_bytes
from tests.personalisation.processes import Deployment

DEFAULT = {"categories": catalogue.default_catalogue()["categories"]}


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


class InProcess:
    """``callerid`` commands against a SQLite file of the test's own, run in this process."""

    def __init__(self, root: Path):
        self.env = {
            "CALLERID_DATABASE_URL": f"sqlite+aiosqlite:///{root / 'callerid.db'}",
            "CALLERID_DATA_DIR": str(root / "data"),
        }

    def cli(self, *args: str) -> Done:
        result = CliRunner().invoke(app, list(args), env=self.env)
        return Done(result.exit_code, result.stdout, result.stderr)

    def cli_json(self, *args: str) -> dict[str, Any]:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, f"{args}: {done.stderr}"
        value: dict[str, Any] = json.loads(done.stdout)
        return value


def refused(deployment: InProcess, *args: str) -> str:
    """stderr of a command that must fail having printed nothing on stdout."""
    done = deployment.cli(*args, "--json")
    assert done.returncode != 0, (args, done.stdout)
    assert done.stdout == ""
    return " ".join(done.stderr.split())


@pytest.mark.slow
def test_the_real_command_prints_the_catalogue(tmp_path: Path) -> None:
    assert Deployment(tmp_path).cli_json("catalogue", "list") == DEFAULT


def test_edit_the_catalogue_and_create_labels_from_it(tmp_path: Path) -> None:
    deployment = InProcess(tmp_path)
    assert deployment.cli_json("catalogue", "list") == DEFAULT
    readable = deployment.cli("catalogue", "list")
    assert readable.returncode == 0
    assert "10 Retail and e-commerce:" in readable.stdout
    assert "142: Flowers and gifts" in readable.stdout

    added = deployment.cli_json("catalogue", "add-category", "--id", "13", "--name", "Charity")
    assert added == {"id": 13, "name": "Charity", "sub_categories": []}
    sub = deployment.cli_json("catalogue", "add-sub-category", "--category", "13", "--id", "221", "--name", "Gifts")
    assert sub == {"id": 221, "name": "Gifts", "category": 13}
    assert deployment.cli_json("catalogue", "rename-category", "--id", "13", "--name", "Charities") == {
        "id": 13,
        "name": "Charities",
        "sub_categories": [{"id": 221, "name": "Gifts"}],
    }
    renamed = deployment.cli_json("catalogue", "rename-sub-category", "--id", "221", "--name", "Donations")
    assert renamed == {"id": 221, "name": "Donations", "category": 13}
    charities = {"id": 13, "name": "Charities", "sub_categories": [{"id": 221, "name": "Donations"}]}
    edited = {"categories": [*DEFAULT["categories"], charities]}
    assert deployment.cli_json("catalogue", "list") == edited

    # every rule is tested on the service (test_catalogue.py); here: the commands report them properly
    failures = [
        (("add-category", "--id", "13", "--name", "Other"), "category 13 is already in the catalogue"),
        (
            ("add-category", "--id", "14", "--name", "charities"),
            'category name "charities" is already used by category 13',
        ),
        (("remove-category", "--id", "99"), "category 99 is not in the catalogue"),
        (
            ("add-sub-category", "--category", "13", "--id", "142", "--name", "X"),
            "sub-category 142 is already in the catalogue (in category 10)",
        ),
        (("rename-sub-category", "--id", "999", "--name", "X"), "sub-category 999 is not in the catalogue"),
    ]
    for args, message in failures:
        assert f"error: {message}" in refused(deployment, "catalogue", *args), args
    assert deployment.cli_json("catalogue", "list") == edited

    # labels take their numbers from the catalogue
    account = deployment.cli_json("accounts", "create", "--name", "Acme Gifts", "--admin-email", "admin@acme.test")
    logo = tmp_path / "logo.png"
    logo.write_bytes(image_bytes())
    create = ("labels", "create", "--account", account["client_account_id"], "--name", "Giving", "--logo", str(logo))
    label = deployment.cli_json(*create, "--category", "13", "--sub-category", "221")
    assert (label["category"], label["sub_category"]) == (13, 221)
    assert "sub-category 142 does not belong to category 13" in refused(
        deployment, *create, "--category", "13", "--sub-category", "142"
    )
    help_text = deployment.cli("labels", "create", "--help").stdout
    assert "callerid catalogue list" in " ".join(help_text.split())

    assert deployment.cli_json("catalogue", "remove-sub-category", "--id", "221") == renamed
    assert deployment.cli_json("catalogue", "remove-category", "--id", "13") == {
        "id": 13,
        "name": "Charities",
        "sub_categories": [],
    }
    assert deployment.cli_json("catalogue", "list") == DEFAULT
    # the label keeps its numbers
    listed = deployment.cli_json("labels", "list", "--account", account["client_account_id"])
    assert [(lb["id"], lb["category"], lb["sub_category"]) for lb in listed["labels"]] == [(label["id"], 13, 221)]


def test_export_import_and_reset(tmp_path: Path) -> None:
    deployment = InProcess(tmp_path)
    exported = tmp_path / "catalogue.json"
    assert deployment.cli_json("catalogue", "export", "--file", str(exported)) == {
        "file": str(exported),
        "categories": 12,
        "sub_categories": 43,
    }
    assert json.loads(exported.read_text(encoding="utf-8")) == DEFAULT
    # without --file the catalogue itself is the one JSON object printed
    plain = deployment.cli("catalogue", "export")
    assert plain.returncode == 0 and json.loads(plain.stdout) == DEFAULT

    small = {"categories": [{"id": 1, "name": "Café", "sub_categories": [{"id": 11, "name": "Crème"}]}]}
    small_file = tmp_path / "small.json"
    small_file.write_text(json.dumps(small), encoding="utf-8")
    assert deployment.cli_json("catalogue", "import", "--file", str(small_file)) == {
        "categories": 1,
        "sub_categories": 1,
    }
    assert deployment.cli_json("catalogue", "export") == small

    not_json = tmp_path / "not.json"
    not_json.write_text("{categories:", encoding="utf-8")
    broken = tmp_path / "broken.json"
    broken.write_text(
        json.dumps({"categories": [*DEFAULT["categories"], {"id": 1, "name": "Again", "sub_categories": []}]}),
        encoding="utf-8",
    )
    failures = [
        (str(tmp_path / "missing.json"), "cannot read"),
        (str(not_json), "is not a JSON file"),
        (str(broken), "error: categories[12].id 1 is used twice (also categories[0].id)"),
    ]
    for path, message in failures:
        assert message in refused(deployment, "catalogue", "import", "--file", path), path
    assert deployment.cli_json("catalogue", "export") == small  # all or nothing
    assert "cannot write" in refused(deployment, "catalogue", "export", "--file", str(tmp_path / "no" / "x.json"))

    assert deployment.cli_json("catalogue", "reset") == {"categories": 12, "sub_categories": 43}
    assert deployment.cli_json("catalogue", "list") == DEFAULT
    assert deployment.cli_json("catalogue", "import", "--file", str(exported)) == {
        "categories": 12,
        "sub_categories": 43,
    }
    assert deployment.cli_json("catalogue", "list") == DEFAULT
