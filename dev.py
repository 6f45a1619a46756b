#!/usr/bin/env python3
"""Set up everything and run callerid. Needs nothing but Python 3.11+.

    python3 dev.py start     # install into .venv, create the demo account, serve on http://127.0.0.1:8000
    python3 dev.py test      # install into .venv (with test tools), run the whole test suite

Extra arguments after ``test`` go to pytest (``python3 dev.py test -k tokens``); after ``start`` to
``callerid serve`` (``python3 dev.py start --port 9000``). Written with the standard library only,
because it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".callerid-installed"
CLIENT = ROOT / "clients" / "python"


def say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def run(*args: str | Path, **kwargs: object) -> None:
    subprocess.run([str(a) for a in args], check=True, **kwargs)  # type: ignore[call-overload]


def venv_interpreter_home() -> str | None:
    """The folder of the interpreter .venv was made with (``home`` in its pyvenv.cfg), if there is one."""
    config = VENV / "pyvenv.cfg"
    if not config.exists():
        return None
    for line in config.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return os.path.realpath(value.strip())
    return None


def running_interpreter_home() -> str | None:
    """The folder of the interpreter running dev.py; None when that is a venv's own (nothing to compare)."""
    if sys.prefix != sys.base_prefix:
        return None
    return os.path.realpath(os.path.dirname(sys.executable))


def ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs before any install, on any Python
        sys.exit(f"callerid needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    made_by, running = venv_interpreter_home(), running_interpreter_home()
    if not PYTHON.exists():
        say(f"creating {VENV} with {sys.executable}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    elif made_by is not None and running is not None and made_by != running:
        # .venv is made by the interpreter dev.py runs under, so that choosing another one (an optimised build,
        # see the README) takes effect; a venv cannot change its interpreter, so it is made again.
        say(f"re-creating {VENV} with {sys.executable} (it was made with the Python in {made_by})")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    manifests = (ROOT / "pyproject.toml").read_bytes() + (CLIENT / "pyproject.toml").read_bytes()
    wanted = hashlib.sha256(manifests + extras.encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    say(f"installing callerid{extras} into {VENV} (first run takes a minute)")
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    # The server, and the Python client with its CLI (clients/python, a distribution of its own).
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}{extras}", "-e", f"{CLIENT}[cli]")
    STAMP.write_text(wanted)


def ensure_chromium() -> None:
    """Browser tests drive Debian's Chromium; install it where we can (root + apt), else they skip."""
    if shutil.which("chromium") or Path("/usr/bin/chromium").exists():
        return
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        say("Chromium not found and cannot be installed here: browser tests will be skipped")
        return
    say("installing Debian's chromium for the browser tests")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run("apt-get", "update", "-qq", env=env, stdout=subprocess.DEVNULL)
        run("apt-get", "install", "-y", "-qq", "chromium", env=env, stdout=subprocess.DEVNULL)
    except subprocess.CalledProcessError as exc:
        say(f"could not install chromium ({exc}); browser tests will be skipped")


def start(args: list[str]) -> int:
    ensure_venv("")
    callerid = BIN / "callerid"
    # The demo runs on a laptop: webhooks to a receiver on localhost must be allowed (SPEC §9.1 safety).
    os.environ.setdefault("CALLERID_WEBHOOK_ALLOW_PRIVATE", "true")
    # --host/--port also go to the environment so the demo prints the URLs the server will really use.
    for flag, variable in (("--host", "CALLERID_HOST"), ("--port", "CALLERID_PORT")):
        if flag in args[:-1]:
            os.environ[variable] = args[args.index(flag) + 1]
    run(callerid, "demo")
    os.execv(str(callerid), [str(callerid), "serve", *args])
    return 0  # not reached


def test(args: list[str]) -> int:
    ensure_venv("[test]")
    ensure_chromium()
    return subprocess.call([str(PYTHON), "-m", "pytest", *args], cwd=ROOT)


def main() -> int:
    commands = {"start": start, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
