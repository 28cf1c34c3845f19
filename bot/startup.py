"""Before the bot starts: is the Bot API there (through the proxy, if one is set), and does
it accept the token? `getMe` is asked over plain httpx, so that every way it can fail is
told apart and named in one line, with the setting to change:

- the proxy cannot be reached (it is named),
- the Bot API cannot be reached: refused, no route, no answer, a name that does not resolve;
  with no proxy set the line says that Telegram needs one from mainland China,
- the proxy cannot reach the Bot API,
- TLS fails (an https:// URL to a plain-HTTP server, or an intercepting proxy),
- the token is rejected,
- something answers that is not a Bot API server (an HTML page, a login portal),
- the server fails (5xx) or asks to wait (429).

The token is never part of a message: the URL shown is the base URL, and the bot is named
by its public id (the part of the token before the colon).

A failure is a `Failure` with an exit code: `EXIT_CONFIG` (2) when a setting must be
changed, `EXIT_UNAVAILABLE` (3) when trying again later may work (`transient`). `retrying`
keeps trying a transient failure with backoff when asked to (`squadbot run --retry-start`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies, proxy_bypass

import httpx

from bot.logs import redact

log = logging.getLogger("squadbot")

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 15.0
FIRST_DELAY = 0.5  # the same backoff the inbox uses once running
MAX_DELAY = 30.0

NO_PROXY_HINT = (
    "No proxy is set: from mainland China Telegram is reachable only through one, so set "
    "SQUADBOT_PROXY_URL (socks5://HOST:PORT or http://HOST:PORT), or set "
    "SQUADBOT_TELEGRAM_API_URL to a Bot API server you can reach."
)

T = TypeVar("T")


class Failure(Exception):
    """A failure told in one line, with its exit code; `transient` when trying again later
    may work. Any command raises it; `bot.cli` prints it and exits with its code."""

    def __init__(self, message: str, *, code: int = EXIT_CONFIG) -> None:
        super().__init__(redact(message))
        self.message = redact(message)
        self.code = code

    @property
    def transient(self) -> bool:
        return self.code == EXIT_UNAVAILABLE


@dataclass(frozen=True)
class BotIdentity:
    id: int
    username: str
    first_name: str


@dataclass(frozen=True)
class Proxy:
    """The proxy the bot's requests take, and the variable it comes from."""

    url: str | None
    source: str = "SQUADBOT_PROXY_URL"


def proxy_for(api_url: str, proxy_url: str | None) -> Proxy:
    """SQUADBOT_PROXY_URL, else what HTTPS_PROXY / HTTP_PROXY / ALL_PROXY (and NO_PROXY) give
    for the Bot API's URL, as httpx would take them. Resolved once and handed to httpx
    explicitly, so the check at start and the running bot use the same proxy and a message
    can name the variable it came from."""
    if proxy_url:
        return Proxy(proxy_url)
    parts = urlsplit(api_url)
    found = getproxies()
    for key in (parts.scheme, "all"):
        url = found.get(key)
        if url and not proxy_bypass(parts.hostname or ""):
            return Proxy(url, f"{key.upper()}_PROXY")
    return Proxy(None)


