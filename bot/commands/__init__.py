"""The `squadbot` subcommands, one small module per command group.

Each module has `register(subparsers)`, which adds its parser(s) and sets `handler` (a
function `(settings, args) -> exit code`) with `set_defaults`. To add a command group, write
a module here with `register` and list it in `GROUPS`; `bot.cli` does the rest (settings,
logging, the database line, turning a `CommandError` into one line and an exit code).
"""

from __future__ import annotations

from bot.commands import db, doctor, inbox, invite, org, people, report, run

GROUPS = (run, db, org, invite, people, inbox, doctor, report)

__all__ = ["GROUPS"]
