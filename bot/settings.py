"""Settings from SQUADBOT_* environment variables and an optional .env file.

Every malformed value is reported at once, one line each naming the variable, and no line
ever repeats a value that may hold the token. `SETTINGS` is the one list of what each
variable means: the README's table, `--help` and the error lines are read against it.
"""

from __future__ import annotations

import contextvars
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TELEGRAM_API = "https://api.telegram.org"
PREFIX = "SQUADBOT_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
# what a `squadbot run` process may do (`run --only`): all three unless told otherwise
ROLES = ("updates", "outbox", "timer")
# a bot token as @BotFather gives it: the bot's id, a colon, the secret
_TOKEN_SHAPE = re.compile(r"\d{5,}:[A-Za-z0-9_-]{20,}")
# Telegram allows 1-256 of these in a webhook's secret token; squadbot asks for 16 at least
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{16,256}")

# set while settings are read for `run` or `sandbox`, which use the data folder and zone file
_for_run: contextvars.ContextVar[bool] = contextvars.ContextVar("squadbot_for_run", default=False)


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    meaning: str


SETTINGS: tuple[Setting, ...] = (
    Setting("SQUADBOT_TELEGRAM_TOKEN", "none (sandbox)", "the bot's token, from @BotFather"),
    Setting(
        "SQUADBOT_DATABASE_URL",
        "sqlite:///./squadbot.db",
        "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB",
    ),
    Setting(
        "SQUADBOT_TELEGRAM_API_URL",
        TELEGRAM_API,
        "base URL of any Bot API server (a self-hosted telegram-bot-api too), without /bot",
    ),
    Setting(
        "SQUADBOT_PROXY_URL",
        "none",
        "http://HOST:PORT or socks5://HOST:PORT; Telegram needs one from mainland China",
    ),
    Setting(
        "SQUADBOT_RETRY_START",
        "false",
        "true: `run` keeps retrying an unreachable Bot API or database at start, with backoff",
    ),
    Setting("SQUADBOT_LANGUAGE", "zh-CN", "zh-CN or en, for the command menu and the sandbox"),
    Setting("SQUADBOT_ZONE_FILE", "none", "zone file loaded (idempotently) by `run` at start"),
    Setting("SQUADBOT_DATA_DIR", "data", "attachments fetched from Telegram are kept here"),
    Setting("SQUADBOT_BOT_USERNAME", "asked from the API", "used in invite links"),
    Setting("SQUADBOT_LONG_POLL_SECONDS", "30", "getUpdates long-polling timeout"),
    Setting("SQUADBOT_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    Setting("SQUADBOT_LOG_FILE", "none", "also append the log to this file"),
    Setting(
        "SQUADBOT_LOG_FORMAT",
        "text",
        "text, or json: every log line one JSON object (time, level, logger, message, and the "
        "update, ticket and chat it is about)",
    ),
    Setting(
        "SQUADBOT_FLOOD_BURST",
        "20",
        "updates one Telegram user may send at once before the rest are ignored",
    ),
    Setting(
        "SQUADBOT_FLOOD_PER_SECOND",
        "1",
        "updates per second a user's allowance grows back by, up to SQUADBOT_FLOOD_BURST",
    ),
    Setting(
        "SQUADBOT_FLOOD_NOTICE_SECONDS",
        "60",
        "a user sending too fast is told at most once in this many seconds",
    ),
    Setting(
        "SQUADBOT_INVITE_GUESSES_PER_HOUR",
        "5",
        "wrong invite codes an account may send in an hour before every code is refused",
    ),
    Setting(
        "SQUADBOT_SEND_PER_SECOND",
        "30",
        "messages this process sends to Telegram per second at most, in all chats together "
        "(Telegram allows a bot about 30): with several processes sending, give each a share",
    ),
    Setting(
        "SQUADBOT_LEASE_SECONDS",
        "30",
        "how long a process's hold on an update, a message or an attachment lasts unrenewed: "
        "the work of a process that died is taken over by the others after this long",
    ),
    Setting(
        "SQUADBOT_HEALTH_LISTEN",
        "none (off)",
        "HOST:PORT (e.g. 127.0.0.1:9464) where `run` serves /healthz and /metrics",
    ),
    Setting(
        "SQUADBOT_HEALTH_MAX_API_SILENCE",
        "120",
        "seconds without a successful Bot API call before /healthz answers 503",
    ),
    Setting(
        "SQUADBOT_HEALTH_MAX_OUTBOX_AGE",
        "600",
        "seconds the oldest undelivered message may wait before /healthz answers 503",
    ),
    Setting(
        "SQUADBOT_HEALTH_MAX_OUTBOX_BACKLOG",
        "1000",
        "undelivered messages before /healthz answers 503",
    ),
    Setting(
        "SQUADBOT_HEALTH_MAX_TIMER_LAG",
        "300",
        "seconds an alert may be overdue and unfired before /healthz answers 503",
    ),
    Setting(
        "SQUADBOT_WEBHOOK_SECRET",
        "drawn at each start",
        "`run --webhook`: the secret token Telegram sends in each post, 16-256 of A-Z a-z 0-9 _ -",
    ),
)
# read only to say that it is not used: the time zone is the zone file's `timezone`
OBSOLETE = {
    "SQUADBOT_TIMEZONE": "SQUADBOT_TIMEZONE is not used: the time zone is `timezone:` under "
    "`zone:` in the zone file (default Asia/Shanghai); remove SQUADBOT_TIMEZONE",
}
# SQUADBOT_* names that are not settings but are expected (tests' database)
_NOT_SETTINGS = ("SQUADBOT_TEST_",)


class SettingsError(Exception):
    """One line per bad variable, each `SQUADBOT_NAME: what is wrong`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    telegram_token: str | None = None
    # the working directory when the settings are read, not when this module was imported
    database_url: str = Field(default_factory=lambda: f"sqlite:///{Path.cwd() / 'squadbot.db'}")
    telegram_api_url: str = TELEGRAM_API
    proxy_url: str | None = None
    retry_start: bool = False
    language: str = "zh-CN"
    zone_file: Path | None = None
    data_dir: Path = Path("data")
    long_poll_seconds: int = Field(default=30, ge=0)
    bot_username: str | None = None
    log_level: str = "INFO"
    log_file: Path | None = None
    log_format: str = "text"
    flood_burst: int = Field(default=20, ge=1)
    flood_per_second: float = Field(default=1.0, gt=0)
    flood_notice_seconds: float = Field(default=60.0, ge=0)
    invite_guesses_per_hour: int = Field(default=5, ge=1)
    send_per_second: float = Field(default=30.0, ge=1.0)
    lease_seconds: float = Field(default=30.0, ge=1.0, le=3600.0)
    health_listen: str | None = None
    health_max_api_silence: float = Field(default=120.0, gt=0)
    health_max_outbox_age: float = Field(default=600.0, gt=0)
    health_max_outbox_backlog: int = Field(default=1000, ge=1)
    health_max_timer_lag: float = Field(default=300.0, gt=0)
    webhook_secret: str | None = Field(default=None, repr=False)
    obsolete_timezone: str | None = Field(default=None, validation_alias="SQUADBOT_TIMEZONE")

    @field_validator("telegram_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        head, sep, tail = value.strip().partition(":")
        if not sep or not head.isdigit() or len(tail) < 20:
            raise ValueError("expected the form 123456789:AA... from @BotFather")
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _db(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        if value.startswith("postgresql://"):
            return "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("telegram_api_url")
    @classmethod
    def _api(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// base URL of a Bot API server")
        if _TOKEN_SHAPE.search(value):
            # never repeated: the value holds what looks like a token
            raise ValueError(
                "contains a bot token: give only the server's base URL, e.g. "
                f"{TELEGRAM_API}, and the token in SQUADBOT_TELEGRAM_TOKEN"
            )
        value = value.rstrip("/")
        if value.endswith("/bot"):
            raise ValueError(
                f"ends in /bot: give the server's base URL without it, e.g. {TELEGRAM_API} "
                "(squadbot adds /bot<token>/ itself)"
            )
        return value

    @field_validator("proxy_url")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        if not value.startswith(("http://", "https://", "socks5://", "socks5h://")):
            raise ValueError("expected http://HOST:PORT or socks5://HOST:PORT")
        return value

    @field_validator("health_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        parse_listen(value)
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        problem = webhook_secret_problem(value.strip())
        if problem:
            raise ValueError(problem)  # never repeats the value
        return value.strip()

    @field_validator("language")
    @classmethod
    def _lang(cls, value: str) -> str:
        if value not in ("zh-CN", "en"):
            raise ValueError("expected zh-CN or en")
        return value

    @field_validator("zone_file", "log_file", "bot_username", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip() == "" else value

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: Path) -> Path:
        if _for_run.get():
            problem = folder_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("zone_file")
    @classmethod
    def _zone_file(cls, value: Path | None) -> Path | None:
        if value is not None and _for_run.get() and not value.is_file():
            raise ValueError(f"{value}: {'is a folder' if value.is_dir() else 'no such file'}")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("log_format")
    @classmethod
    def _format(cls, value: str) -> str:
        form = value.strip().lower()
        if form not in LOG_FORMATS:
            raise ValueError(f"expected {' or '.join(LOG_FORMATS)}")
        return form

    @field_validator("log_file")
    @classmethod
    def _log_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if value.is_dir():
            raise ValueError(f"{value} is a folder: give a file name in it")
        if value.exists():
            if not os.access(value, os.W_OK):
                raise ValueError(f"{value} is not writable")
            return value
        parent = value.parent
        if not parent.is_dir():
            raise ValueError(f"the folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise ValueError(f"cannot create {value}: the folder {parent} is not writable")
        return value

    @property
    def bot_api_base(self) -> str:
        return f"{self.telegram_api_url}/bot"

    @property
    def bot_file_base(self) -> str:
        return f"{self.telegram_api_url}/file/bot"

    def warnings(self) -> list[str]:
        """Settings that are read but have no effect, and names that look like a typo."""
        found: list[str] = []
        if self.obsolete_timezone is not None:
            found.append(OBSOLETE["SQUADBOT_TIMEZONE"])
        known = [s.name for s in SETTINGS]
        for name in sorted(_given_names()):
            if name in known or name in OBSOLETE or name.startswith(_NOT_SETTINGS):
                continue
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            if close:
                found.append(f"{name} is not a setting (did you mean {close[0]}?)")
        return found


def webhook_secret_problem(value: str) -> str | None:
    """Why `value` cannot be the webhook's secret token, never repeating it; None if it can."""
    if _WEBHOOK_SECRET.fullmatch(value):
        return None
    return (
        f"expected 16 to 256 characters, each A-Z, a-z, 0-9, _ or - (it has {len(value)}); "
        "e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))', or leave it "
        "unset to draw one at each start"
    )


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [::1]:PORT) as a host and a port, or ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host.strip("[]"), int(port)


