"""Logging for the `squadbot` command, and keeping the bot's token out of every line.

The token is a password: whoever has it is the bot. No message squadbot writes contains it
(the start-up messages are built without it), and as a second line of defence every log
record passes `TokenFilter` before any handler writes it, which masks the configured token
and anything shaped like one (httpx logs request URLs, and a Bot API URL holds the token)
in the message, its arguments and its traceback.

With SQUADBOT_LOG_FORMAT=json every line is one JSON object: `time` (UTC, ISO 8601),
`level`, `logger`, `message`, `traceback` when there is one, and, where the line is about
them, `update_id`, `ticket` and `chat` (models/log_context.py). The token filter has done
its work before the line is formatted, and the finished line is masked once more.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from models import log_context

__all__ = ["JsonLines", "TokenFilter", "add_secret", "configured", "redact", "writes_json"]

# id:secret, as @BotFather hands it out; the id is the bot's public user id and is kept
_TOKEN_SHAPE = re.compile(r"\b(\d{5,}):[A-Za-z0-9_-]{20,}")
_secrets: set[str] = set()

FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# libraries whose INFO lines are chatter for an operator: migrations (squadbot says what it
# applied), the scheduler adding its one job, PTB starting and stopping (squadbot says so),
# every HTTP request; their warnings and errors still show
_QUIET = ("aiohttp", "alembic", "apscheduler", "httpx", "httpcore", "telegram")
_json_lines = False  # while `configured(json_lines=True)` holds


def add_secret(token: str | None) -> None:
    """Mask this token (and its secret half) wherever it would be written."""
    if not token:
        return
    _secrets.add(token)
    _head, _sep, tail = token.partition(":")
    if len(tail) >= 8:
        _secrets.add(tail)


def _masked(token: str) -> str:
    head, sep, _tail = token.partition(":")
    return f"{head}:***" if sep and head.isdigit() else "***"


def redact(text: str) -> str:
    """`text` without any token: each becomes `<bot id>:***`."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, _masked(secret))
    return _TOKEN_SHAPE.sub(r"\1:***", text)


class TokenFilter(logging.Filter):
    """Masks tokens in a record's message, arguments, traceback and stack; never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: keep what can be kept, masked
            message = f"{record.msg} {record.args}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class _NotConsole(logging.Filter):
    """A record marked `console=False` (the final one-line error, already printed) goes to the
    log file only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "console", True) is not False


class _Console(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr as it is now, not as it was when the handler was made (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _ShortFormatter(logging.Formatter):
    """A short command's lines: `squadbot: message`, `squadbot: warning: message`."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"squadbot: {record.levelname.lower()}: {text}"
        return f"squadbot: {text}"


class JsonLines(logging.Formatter):
    """One JSON object per record, with what the line is about (models/log_context.py)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **log_context.current(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["traceback"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


def writes_json() -> bool:
    """True while the log is written as JSON lines (SQUADBOT_LOG_FORMAT=json)."""
    return _json_lines


@contextmanager
def configured(
    level: str = "INFO",
    log_file: Path | None = None,
    *,
    service: bool = False,
    json_lines: bool = False,
) -> Iterator[None]:
    """Logging for one command: stderr (timestamped for the long-running `run`, short lines
    for the other commands) and, if given, a log file (always timestamped, safe to rotate),
    every handler behind a TokenFilter; with `json_lines`, both as one JSON object a line.
    Everything is put back on exit."""
    global _json_lines
    root = logging.getLogger()
    token_filter = TokenFilter()
    console = _Console()
    console.setFormatter(
        JsonLines()
        if json_lines
        else logging.Formatter(FILE_FORMAT)
        if service
        else _ShortFormatter()
    )
    console.addFilter(_NotConsole())
    added: list[logging.Handler] = [console]
    if log_file is not None:
        to_file = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(JsonLines() if json_lines else logging.Formatter(FILE_FORMAT))
        added.append(to_file)
    saved_level = root.level
    quiet_saved = {name: logging.getLogger(name).level for name in _QUIET}
    # a handler somebody else installed (a test's capture) is masked too, first in line
    filtered = [h for h in root.handlers if token_filter not in h.filters]
    for handler in filtered:
        handler.filters.insert(0, token_filter)
    for handler in added:
        handler.addFilter(token_filter)
        root.addHandler(handler)
    root.addFilter(token_filter)
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings pass the same handlers and filter
    debug = level == "DEBUG"
    for name in _QUIET:
        # with DEBUG, the Bot API's request lines are shown (masked): bot/bot_api_transport.py
        # writes its own, httpx (through a SOCKS proxy) its; the rest stay quiet
        shown = debug and name == "httpx"
        logging.getLogger(name).setLevel(logging.INFO if shown else logging.WARNING)
    saved_json, _json_lines = _json_lines, json_lines
    try:
        yield
    finally:
        _json_lines = saved_json
        for handler in added:
            root.removeHandler(handler)
            handler.close()
        for handler in filtered:
            if token_filter in handler.filters:
                handler.removeFilter(token_filter)
        root.removeFilter(token_filter)
        root.setLevel(saved_level)
        logging.captureWarnings(False)
        for name, saved in quiet_saved.items():
            logging.getLogger(name).setLevel(saved)
