"""Under CI=true a missing service fails the whole run with its reason; locally the tests that need it skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLOSED_PORT_URL = "postgresql://postgres@127.0.0.1:9/test"  # port 9 (discard): nothing listens


def run_pytest(ci: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": ci, "CALLERID_TEST_PG_URL": CLOSED_PORT_URL}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_migrations.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_a_missing_database_fails_ci_but_skips_locally() -> None:
    in_ci = run_pytest("true")
    assert in_ci.returncode == 3, in_ci.stdout + in_ci.stderr
    assert "CI=true, but these tests cannot run (CI must run every test):" in in_ci.stdout
    assert f"PostgreSQL not reachable at {CLOSED_PORT_URL}" in in_ci.stdout
    local = run_pytest("")
    assert local.returncode == 0, local.stdout + local.stderr
    assert "1 passed, 1 skipped" in local.stdout
