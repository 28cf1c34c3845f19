"""Building the PTB Application: any Bot API server by base URL (a self-hosted
telegram-bot-api included), an optional proxy, no stock Updater (the inbox fetches).

The proxy is the one given (`bot.startup.proxy_for` resolves it from the settings and the
environment): httpx does not read HTTPS_PROXY and friends again behind its back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypedDict

from sqlmodel import Session
from telegram import BotCommand, Update
from telegram.ext import Application, ApplicationBuilder
from telegram.request import BaseRequest, HTTPXRequest

import handlers
from bot.bot_api_transport import BotApiTransport
from bot.i18n import t
from bot.sending_bot import SendingBot
from models.zone.config import ZoneConfig, read_zone

log = logging.getLogger(__name__)


# the bounds of one Bot API call but getUpdates (which keeps PTB's, beside its long poll)
class CallTimeouts(TypedDict):
    read_timeout: float
    write_timeout: float
    connect_timeout: float
    pool_timeout: float


CALL_TIMEOUTS = CallTimeouts(
    read_timeout=15.0, write_timeout=15.0, connect_timeout=10.0, pool_timeout=5.0
)


def build_application(
    token: str,
    *,
    base_url: str,
    base_file_url: str,
    proxy: str | None = None,
    connections: int = 16,
) -> Application:  # type: ignore[type-arg]
    """The bot's Application. `connections` bounds the calls in flight: 16 carry Telegram's
    30 messages/s even at half a second a round trip (through a proxy). The calls travel
    over aiohttp (bot/bot_api_transport.py), at a quarter of httpx's CPU a call; through a
    SOCKS proxy, over PTB's stock httpx request (its `socks` extra), whose pool looks at
    every connection for every request, so more connections cost CPU on each call."""
    request: BaseRequest
    polling: BaseRequest
    if proxy is not None and not proxy.startswith(("http://", "https://")):
        explicit = {"trust_env": False}
        request = HTTPXRequest(
            connection_pool_size=connections,
            proxy=proxy,
            httpx_kwargs=explicit,
            **CALL_TIMEOUTS,
        )
        polling = HTTPXRequest(connection_pool_size=2, proxy=proxy, httpx_kwargs=explicit)
    else:
        request = BotApiTransport(connections, proxy=proxy, **CALL_TIMEOUTS)
        polling = BotApiTransport(2, proxy=proxy)
    bot = SendingBot(
        token,
        base_url=base_url,
        base_file_url=base_file_url,
        request=request,
        get_updates_request=polling,
    )
    app = (
        ApplicationBuilder()
        .bot(bot)
        .updater(None)
        .job_queue(None)  # unused: the deadline timer and the service's scheduler do this work
        .build()
    )
    handlers.register(app)
    return app


async def announce_commands(app: Application, language: str) -> None:  # type: ignore[type-arg]
    """Cosmetic: the command menu. A failure is logged, never fatal."""
    names = ("new", "my", "ticket", "reply", "plan", "resolve", "lang", "help")
    try:
        await app.bot.set_my_commands([BotCommand(n, t(language, f"command.{n}")) for n in names])
        other = "en" if language == "zh-CN" else "zh"
        await app.bot.set_my_commands(
            [BotCommand(n, t(other, f"command.{n}")) for n in names], language_code=other
        )
    except Exception as exc:
        log.warning("setMyCommands failed: %s", exc)


class ZoneCache:
    """The zone configuration, re-read at most every few seconds (the CLI may reload it)."""

    def __init__(
        self, ttl: float = 5.0, override: Callable[[ZoneConfig], ZoneConfig] | None = None
    ):
        self.ttl = ttl
        self._value: ZoneConfig | None = None
        self._at = 0.0
        self.override = override

    def __call__(self, session: Session) -> ZoneConfig:
        now = time.monotonic()
        if self._value is None or now - self._at > self.ttl:
            zone = read_zone(session)
            self._value = self.override(zone) if self.override else zone
            self._at = now
        return self._value


__all__ = ["Update", "ZoneCache", "announce_commands", "build_application"]
