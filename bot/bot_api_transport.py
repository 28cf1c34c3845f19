"""How the bot's Bot API calls travel: HTTP/1.1 over aiohttp's keep-alive pool, behind
python-telegram-bot's own request interface (`BaseRequest`), so PTB still builds every
call, reads every answer and raises its errors (`RetryAfter` with the 429's `retry_after`,
`BadRequest` with the `description`, ...) exactly as with its stock `HTTPXRequest`.

Why not the stock one: every Bot API call is a full round of httpx, httpcore and anyio
(cancel scopes, locks, a URL parsed several times), about 0.9 ms of CPU on this machine
against about 0.2 ms here for the same call to the same server (docs/performance.md,
"The Bot API's transport"). A bot makes two or three calls an update (the answer, the
press's answer, its share of getUpdates), so the transport was the largest single cost of
an update. A SOCKS proxy is not spoken here: `bot/application.py` keeps the stock
`HTTPXRequest` (PTB's `socks` extra) for one.

Timeouts keep PTB's meaning: `connect` bounds opening a connection, `pool` waiting for a
free one, `read` the wait for each part of the answer; aiohttp has no separate bound on
sending the body, so the whole call is bounded by the sum of the four (a stalled upload
ends there). A timeout raises `TimedOut`, any other transport failure `NetworkError`,
naming the failure but never the URL (which holds the token).

Parameters travel as one JSON object, each value as PTB encodes it (a keyboard is a string
of JSON in it, as in a form): the Bot API reads such a body as it reads a form. Uploads go
as multipart/form-data."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

__all__ = ["BotApiTransport"]

log = logging.getLogger(__name__)

# an idle connection is closed after this long, before a server would close it under us
KEEP_ALIVE = 15.0
_JSON = {"Content-Type": "application/json"}


def json_body(value: object) -> bytes:
    """`value` as a JSON body, in UTF-8; a text holding a lone surrogate (which UTF-8
    cannot carry) goes as JSON escapes, as Telegram itself sends it."""
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value).encode("ascii")


def _seconds(value: ODVInput[float], default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


def _sum(*parts: float | None) -> float | None:
    return None if any(part is None for part in parts) else sum(p for p in parts if p)


class BotApiTransport(BaseRequest):
    """PTB's request interface on one aiohttp session, opened on first use in the running
    event loop and closed by `shutdown` (PTB's `Application.shutdown`)."""

    def __init__(
        self,
        connections: int = 16,
        *,
        proxy: str | None = None,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        if proxy is not None and not proxy.startswith(("http://", "https://")):
            raise ValueError("BotApiTransport speaks to HTTP(S) proxies only")
        self._connections = connections
        self._proxy = proxy
        self._read = read_timeout
        self._write = write_timeout
        self._connect = connect_timeout
        self._pool = pool_timeout
        self._media_write = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read

    def _opened(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._connections,
                limit_per_host=self._connections,
                keepalive_timeout=KEEP_ALIVE,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.USER_AGENT},
                trust_env=False,  # the proxy is given explicitly (bot/startup.py)
            )
        return self._session

    async def initialize(self) -> None:
        self._opened()

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        files = request_data is not None and request_data.contains_files
        read = _seconds(read_timeout, self._read)
        connect = _seconds(connect_timeout, self._connect)
        pool = _seconds(pool_timeout, self._pool)
        write = _seconds(write_timeout, self._media_write if files else self._write)
        timeout = aiohttp.ClientTimeout(
            total=_sum(pool, connect, write, read),
            connect=_sum(pool, connect),
            sock_connect=connect,
            sock_read=read,
        )
        body: Any = None
        headers: dict[str, str] | None = None
        fields = request_data.json_parameters if request_data is not None else {}
        if request_data is not None and files:
            body = _multipart(fields, request_data)
        elif fields:  # a JSON object of the values as PTB encodes them (the Bot API's
            # application/json): no percent-encoding of each byte of a Chinese text, which
            # as a form was an eighth of a sendMessage's CPU
            body = json_body(fields)
            headers = _JSON
        try:
            async with self._opened().request(
                method, url, data=body, headers=headers, timeout=timeout, proxy=self._proxy
            ) as response:
                payload = await response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as err:
            raise TimedOut(_named(err, url)) from None
        except (aiohttp.ClientError, OSError) as err:
            raise NetworkError(_named(err, url)) from None
        if log.isEnabledFor(logging.DEBUG):  # the method or file, never the token before it
            log.debug("Bot API %s %s: HTTP %d", method, url.rsplit("/", 1)[-1], response.status)
        return response.status, payload


def _multipart(fields: dict[str, str], request_data: RequestData) -> aiohttp.FormData:
    """The parameters as fields and the files as parts, as the Bot API takes uploads."""
    form = aiohttp.FormData(quote_fields=False)
    for name, value in fields.items():
        form.add_field(name, value)
    for name, (filename, content, mimetype) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename or name, content_type=mimetype)
    return form


def _named(err: BaseException, url: str) -> str:
    """What failed, without the URL: the cause is dropped from the raised error, since
    aiohttp's own messages may quote the URL (and with it the token)."""
    text = str(err).replace(url, "<Bot API URL>")
    name = (
        f"aiohttp.{type(err).__name__}"
        if isinstance(err, aiohttp.ClientError)
        else type(err).__name__
    )
    return f"{name}: {text}" if text else name
