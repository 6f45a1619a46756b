"""``callerid labels create|list``: one JSON object on stdout, errors on stderr.

The commands run in this process (tests/in_process.py) with the environment ``Deployment`` gives a real one."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.in_process import Done, run_cli
from tests.labels.images import image_bytes, png_of_exact_length
from tests.personalisation.processes import Deployment


class InProcess(Deployment):
    def cli(self, *args: str) -> Done:  # type: ignore[override]
        return run_cli(args, self.env(), cwd=self.root)


def test_create_and_list_labels(tmp_path: Path) -> None:
    deployment = InProcess(tmp_path)
    account_id = deployment.cli_json(
        "accounts", "create", "--name", "Acme Flowers", "--admin-email", "admin@acme.test"
    )["client_account_id"]
    good = tmp_path / "logo.png"
    good.write_bytes(image_bytes())
    jpeg = tmp_path / "photo.png"  # a JPEG with a .png name
    jpeg.write_bytes(image_bytes(image_format="JPEG"))
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_of_exact_length(2 * 1024 * 1024 + 10))

    label = deployment.cli_json(
        "labels",
        "create",
        "--account",
        account_id,
        "--name",
        "FlowerEra",
        "--logo",
        str(good),
        "--category",
        "10",
        "--sub-category",
        "142",
    )
    assert set(label) == {
        "id",
        "name",
        "logo_url",
        "category",
        "sub_category",
        "created_by_email",
        "created_at",
        "label_type",
    }
    assert (label["name"], label["category"], label["sub_category"], label["label_type"]) == (
        "FlowerEra",
        10,
        142,
        "dynamic",
    )
    assert label["created_by_email"] == "admin@acme.test"
    # The logo is in the database, named by the SHA-256 of its bytes; nothing is written to the data folder.
    assert label["logo_url"] == f"{deployment.base_url}/logos/{hashlib.sha256(image_bytes()).hexdigest()}.png"
    assert not (tmp_path / "data" / "logos").exists()

    static = deployment.cli_json(
        "labels",
        "create",
        "--account",
        account_id,
        "--name",
        "Shop",
        "--logo",
        str(good),
        "--type",
        "static",
        "--created-by",
        "ops@acme.test",
    )
    assert (static["label_type"], static["created_by_email"]) == ("static", "ops@acme.test")
    listed = deployment.cli_json("labels", "list", "--account", account_id)
    assert listed == {"client_account_id": account_id, "labels": [label]}  # dynamic labels only

    # every rule is tested on the service (test_labels.py); here: the command reports them properly
    failures = [
        (("--name", "Bad", "--logo", str(jpeg)), "logo must be a PNG image (it is JPEG)"),
        (("--name", "Bad", "--logo", str(huge)), "logo must be smaller than 2 MB"),
        (("--name", "x" * 41, "--logo", str(good)), "name must be between 3 and 40 characters"),
        (("--name", "Flo\u202ewer", "--logo", str(good)), "name contains characters that cannot be displayed"),
        (("--name", "Bad", "--logo", str(tmp_path / "missing.png")), "cannot read logo"),
    ]
    for args, message in failures:
        done = deployment.cli("labels", "create", "--account", account_id, *args, "--json")
        assert done.returncode != 0, args
        assert done.stdout == ""
        assert message in " ".join(done.stderr.split()), (args, done.stderr)
    assert deployment.cli_json("labels", "list", "--account", account_id)["labels"] == [label]
