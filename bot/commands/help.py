"""`--help` for every command: a description, help on every option, and an epilog listing
the environment variables the command reads (from `bot.settings.SETTINGS`)."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterable
from typing import Any

from bot.settings import SETTINGS

EXIT_CODES = """exit codes:
  0  done
  1  an unexpected error (the traceback is logged with SQUADBOT_LOG_LEVEL=DEBUG)
  2  a setting, an argument or the database must be fixed: trying again will not help
  3  the Bot API, the proxy or the database cannot be reached now: try again later
     (`run --retry-start` keeps trying by itself)
  130  interrupted (Ctrl-C); `run` stops cleanly on SIGINT and SIGTERM and exits 0"""

# what every command reads
COMMON = ("SQUADBOT_LOG_LEVEL", "SQUADBOT_LOG_FILE", "SQUADBOT_LOG_FORMAT")


class Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def environment(names: Iterable[str]) -> str:
    """The epilog: each variable, what it means and its default."""
    wanted = list(dict.fromkeys([*names, *COMMON]))
    table = {s.name: s for s in SETTINGS}
    lines = ["environment (a .env file in the working directory is read too):"]
    width = max(len(n) for n in wanted) + 2
    for name in wanted:
        setting = table[name]
        text = f"{setting.meaning} (default: {setting.default})"
        wrapped = textwrap.wrap(text, 96 - width - 2) or [""]
        lines.append(f"  {name.ljust(width)}{wrapped[0]}")
        lines.extend(" " * (width + 2) + more for more in wrapped[1:])
    return "\n".join(lines)


def command_parser(
    sub: Any,
    name: str,
    help_text: str,
    description: str,
    *,
    settings: Iterable[str] = (),
) -> argparse.ArgumentParser:
    """A subcommand's parser with its description and the environment it reads."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=textwrap.fill(description, 96),
        epilog=f"{environment(settings)}\n\n{EXIT_CODES}",
        formatter_class=Formatter,
    )
    return parser


def subcommands(parser: argparse.ArgumentParser, dest: str) -> Any:
    """The subparsers of a command group; each subcommand has its own --help."""
    return parser.add_subparsers(
        dest=dest,
        required=True,
        metavar="COMMAND",
        title="commands",
        help="each has its own --help",
    )
