"""`squadbot db upgrade`."""

from __future__ import annotations

import argparse
from typing import Any

from bot.commands.common import open_database
from bot.commands.help import command_parser, subcommands
from bot.settings import Settings
from migrations.runner import current


def cmd_db_upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    engine = open_database(settings, create=True)
    print(f"database is at the newest schema ({current(engine)})")
    return 0


def register(sub: Any) -> None:
    group = command_parser(
        sub,
        "db",
        "the database's schema",
        "The database's schema, changed only by squadbot's own migrations.",
        settings=("SQUADBOT_DATABASE_URL",),
    )
    db = subcommands(group, "db_command")
    command_parser(
        db,
        "upgrade",
        "apply pending migrations (creates the database if there is none)",
        "Apply every pending migration; `run` and `org load` do this too. Prints nothing "
        "about migrations when there are none.",
        settings=("SQUADBOT_DATABASE_URL",),
    ).set_defaults(handler=cmd_db_upgrade)