def folder_problem(folder: Path) -> str | None:
    """Why `folder` cannot hold squadbot's files, or None; creates nothing."""
    if folder.exists():
        if not folder.is_dir():
            return f"{folder} is a file, not a folder"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{folder} is not writable"
        return None
    parent = folder.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot create {folder}: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {folder}: {parent} is not writable"
    return None


def _given_names() -> set[str]:
    names = {name.upper() for name in os.environ if name.upper().startswith(PREFIX)}
    dotenv = Path(".env")
    if dotenv.is_file():
        from dotenv import dotenv_values

        names |= {n.upper() for n in dotenv_values(dotenv) if n.upper().startswith(PREFIX)}
    return names


def _variable(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "SQUADBOT_?"
    name = str(loc[0])
    return name.upper() if name.upper().startswith(PREFIX) else f"{PREFIX}{name.upper()}"


def load_settings(*, for_run: bool = False, **overrides: object) -> Settings:
    """Settings, or SettingsError naming every bad variable (one line each, in table order).
    With `for_run` (`run`, `sandbox`), SQUADBOT_DATA_DIR must be a folder squadbot can write
    to (or create) and SQUADBOT_ZONE_FILE, if set, a file."""
    token = _for_run.set(for_run)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for error in exc.errors():
            name = _variable(error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.setdefault(name, f"{name}: {message}")
        order = [s.name for s in SETTINGS]
        ranked = sorted(problems, key=lambda n: order.index(n) if n in order else len(order))
        raise SettingsError([problems[name] for name in ranked]) from None
    finally:
        _for_run.reset(token)
