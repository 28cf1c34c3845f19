"""The outbox's two calls that return only a message id (bot/sending_bot.py), over HTTP on
127.0.0.1 against the emulator: what arrives is what PTB's own methods would send, the id
is the one Telegram gave, and Telegram's refusals are raised as PTB raises them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from telegram.error import BadRequest, RetryAfter, TelegramError

from bot.application import build_application
from bot.bot_api_transport import BotApiTransport
from bot.sandbox import BotApiEmulator
from bot.sending_bot import SendingBot

TOKEN = "4343434343:SENDING-secret-token"
ALICE = 7001
BUTTONS = json.dumps(
    {"inline_keyboard": [[{"text": "认领", "callback_data": "t:1"}]]}, ensure_ascii=False
)


@pytest.fixture
async def emu() -> AsyncIterator[BotApiEmulator]:
    async with BotApiEmulator(TOKEN) as emulator:
        emulator.add_user(ALICE, "Alice")
        yield emulator


def bot_at(url: str) -> SendingBot:
    return SendingBot(
        TOKEN,
        base_url=f"{url}/bot",
        base_file_url=f"{url}/file/bot",
        request=BotApiTransport(2),
        get_updates_request=BotApiTransport(1),
    )


def test_the_application_is_built_on_it() -> None:
    app = build_application(
        TOKEN, base_url="http://127.0.0.1:9/bot", base_file_url="http://127.0.0.1:9/file/bot"
    )
    assert isinstance(app.bot, SendingBot)


async def test_the_id_is_telegrams_and_the_message_arrives_whole(emu: BotApiEmulator) -> None:
    async with bot_at(emu.url) as bot:
        first = await bot.send_text(ALICE, "问题：厂房 3 号门 & 用电 = 100% ?", keyboard=BUTTONS)
        second = await bot.send_text(ALICE, "已收到", reply_to=first)
        gone = await bot.send_text(ALICE, "原消息已删除", reply_to=999_999)
    stored = emu.sent(ALICE)
    assert [m["message_id"] for m in stored] == [first, second, gone]
    assert len({first, second, gone}) == 3
    assert stored[0]["text"] == "问题：厂房 3 号门 & 用电 = 100% ?"
    assert stored[0]["reply_markup"]["inline_keyboard"][0][0] == {
        "text": "认领",
        "callback_data": "t:1",
    }
    assert stored[1]["reply_to_message"]["message_id"] == first
    assert "reply_to_message" not in stored[2]  # sent anyway, as a message of its own


async def test_an_edit_rewrites_the_message_and_its_buttons(emu: BotApiEmulator) -> None:
    async with bot_at(emu.url) as bot:
        sent = await bot.send_text(ALICE, "待认领", keyboard=BUTTONS)
        await bot.edit_text(ALICE, sent, "已认领")
    [stored] = emu.sent(ALICE)
    assert stored["text"] == "已认领" and stored["message_id"] == sent
    assert not stored.get("reply_markup")


async def test_refusals_are_raised_as_ptb_raises_them(emu: BotApiEmulator) -> None:
    async with bot_at(emu.url) as bot:
        emu.fail_next("sendMessage", 429, retry_after=7)
        with pytest.raises(RetryAfter) as limited:
            await bot.send_text(ALICE, "hello")
        assert limited.value.retry_after in (7, timedelta(seconds=7))
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_text(123, "nobody there")
        with pytest.raises(BadRequest, match="not found"):
            await bot.edit_text(ALICE, 999_999, "nothing there")
        assert await bot.send_text(ALICE, "after them") > 0
    assert [m["text"] for m in emu.sent(ALICE)] == ["after them"]


async def test_an_answer_without_a_message_id_is_an_error() -> None:
    async def odd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = json.dumps({"ok": True, "result": True}).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    server = await asyncio.start_server(odd, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = BotApiTransport(1)
    await transport.initialize()
    try:
        bot = SendingBot(
            TOKEN,
            base_url=f"http://127.0.0.1:{port}/bot",
            request=transport,
            get_updates_request=BotApiTransport(1),
        )
        with pytest.raises(TelegramError, match="without a message id"):
            await bot.send_text(ALICE, "hello")
    finally:
        await transport.shutdown()
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1.0)
