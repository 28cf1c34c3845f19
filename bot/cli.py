"""The `squadbot` command: run the bot, manage its database, zone, invites, people and inbox.

Every failure ends in one line on stderr, `squadbot: <cause>: <what to change>`, and an exit
code (see EXIT_CODES in `bot.commands.help`); the bot's token never appears in any output
or log line. The commands live in `bot.commands`, one module per group.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap

from bot import logs
from bot.commands import GROUPS
from bot.commands.common import Handler, database_errors, database_label
from bot.commands.help import EXIT_CODES, Formatter, environment, subcommands
from bot.settings import SETTINGS, Settings, SettingsError, load_settings
from bot.startup import EXIT_CONFIG, EXIT_UNAVAILABLE, Failure

__all__ = ["main", "parser"]

log = logging.getLogger("squadbot")
EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="squadbot",
        description=textwrap.fill(
            "Run the squadbot chat bot and manage its database, zone, invites and inbox. "
            "Settings come from SQUADBOT_* environment variables (and ./.env); "
            "`squadbot COMMAND --help` lists the ones each command reads.",
            96,
        ),
        epilog=f"{environment(s.name for s in SETTINGS)}\n\n{EXIT_CODES}",
        formatter_class=Formatter,
    )
    sub = subcommands(p, "command")
    for group in GROUPS:
        group.register(sub)
    return p


def _fail(message: str, code: int) -> int:
    """The last line: printed on stderr, and kept in the log file too."""
    message = logs.redact(message)
    if logs.writes_json():  # stderr carries JSON lines only
        log.error("%s", message)
        return code
    log.error("%s", message, extra={"console": False})
    print(f"squadbot: {message}", file=sys.stderr)
    return code


def _unexpected(exc: BaseException, settings: Settings) -> tuple[str, int]:
    """What an exception nobody turned into a Failure means, in one line."""
    from sqlalchemy.exc import SQLAlchemyError
    from telegram.error import InvalidToken, NetworkError

    if isinstance(exc, InvalidToken):  # its own text holds the token: never shown
        bot_id = (settings.telegram_token or "").partition(":")[0]
        return (
            f"the Bot API at {settings.telegram_api_url} rejected the token of bot {bot_id}: "
            "set SQUADBOT_TELEGRAM_TOKEN to the bot's current token from @BotFather",
            EXIT_CONFIG,
        )
    if isinstance(exc, NetworkError):
        return (
            f"lost the Bot API at {settings.telegram_api_url} while starting ({exc.message}); "
            "try again later, or run with --retry-start",
            EXIT_UNAVAILABLE,
        )
    if isinstance(exc, SQLAlchemyError):
        try:
            with database_errors(database_label(settings.database_url)):
                raise exc
        except Failure as failure:
            return failure.message, failure.code
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}", EXIT_CONFIG
    return f"unexpected error: {type(exc).__name__}: {exc}", EXIT_UNEXPECTED


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        settings = load_settings(for_run=args.command in ("run", "sandbox"))
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"squadbot: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    logs.add_secret(settings.telegram_token)
    service = args.command == "run" and settings.telegram_token is not None
    with logs.configured(
        settings.log_level,
        settings.log_file,
        service=service,
        json_lines=settings.log_format == "json",
    ):
        for warning in settings.warnings():
            log.warning("%s", warning)
        try:
            return handler(settings, args)
        except Failure as exc:
            return _fail(exc.message, exc.code)
        except KeyboardInterrupt:
            return _fail("interrupted", EXIT_INTERRUPTED)
        except Exception as exc:
            message, code = _unexpected(exc, settings)
            if code == EXIT_UNEXPECTED:
                # the traceback goes to the log file, and to stderr with SQUADBOT_LOG_LEVEL=DEBUG
                debug = settings.log_level == "DEBUG"
                log.error("unexpected error", exc_info=exc, extra={"console": debug})
                if not debug:
                    message += " (SQUADBOT_LOG_LEVEL=DEBUG shows the traceback)"
            return _fail(message, code)


if __name__ == "__main__":
    sys.exit(main())
