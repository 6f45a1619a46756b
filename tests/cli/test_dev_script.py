"""dev.py (the one-command setup): .venv is made by the interpreter dev.py runs under."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_dev(venv_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("callerid_dev_script", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.VENV = venv_dir
    module.BIN = venv_dir / "bin"
    module.PYTHON = module.BIN / "python"
    module.STAMP = venv_dir / ".callerid-installed"
    return module


class RecordingBuilder:
    made: list[dict[str, Any]] = []

    def __init__(self, **options: Any):
        self.options = options

    def create(self, path: Path) -> None:
        RecordingBuilder.made.append({"path": path, **self.options})
        path.mkdir(parents=True, exist_ok=True)


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = load_dev(tmp_path / ".venv")
    RecordingBuilder.made = []
    monkeypatch.setattr(module.venv, "EnvBuilder", RecordingBuilder)
    monkeypatch.setattr(module, "run", lambda *args, **kwargs: None)  # no pip install
    return module


def make_venv(dev: ModuleType, home: str) -> None:
    dev.BIN.mkdir(parents=True)
    dev.PYTHON.write_text("")
    (dev.VENV / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = false\n")


def test_the_venv_home_is_read_from_pyvenv_cfg(dev: ModuleType) -> None:
    assert dev.venv_interpreter_home() is None
    make_venv(dev, "/opt/python/bin")
    assert dev.venv_interpreter_home() == os.path.realpath("/opt/python/bin")


def test_inside_a_venv_there_is_no_interpreter_to_compare(dev: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "prefix", "/some/venv")
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    assert dev.running_interpreter_home() is None
    monkeypatch.setattr(sys, "prefix", "/usr")
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
    assert dev.running_interpreter_home() == os.path.realpath("/usr/bin")


def test_a_venv_made_by_another_interpreter_is_made_again(dev: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    make_venv(dev, "/opt/other-python/bin")
    dev.STAMP.write_text("stale")
    monkeypatch.setattr(dev, "running_interpreter_home", lambda: os.path.realpath("/usr/bin"))
    dev.ensure_venv("")
    assert RecordingBuilder.made == [{"path": dev.VENV, "with_pip": True, "clear": True}]


def test_a_venv_made_by_this_interpreter_is_kept(dev: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    make_venv(dev, "/usr/bin")
    monkeypatch.setattr(dev, "running_interpreter_home", lambda: os.path.realpath("/usr/bin"))
    dev.ensure_venv("")
    # Run from inside a venv (nothing to compare): kept as well.
    monkeypatch.setattr(dev, "running_interpreter_home", lambda: None)
    dev.ensure_venv("")
    assert RecordingBuilder.made == []
    assert dev.STAMP.exists()


def test_a_missing_venv_is_created(dev: ModuleType) -> None:
    dev.ensure_venv("")
    assert RecordingBuilder.made == [{"path": dev.VENV, "with_pip": True}]
