"""``callerid-client``: the business CLI (needs the ``cli`` extra: ``pip install 'callerid-client[cli]'``)."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from callerid_client.cli.app import run
    except ImportError as exc:  # typer or rich missing
        sys.exit(f"callerid-client needs the cli extra: pip install 'callerid-client[cli]' ({exc})")
    run()
