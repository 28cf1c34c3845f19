"""`squadbot inbox dead|retry`: updates that could not be handled."""

from __future__ import annotations

import argparse
from typing import Any

from bot.commands.common import open_database
from bot.commands.help import command_parser, subcommands
from bot.settings import Settings
from bot.startup import Failure


def cmd_inbox_dead(settings: Settings, _args: argparse.Namespace) -> int:
    from bot.inbox import dead_letters

    engine = open_database(settings, create=False)
    rows = dead_letters(engine)
    for row in rows:
        when = row.dead_at.isoformat(timespec="seconds") if row.dead_at else "?"
        print(f"{row.id}\tupdate {row.update_id}\t{when}\t{row.attempts} attempts\t{row.error}")
    print(f"{len(rows)} dead letter(s)")
    return 0


def cmd_inbox_retry(settings: Settings, args: argparse.Namespace) -> int:
    from bot.inbox import retry_dead_letter

    engine = open_database(settings, create=False)
    if not retry_dead_letter(engine, args.id):
        raise Failure(f"inbox: {args.id} is not a dead letter (see `squadbot inbox dead`)")
    print(f"update {args.id} will be handled again by the running bot")
    return 0


def register(sub: Any) -> None:
    group = command_parser(
        sub,
        "inbox",
        "updates that could not be handled (dead letters)",
        "Updates whose handling failed three times, or that could not be read, are kept as "
        "dead letters with their error.",
        settings=("SQUADBOT_DATABASE_URL",),
    )
    inbox = subcommands(group, "inbox_command")
    command_parser(
        inbox,
        "dead",
        "list dead letters with their errors",
        "List dead letters: id, update id, when, attempts, error.",
        settings=("SQUADBOT_DATABASE_URL",),
    ).set_defaults(handler=cmd_inbox_dead)
    retry = command_parser(
        inbox,
        "retry",
        "handle a dead letter again (after a fix)",
        "Mark a dead letter for handling again; the running bot picks it up.",
        settings=("SQUADBOT_DATABASE_URL",),
    )
    retry.add_argument("id", type=int, help="the dead letter's id, as `inbox dead` prints it")
    retry.set_defaults(handler=cmd_inbox_retry)
