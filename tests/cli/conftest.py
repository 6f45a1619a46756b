"""Running the real ``callerid`` command: a subprocess in an empty folder with only CALLERID_* in its environment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fresh_postgresql_database

CALLERID = Path(sys.executable).parent / "callerid"
# Settings the test decides itself; anything else CALLERID_* in the caller's environment is passed on.
_CONTROLLED = {"CALLERID_DATABASE_URL", "CALLERID_DATA_DIR", "CALLERID_HOST", "CALLERID_PORT", "CALLERID_WORKERS"}


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith("CALLERID_") and k not in _CONTROLLED}
    env.update(settings)
    return env


@dataclass
class CliResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        """The one JSON object the contract promises on stdout (fails if there is anything else)."""
        assert self.returncode == 0, f"{self.args}: exit {self.returncode}\n{self.stderr}"
        value = json.loads(self.stdout)
        assert isinstance(value, dict), self.stdout
        return value

    def failed(self) -> str:
        """The error text on stderr of a failing command, which printed nothing on stdout."""
        assert self.returncode != 0, f"{self.args} succeeded: {self.stdout}"
        assert self.stdout == "", self.stdout
        assert self.stderr.strip(), "no reason on stderr"
        return self.stderr


@dataclass
class Cli:
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 60) -> CliResult:
        done = subprocess.run(
            [str(CALLERID), *args], cwd=self.cwd, env=self.env, capture_output=True, encoding="utf-8", timeout=timeout
        )
        return CliResult(args, done.returncode, done.stdout, done.stderr)

    async def arun(self, *args: str) -> CliResult:
        """``run`` off the event loop, so that several commands can run at once."""
        return await asyncio.to_thread(self.run, *args)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The command in an empty folder, on its default database (``./callerid.db``)."""
    folder = tmp_path / "cli"
    folder.mkdir()
    return Cli(folder, clean_env())


@pytest.fixture
def fresh_postgresql_url() -> Iterator[str]:
    """A new, empty PostgreSQL database (no schema): the CLI must create it."""
    with fresh_postgresql_database("callerid_cli") as url:
        yield url
