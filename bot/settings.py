"""Settings from SQUADBOT_* environment variables and an optional .env file. A missing or
malformed value stops start-up with one line that names it."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TELEGRAM_API = "https://api.telegram.org"


class SettingsError(Exception):
    pass


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SQUADBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    telegram_token: str | None = None
    # the working directory when the settings are read, not when this module was imported
    database_url: str = Field(default_factory=lambda: f"sqlite:///{Path.cwd() / 'squadbot.db'}")
    telegram_api_url: str = TELEGRAM_API
    proxy_url: str | None = None
    timezone: str = "Asia/Shanghai"
    language: str = "zh-CN"
    zone_file: Path | None = None
    data_dir: Path = Path("data")
    long_poll_seconds: int = 30
    bot_username: str | None = None

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
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// base URL of a Bot API server")
        return value.rstrip("/")

    @field_validator("proxy_url")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith(("http://", "https://", "socks5://", "socks5h://")):
            raise ValueError("expected http://HOST:PORT or socks5://HOST:PORT")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("language")
    @classmethod
    def _lang(cls, value: str) -> str:
        if value not in ("zh-CN", "en"):
            raise ValueError("expected zh-CN or en")
        return value

    @property
    def bot_api_base(self) -> str:
        return f"{self.telegram_api_url}/bot"

    @property
    def bot_file_base(self) -> str:
        return f"{self.telegram_api_url}/file/bot"


def load_settings(**overrides: object) -> Settings:
    """Settings, or SettingsError with one line naming the first bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"SQUADBOT_{field.upper()}: {message}") from None
