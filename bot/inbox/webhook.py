"""Webhook mode (`squadbot run --webhook URL --listen HOST:PORT`): Telegram POSTs each update
to URL, a reverse proxy holding the TLS certificate passes it to HOST:PORT, and the receiver
(`bot.inbox.receiver`) stores it in the inbox before answering; the poller is not started,
and the same processing loop handles what was stored.

While the bot runs its webhook is registered with Telegram: setWebhook at start (the URL,
the secret token, the update kinds the poller asks for, pending updates kept), deleteWebhook
at stop, so that updates sent while the bot is down wait at Telegram (for polling or the next
start) rather than fail. Every `CHECK_SECONDS` getWebhookInfo is read: a webhook that someone
else changed or deleted is registered again, and what Telegram says about failed deliveries
is logged when it changes.

The secret token is SQUADBOT_WEBHOOK_SECRET, or one drawn at start (256 bits); it is never
logged, and every log line passes a filter that masks it (`bot.logs.add_secret`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy.engine import Engine
from telegram import Bot
from telegram.error import BadRequest, InvalidToken, TelegramError

from bot.inbox.fetching import ALLOWED_UPDATES
from bot.inbox.receiver import WebhookReceiver
from bot.logs import add_secret
from bot.startup import Failure
from models.clock import Clock
from models.quiet_log import QuietLog, problem_key

log = logging.getLogger(__name__)

TELEGRAM_PORTS = (443, 80, 88, 8443)  # the only ports Telegram posts to
CHECK_SECONDS = 60.0


def new_secret() -> str:
    """43 URL-safe characters, 256 bits from the system's CSPRNG."""
    return secrets.token_urlsafe(32)


def url_problem(url: str) -> str | None:
    """Why Telegram would not post to `url`, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{url} is not a URL"
    if parts.scheme != "https" or not parts.hostname:
        return f"expected an https:// URL (Telegram posts only over HTTPS), not {url}"
    if parts.username or parts.password:
        return "the URL must not hold a user name or password"
    if port is not None and port not in TELEGRAM_PORTS:
        return f"Telegram posts only to ports 443, 80, 88 or 8443, not {port}"
    return None


@dataclass(frozen=True)
class WebhookConfig:
    url: str  # what Telegram posts to: the reverse proxy's https:// URL
    host: str  # where the bot listens, behind the proxy
    port: int
    secret: str = field(default_factory=new_secret, repr=False)

    def __post_init__(self) -> None:
        add_secret(self.secret)


class WebhookIntake:
    """The receiver, and the webhook registered with Telegram while it runs."""

    def __init__(
        self,
        bot: Bot,
        engine: Engine,
        clock: Clock,
        config: WebhookConfig,
        *,
        on_stored: Callable[[], None] = lambda: None,
        on_api_answer: Callable[[], None] = lambda: None,
    ) -> None:
        self.bot = bot
        self.config = config
        self.on_api_answer = on_api_answer
        self.receiver = WebhookReceiver(
            engine, clock, config.secret, config.host, config.port, on_stored=on_stored
        )
        self._stopping = False
        self._wake = asyncio.Event()
        self._quiet = QuietLog(log)
        self._last_error: tuple[object, object] | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def port(self) -> int:
        return self.receiver.port

    async def start(self) -> None:
        """Listen first, then ask Telegram to post: nothing it sends finds the door shut."""
        self._stopping = False
        await self.receiver.start()
        try:
            await self._register()
        except BaseException:
            await self.receiver.stop()
            raise

    async def stop(self) -> None:
        """Delete the webhook, then stop listening once what is being stored is answered."""
        self._stopping = True
        self._wake.set()
        try:
            await self.bot.delete_webhook(drop_pending_updates=False)
            log.info("webhook: deleted; updates wait at Telegram until the next start")
        except TelegramError as exc:
            log.warning("webhook: deleteWebhook failed (%s); it is still set at Telegram", exc)
        await self.receiver.stop()

    async def _register(self) -> None:
        try:
            await self.bot.set_webhook(
                self.config.url,
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=False,
                secret_token=self.config.secret,
            )
        except (BadRequest, InvalidToken) as exc:
            raise Failure(
                f"the Bot API refused the webhook {self.config.url}: {exc.message}. Check --webhook"
            ) from None
        self.on_api_answer()
        log.info(
            "webhook: Telegram posts updates to %s (the poller is not started)", self.config.url
        )

    async def watch_forever(self) -> None:
        """getWebhookInfo every CHECK_SECONDS: the webhook set again if it is not ours, what
        Telegram says about failed deliveries logged once each time it changes."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CHECK_SECONDS)
            if self._stopping:
                return
            try:
                await self.check()
            except TelegramError as exc:
                self._quiet.warning(
                    problem_key("getWebhookInfo", exc), "webhook: getWebhookInfo failed: %s", exc
                )

    async def check(self) -> None:
        info = await self.bot.get_webhook_info()
        self.on_api_answer()
        if info.url != self.config.url:
            log.warning(
                "webhook: Telegram has %s instead of %s; setting it again",
                info.url or "no webhook",
                self.config.url,
            )
            await self._register()
        error = (info.last_error_date, info.last_error_message)
        if info.last_error_date is not None and error != self._last_error:
            log.warning(
                "webhook: Telegram could not deliver at %s: %s (%d update(s) waiting)",
                info.last_error_date.isoformat(timespec="seconds"),
                info.last_error_message,
                info.pending_update_count,
            )
        self._last_error = error
