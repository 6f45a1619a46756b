"""Running ``callerid`` commands for the identity/devices CLI tests, in this process (tests/in_process.py)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.in_process import run_cli


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        assert self.returncode == 0, self.stderr
        value: dict[str, Any] = json.loads(self.stdout)
        return value

    def failed(self) -> str:
        assert self.returncode != 0 and self.stdout == "", self.stdout
        return self.stderr


@dataclass
class Cli:
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str) -> Result:
        done = run_cli(args, self.env, cwd=self.cwd)
        return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The command on a fresh SQLite database of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERID_")}
    env["CALLERID_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    env["CALLERID_DATA_DIR"] = str(tmp_path / "data")
    return Cli(tmp_path, env)
