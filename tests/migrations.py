"""Databases as a version before one migration left them: every branch at its newest revision except that one's."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory

from callerid.db.migrate import alembic_config


def upgrade_all_but(url: str, revision: str, before: str) -> None:
    """Each head that has ``revision`` below it stops at ``before``; every other head goes all the way. (Newer
    revisions stacked on ``revision`` must wait for it: the state tested is the one ``revision`` starts from.)"""
    config = alembic_config(url)
    script = ScriptDirectory.from_config(config)
    for head in script.get_heads():
        below = {step.revision for step in script.iterate_revisions(head, "base")}
        command.upgrade(config, before if revision in below else head)
