"""Running ``callerid`` commands in this process with typer's CliRunner (~0.2 s each instead of seconds for a new
interpreter), for tests of what a command does rather than of the process itself (tests/cli runs the real one).

The command sees the environment a subprocess would have got: the CALLERID_* settings of ``env`` and no others.
It runs in ``cwd``, and the logging it may configure (``devices register``) is put back as it was afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from typer.testing import CliRunner

from callerid.cli.main import app

# Loggers callerid.ops.logging.configure_logging() changes.
_LOGGERS = ("", "_granian", "granian.access", "httpx", "httpcore")


@dataclass
class Done:
    """What the tests read of a finished ``subprocess.run``."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    structlog_config = structlog.get_config()
    try:
        yield
    finally:
        for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            logger.handlers = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        structlog.configure(**structlog_config)


def run_cli(args: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> Done:
    """``callerid *args`` with ``env`` as its environment, as ``subprocess.run(..., capture_output=True)`` would."""
    overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CALLERID_") and k not in env}
    overrides.update(env)
    with _logging_kept(), contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        result = CliRunner().invoke(app, list(args), env=overrides)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # what the interpreter would have printed on its way out
        assert result.exc_info is not None
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return Done(result.exit_code, result.stdout, stderr)
