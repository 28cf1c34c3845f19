"""The Bot API calls' transport (bot/bot_api_transport.py), over HTTP on 127.0.0.1: against
the emulator for Telegram's own answers (uploads, downloads, 429 with `retry_after`,
`description`), and against small servers of its own for what the emulator cannot do
(never answer, refuse connections, stand in for a proxy)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut
from telegram.request import HTTPXRequest

from bot.application import build_application
from bot.bot_api_transport import BotApiTransport
from bot.sandbox import BotApiEmulator
from bot.sandbox.records import TINY_PNG

TOKEN = "4242424242:TRANSPORT-secret-token"
SECRET = TOKEN.split(":", 1)[1]
ALICE = 7001


@pytest.fixture
async def emu() -> AsyncIterator[BotApiEmulator]:
    async with BotApiEmulator(TOKEN) as emulator:
        emulator.add_user(ALICE, "Alice")
        yield emulator


def bot_at(url: str, transport: BotApiTransport | None = None) -> Bot:
    return Bot(
        TOKEN,
        base_url=f"{url}/bot",
        base_file_url=f"{url}/file/bot",
        request=transport or BotApiTransport(4),
        get_updates_request=BotApiTransport(1),
    )


@contextlib.asynccontextmanager
async def opened(transport: BotApiTransport, url: str) -> AsyncIterator[Bot]:
    """A bot on `transport` at `url`, without `Bot.initialize` (which calls getMe)."""
    await transport.initialize()
    try:
        yield bot_at(url, transport)
    finally:
        await transport.shutdown()


Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(reply: Reply) -> AsyncIterator[str]:
    """A server on 127.0.0.1 running `reply` for each connection; yields its URL."""
    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1.0)


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in head[1:] if line)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return head[0], headers, body


def answer(writer: asyncio.StreamWriter, payload: object) -> None:
    body = json.dumps(payload).encode()
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def no_token_in(err: BaseException) -> None:
    """Neither the error nor anything printed with it names the token."""
    printed = "".join(traceback.format_exception(err))
    assert SECRET not in printed and SECRET not in str(err)


async def test_messages_buttons_and_edits_travel_as_telegram_takes_them(
    emu: BotApiEmulator,
) -> None:
    async with bot_at(emu.url) as bot:
        me = await bot.get_me()
        assert me.id == 4242424242
        sent = await bot.send_message(
            ALICE,
            "问题：厂房 3 号门 & 用电 = 100% ?",
            reply_markup=InlineKeyboardMarkup(
                [[InlineKeyboardButton("认领", callback_data="t:1")]]
            ),
        )
        assert sent.text == "问题：厂房 3 号门 & 用电 = 100% ?"
        edited = await bot.edit_message_text("已认领", chat_id=ALICE, message_id=sent.message_id)
        assert not isinstance(edited, bool) and edited.text == "已认领"
    [stored] = emu.sent(ALICE)
    assert stored["text"] == "已认领"
    assert sent.reply_markup is not None
    assert sent.reply_markup.inline_keyboard[0][0].callback_data == "t:1"


async def test_a_text_with_a_lone_surrogate_reaches_telegram_and_gets_its_answer(
    emu: BotApiEmulator,
) -> None:
    # UTF-8 cannot carry a lone surrogate: the body goes as JSON escapes instead of the
    # transport failing before the call (a NetworkError, which the outbox would retry for
    # ever), and Telegram's refusal comes back as a BadRequest; the pair it was half of is
    # one character, and goes through
    async with bot_at(emu.url) as bot:
        with pytest.raises(BadRequest, match=r"(?i)strings must be encoded in utf-8"):
            await bot.send_message(ALICE, "厂房 \ud83d 断电")
        assert emu.sent(ALICE) == []
        await bot.send_message(
            ALICE, "厂房 \ud83d\ude00 断电".encode("utf-16", "surrogatepass").decode("utf-16")
        )
    [stored] = emu.sent(ALICE)
    assert stored["text"] == "厂房 😀 断电"


async def test_uploads_and_downloads_keep_every_byte(emu: BotApiEmulator) -> None:
    data = bytes(range(256)) * 300  # 76.8 kB, every byte value
    async with bot_at(emu.url) as bot:
        message = await bot.send_document(
            ALICE, data, filename="台账 11月.xlsx", caption="月报 & 附件"
        )
        assert message.document is not None and message.caption == "月报 & 附件"
        assert message.document.file_name == "台账 11月.xlsx"
        file = await bot.get_file(message.document.file_id)
        assert bytes(await file.download_as_bytearray()) == data
        photo = await bot.send_photo(ALICE, TINY_PNG, caption="现场")
        assert photo.photo and photo.caption == "现场"


async def test_telegram_refusals_keep_their_description_and_retry_after(
    emu: BotApiEmulator,
) -> None:
    async with bot_at(emu.url) as bot:
        emu.fail_next("sendMessage", 429, retry_after=7)
        with pytest.raises(RetryAfter) as limited:
            await bot.send_message(ALICE, "hello")
        assert limited.value.retry_after in (7, timedelta(seconds=7))
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(123, "nobody there")


async def test_a_server_that_never_answers_is_a_timeout_that_names_no_token() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the caller gives up and closes the connection

    transport = BotApiTransport(2, read_timeout=0.3)
    async with serving(silent) as url, opened(transport, url) as bot:
        with pytest.raises(TimedOut) as timed_out:
            await bot.send_message(ALICE, "hello")
    no_token_in(timed_out.value)


async def test_a_refused_connection_is_a_network_error_that_names_no_token() -> None:
    async with serving(lambda _r, _w: asyncio.sleep(0)) as url:
        pass  # closed: nothing listens there any more
    async with opened(BotApiTransport(2), url) as bot:
        with pytest.raises(NetworkError) as refused:
            await bot.send_message(ALICE, "hello")
    assert not isinstance(refused.value, TimedOut)
    assert "aiohttp.ClientConnectorError" in str(refused.value)
    no_token_in(refused.value)


async def test_a_dropped_connection_is_a_network_error() -> None:
    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async with serving(rude) as url, opened(BotApiTransport(2), url) as bot:
        with pytest.raises(NetworkError) as dropped:
            await bot.send_message(ALICE, "hello")
    assert not isinstance(dropped.value, TimedOut)
    no_token_in(dropped.value)


async def test_an_http_proxy_carries_every_call() -> None:
    seen: list[str] = []
    bodies: list[dict[str, str]] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                line, headers, body = await read_request(reader)
                seen.append(line)
                assert headers["content-type"] == "application/json"
                fields = json.loads(body.decode("utf-8"))
                bodies.append(fields)
                answer(
                    writer,
                    {
                        "ok": True,
                        "result": {
                            "message_id": 1,
                            "date": 1700000000,
                            "chat": {"id": int(fields["chat_id"]), "type": "private"},
                            "text": "hi",
                        },
                    },
                )
                await writer.drain()

    async with serving(proxy) as proxy_url:
        api = "http://api.telegram.invalid"
        transport = BotApiTransport(2, proxy=proxy_url)
        await transport.initialize()
        try:
            bot = Bot(TOKEN, base_url=f"{api}/bot", request=transport)
            message = await bot.send_message(
                ALICE,
                "问题：3 号门 & 用电 = 100% ?",
                reply_markup=InlineKeyboardMarkup(
                    [[InlineKeyboardButton("认领", callback_data="t:1")]]
                ),
            )
        finally:
            await transport.shutdown()
    assert message.chat.id == ALICE
    # one JSON object, each value as PTB encodes it (the keyboard a string of JSON in it)
    [fields] = bodies
    assert fields["chat_id"] == str(ALICE) and fields["text"] == "问题：3 号门 & 用电 = 100% ?"
    assert json.loads(fields["reply_markup"]) == {
        "inline_keyboard": [[{"text": "认领", "callback_data": "t:1"}]]
    }
    # the absolute form: the proxy is asked for the Bot API's URL, never connected around
    assert seen == [f"POST {api}/bot{TOKEN}/sendMessage HTTP/1.1"]


async def test_the_transport_opens_again_after_shutdown(emu: BotApiEmulator) -> None:
    transport = BotApiTransport(2)
    bot = bot_at(emu.url, transport)
    async with bot:
        await bot.send_message(ALICE, "one")
    async with bot:  # PTB initializes a request again after its shutdown
        await bot.send_message(ALICE, "two")
    assert [m["text"] for m in emu.sent(ALICE)] == ["one", "two"]


def test_a_socks_proxy_keeps_the_stock_httpx_request() -> None:
    url = "http://127.0.0.1:9"
    app = build_application(
        TOKEN, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot", proxy="socks5://127.0.0.1:1"
    )
    assert isinstance(app.bot.request, HTTPXRequest)
    direct = build_application(TOKEN, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot")
    assert isinstance(direct.bot.request, BotApiTransport)
    with pytest.raises(ValueError):
        BotApiTransport(proxy="socks5://127.0.0.1:1")