def masked_url(url: str) -> str:
    """The URL with any password replaced by ***: proxies and databases carry them."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _network_reason(exc: BaseException, host: str) -> str:
    """What went wrong on the network, in a few words."""
    chain = _causes(exc)
    if any(isinstance(e, socket.gaierror) for e in chain):
        return f"the host name {host} does not resolve (DNS lookup failed)"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return f"no connection within {CONNECT_TIMEOUT:.0f}s"
    for e in chain:
        if isinstance(e, OSError) and e.strerror:
            return e.strerror.lower()
    return str(exc) or type(exc).__name__


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    for e in _causes(exc):
        if isinstance(e, ssl.SSLError):
            return e
    return None


class BotApiCheck:
    """One `getMe` through the configured proxy, each failure classified."""

    def __init__(
        self,
        token: str,
        api_url: str,
        proxy: Proxy | None = None,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self._token = token
        self.api_url = api_url.rstrip("/")
        self.proxy = proxy or Proxy(None)
        self.proxy_url = self.proxy.url
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.bot_id = token.partition(":")[0]

    @property
    def _api(self) -> str:
        return self.api_url

    @property
    def _proxy(self) -> str:
        return masked_url(self.proxy_url) if self.proxy_url else ""

    def _via(self) -> str:
        return f" through the proxy {self._proxy}" if self.proxy_url else ""

    def _check_settings(self) -> str:
        if self.proxy_url:
            return f"SQUADBOT_TELEGRAM_API_URL and {self.proxy.source}"
        return "SQUADBOT_TELEGRAM_API_URL"

    def _fix_proxy(self) -> str:
        if self.proxy.source == "SQUADBOT_PROXY_URL":
            return "correct SQUADBOT_PROXY_URL"
        return f"correct {self.proxy.source}, or set SQUADBOT_PROXY_URL (it takes precedence)"

    async def identity(self) -> BotIdentity:
        timeout = httpx.Timeout(
            self.read_timeout, connect=self.connect_timeout, pool=self.connect_timeout
        )
        url = f"{self.api_url}/bot{self._token}/getMe"
        try:
            # the proxy is resolved already (proxy_for): the environment is not read again
            async with httpx.AsyncClient(
                proxy=self.proxy_url, timeout=timeout, trust_env=False
            ) as client:
                response = await client.get(url)
        except Exception as exc:
            raise self._failed(exc) from None
        return self._answered(response)

    # -- the request did not get an answer --------------------------------------------------

    def _failed(self, exc: BaseException) -> Failure:
        host = urlsplit(self.api_url).hostname or self.api_url
        if isinstance(exc, httpx.ProxyError):
            return Failure(
                f"the proxy {self._proxy} ({self.proxy.source}) could not reach the Bot API at "
                f"{self._api}: {redact(str(exc)) or 'refused'}. Check that the proxy can reach "
                "Telegram, or SQUADBOT_TELEGRAM_API_URL.",
                code=EXIT_UNAVAILABLE,
            )
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) and self.proxy_url:
            proxy_host = urlsplit(self.proxy_url).hostname or self._proxy
            return Failure(
                f"cannot reach the proxy {self._proxy} ({self.proxy.source}): "
                f"{_network_reason(exc, proxy_host)}. Start the proxy, or "
                f"{self._fix_proxy()}.",
                code=EXIT_UNAVAILABLE,
            )
        tls = _tls_failure(exc)
        if tls is not None:
            reason = getattr(tls, "reason", None) or type(tls).__name__
            return Failure(
                f"the TLS handshake with {self._api}{self._via()} failed ({reason}): if the "
                "server speaks plain HTTP, SQUADBOT_TELEGRAM_API_URL must start with http://; "
                "if a proxy intercepts TLS, use another proxy.",
            )
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return Failure(
                f"cannot reach the Bot API at {self._api}: {_network_reason(exc, host)}. "
                + NO_PROXY_HINT,
                code=EXIT_UNAVAILABLE,
            )
        if isinstance(exc, httpx.TimeoutException):
            return Failure(
                f"the Bot API at {self._api}{self._via()} did not answer within "
                f"{self.read_timeout:.0f}s. Try again later, or check {self._check_settings()}.",
                code=EXIT_UNAVAILABLE,
            )
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return Failure(
                f"the connection to {self._api}{self._via()} was closed without an HTTP "
                f"answer ({redact(str(exc)) or type(exc).__name__}). Check "
                f"{self._check_settings()}.",
                code=EXIT_UNAVAILABLE,
            )
        return Failure(
            f"cannot ask the Bot API at {self._api}{self._via()}: {type(exc).__name__}: "
            f"{redact(str(exc))}. Check {self._check_settings()}.",
            code=EXIT_UNAVAILABLE,
        )

    # -- something answered ------------------------------------------------------------------

    def _answered(self, response: httpx.Response) -> BotIdentity:
        status = response.status_code
        body = _json(response)
        if 200 <= status < 300 and body is not None and body.get("ok") is True:
            result = body.get("result")
            if isinstance(result, dict) and isinstance(result.get("id"), int):
                return BotIdentity(
                    id=result["id"],
                    username=str(result.get("username") or ""),
                    first_name=str(result.get("first_name") or ""),
                )
        if body is not None and body.get("ok") is False and status in (401, 404):
            # Telegram answers 401 for a revoked or unknown token and 404 for a malformed one
            raise Failure(
                f"the Bot API at {self._api} rejected the token of bot {self.bot_id} "
                f"({_phrase(status)}): set SQUADBOT_TELEGRAM_TOKEN to the bot's current "
                "token from @BotFather.",
            )
        if body is not None and status == 429:
            wait = (body.get("parameters") or {}).get("retry_after")
            raise Failure(
                f"the Bot API at {self._api} asks to wait {wait}s before the next request "
                "(429 Too Many Requests). Try again later.",
                code=EXIT_UNAVAILABLE,
            )
        if status >= 500:
            said = ""
            if body is not None and isinstance(body.get("description"), str):
                said = f" ({' '.join(body['description'].split())[:200]})"
            who = (
                "the proxy could not reach it, or the server is failing"
                if self.proxy_url
                else "the server, or something in between, is failing"
            )
            raise Failure(
                f"the Bot API at {self._api}{self._via()} answered {_phrase(status)}{said}: "
                f"{who}. Try again later, or check {self._check_settings()}.",
                code=EXIT_UNAVAILABLE,
            )
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        what = (
            "an HTML page"
            if kind == "text/html" or response.content.lstrip()[:1] == b"<"
            else f"{kind or 'a body of no declared type'}"
        )
        if body is not None:
            what = "JSON of another shape"
        raise Failure(
            f"{self._api} is not a Bot API server{self._via()}: it answered "
            f"{_phrase(status)} with {what} instead of the Bot API's JSON. Check "
            f"{self._check_settings()}.",
        )


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def check_bot_api(
    token: str,
    api_url: str,
    proxy: Proxy | None = None,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
) -> BotIdentity:
    """The bot behind `token`, or Failure naming why it cannot be had."""
    check = BotApiCheck(
        token,
        api_url,
        proxy,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    return await check.identity()


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    *,
    retry: bool,
    stop: asyncio.Event | None = None,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
) -> T | None:
    """`attempt()`; with `retry`, a transient Failure is logged with the wait and tried
    again with backoff, until it succeeds or `stop` is set (then None)."""
    delay = first_delay
    tries = 0
    while True:
        try:
            return await attempt()
        except Failure as exc:
            if not (retry and exc.transient):
                raise
            tries += 1
            log.warning("%s Retrying in %.1fs (attempt %d).", exc.message, delay, tries + 1)
        if stop is None:
            await asyncio.sleep(delay)
        else:
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
            else:
                return None
        delay = min(delay * 2, max_delay)
