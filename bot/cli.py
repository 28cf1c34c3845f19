"""The `squadbot` command: run, db upgrade, org load/show/schema, invite, inbox, sandbox."""

from __future__ import annotations

import argparse
import logging
import sys

from bot.commands import GROUPS
from bot.commands.common import Handler
from bot.commands.invite import SANDBOX_BOT
from bot.settings import SettingsError, load_settings

__all__ = ["SANDBOX_BOT", "main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="squadbot", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"squadbot: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    return handler(settings, args)


if __name__ == "__main__":
    sys.exit(main())
