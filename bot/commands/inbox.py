"""`squadbot inbox dead|retry`: updates that could not be handled."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bot.commands.common import engine_for
from bot.settings import Settings
from migrations.runner import upgrade


def cmd_inbox(settings: Settings, args: argparse.Namespace) -> int:
    from bot.inbox import dead_letters, retry_dead_letter

    engine = engine_for(settings)
    upgrade(engine)
    if args.inbox_command == "retry":
        if not retry_dead_letter(engine, args.id):
            print(
                f"inbox: {args.id} is not a dead letter (see 'squadbot inbox dead')",
                file=sys.stderr,
            )
            return 2
        print(f"update {args.id} will be handled again by the running bot")
        return 0
    rows = dead_letters(engine)
    for row in rows:
        when = row.dead_at.isoformat(timespec="seconds") if row.dead_at else "?"
        print(f"{row.id}\tupdate {row.update_id}\t{when}\t{row.attempts} attempts\t{row.error}")
    print(f"{len(rows)} dead letter(s)")
    return 0


def register(sub: Any) -> None:
    inbox = sub.add_parser("inbox", help="updates that could not be handled").add_subparsers(
        dest="inbox_command", required=True
    )
    inbox.add_parser("dead", help="list dead letters with their errors").set_defaults(
        handler=cmd_inbox
    )
    retry = inbox.add_parser("retry", help="handle a dead letter again (after a fix)")
    retry.add_argument("id", type=int, help="the dead letter's id, as 'inbox dead' prints it")
    retry.set_defaults(handler=cmd_inbox)
