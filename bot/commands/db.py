"""`squadbot db upgrade`."""

from __future__ import annotations

import argparse
from typing import Any

from bot.commands.common import engine_for
from bot.settings import Settings
from migrations.runner import upgrade


def cmd_db_upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    engine = engine_for(settings)
    upgrade(engine)
    print("database is at the newest schema")
    return 0


def register(sub: Any) -> None:
    db = sub.add_parser("db").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply pending migrations").set_defaults(handler=cmd_db_upgrade)
