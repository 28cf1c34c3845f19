"""The sandbox Bot API emulator, exercised over real HTTP with httpx and with PTB's Bot.

The end-to-end tests trust the emulator to behave like Telegram, so its shapes and error
descriptions are checked here through the same client library the bot uses.

Long because every Bot API method the bot uses is checked for its real shape.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from telegram import (
    Bot,
    CallbackQuery,
    InaccessibleMessage,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    ReplyParameters,
    Update,
)
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from bot.sandbox import TINY_PNG, BotApiEmulator, EmulatorThread, RateLimit, utf16_len

TOKEN = "4242424242:TEST-token"
ALICE = 1001
BOB = 1002
GROUP = -4001


@pytest.fixture(autouse=True)
def _time_periods_as_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt in to PTB's future RetryAfter.retry_after type instead of its deprecation warning."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


def _populate(emu: BotApiEmulator) -> None:
    emu.add_user(ALICE, "Alice", "Wang", username="alice")
    emu.add_user(BOB, "波", username="bob", language_code="zh-hans")
    emu.add_group(GROUP, "Squad A", [ALICE, BOB])


@pytest.fixture
async def emu() -> AsyncIterator[BotApiEmulator]:
    async with BotApiEmulator(TOKEN) as emulator:
        _populate(emulator)
        yield emulator


def _bot_for(emulator: BotApiEmulator, token: str = TOKEN) -> Bot:
    return Bot(token, base_url=f"{emulator.url}/bot", base_file_url=f"{emulator.url}/file/bot")


@pytest.fixture
async def bot(emu: BotApiEmulator) -> AsyncIterator[Bot]:
    async with _bot_for(emu) as ptb_bot:
        yield ptb_bot


@pytest.fixture
async def http(emu: BotApiEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{emu.url}/bot{TOKEN}") as client:
        yield client


def _keyboard(*buttons: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(t, callback_data=d) for t, d in buttons]])


def _retry_seconds(exc: RetryAfter) -> float:
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


# -- transport and routing ----------------------------------------------------------------


async def test_get_me_over_httpx_and_ptb(emu: BotApiEmulator, http: httpx.AsyncClient) -> None:
    response = await http.get("/getMe")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["result"]["username"] == "squadbot_sandbox_bot"
    assert body["result"]["id"] == 4242424242
    assert body["result"]["is_bot"] is True

    async with _bot_for(emu) as ptb_bot:
        me = await ptb_bot.get_me()
    assert me.username == "squadbot_sandbox_bot"
    assert emu.url == f"http://127.0.0.1:{emu.port}"


async def test_method_names_are_case_insensitive_and_recorded(
    emu: BotApiEmulator, http: httpx.AsyncClient
) -> None:
    response = await http.post("/SENDMESSAGE", data={"chat_id": ALICE, "text": "hi"})
    assert response.json()["result"]["text"] == "hi"
    assert emu.calls[-1] == ("sendMessage", {"chat_id": str(ALICE), "text": "hi"}, 200)
    assert emu.stats["requests"] == 1
    assert emu.stats["sent_messages"] == 1


async def test_json_and_query_string_bodies(http: httpx.AsyncClient) -> None:
    markup = {"inline_keyboard": [[{"text": "认领", "callback_data": "claim:7"}]]}
    sent = await http.post(
        "/sendMessage", json={"chat_id": GROUP, "text": "新工单", "reply_markup": markup}
    )
    result = sent.json()["result"]
    assert result["chat"] == {"id": GROUP, "type": "group", "title": "Squad A"}
    assert result["reply_markup"] == markup
    action = await http.get("/sendChatAction", params={"chat_id": ALICE, "action": "typing"})
    assert action.json() == {"ok": True, "result": True}


async def test_wrong_token_is_401_and_unknown_method_404(emu: BotApiEmulator) -> None:
    async with httpx.AsyncClient(base_url=emu.url) as client:
        wrong = await client.post("/bot1:nope/getMe")
        assert wrong.status_code == 401
        assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        unknown = await client.post(f"/bot{TOKEN}/sendTelepathy")
        assert unknown.status_code == 404
        assert unknown.json()["description"] == "Not Found"
        assert (await client.get(f"/file/bot{TOKEN}/photos/none.jpg")).status_code == 404

    with pytest.raises(InvalidToken):
        async with _bot_for(emu, token="1:wrong"):
            pass


async def test_keep_alive_serves_many_requests_on_one_connection(
    http: httpx.AsyncClient,
) -> None:
    for n in range(5):
        response = await http.post("/sendMessage", data={"chat_id": ALICE, "text": f"n{n}"})
        assert response.headers["connection"] == "keep-alive"
        assert response.json()["result"]["message_id"] == n + 1


# -- getUpdates -------------------------------------------------------------------------------


async def test_long_poll_returns_when_an_update_arrives(emu: BotApiEmulator, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30, read_timeout=40))
    await emu.wait_for(lambda: emu.waiting_polls == 1)
    assert not poll.done()

    sent = emu.send_text(ALICE, "水管漏水了")
    updates = await asyncio.wait_for(poll, timeout=10)  # far below the 30 s long-poll

    assert len(updates) == 1
    message = updates[0].message
    assert message is not None
    assert message.text == "水管漏水了"
    assert message.message_id == sent["message_id"]
    assert message.from_user is not None and message.from_user.username == "alice"
    assert message.chat.type == "private"


async def test_long_poll_times_out_with_empty_list(emu: BotApiEmulator, bot: Bot) -> None:
    assert await bot.get_updates(timeout=dtm.timedelta(seconds=0.2)) == ()
    assert emu.calls[-1][2] == 200


async def test_offset_confirms_updates(emu: BotApiEmulator, bot: Bot) -> None:
    for text in ("one", "two", "three"):
        emu.send_text(ALICE, text)
    first = await bot.get_updates()
    assert [u.message.text for u in first if u.message] == ["one", "two", "three"]
    assert [u.update_id for u in first] == sorted(u.update_id for u in first)

    # Not confirmed yet: a crash here would see them again.
    assert len(await bot.get_updates()) == 3
    assert len(await bot.get_updates(offset=first[1].update_id)) == 2
    assert emu.pending_updates() == 2
    assert await bot.get_updates(offset=first[-1].update_id + 1) == ()
    assert emu.pending_updates() == 0


async def test_negative_offset_and_limit(emu: BotApiEmulator, bot: Bot) -> None:
    for n in range(5):
        emu.send_text(ALICE, f"m{n}")
    assert [u.message.text for u in await bot.get_updates(limit=2) if u.message] == ["m0", "m1"]
    last = await bot.get_updates(offset=-1)
    assert [u.message.text for u in last if u.message] == ["m4"]
    assert emu.pending_updates() == 1


async def test_second_poller_gets_conflict(emu: BotApiEmulator, http: httpx.AsyncClient) -> None:
    first = asyncio.create_task(http.post("/getUpdates", data={"timeout": 30}, timeout=40))
    await emu.wait_for(lambda: emu.waiting_polls == 1)
    async with httpx.AsyncClient(base_url=f"{emu.url}/bot{TOKEN}") as other:
        second = await other.post("/getUpdates", data={"timeout": 0})
    assert second.json() == {"ok": True, "result": []}
    older = await asyncio.wait_for(first, timeout=10)
    assert older.status_code == 409
    assert older.json()["description"].startswith("Conflict: terminated by other getUpdates")


async def test_webhook_blocks_polling_until_deleted(emu: BotApiEmulator, bot: Bot) -> None:
    emu.send_text(ALICE, "hello")
    assert await bot.set_webhook("https://example.invalid/hook")
    assert (await bot.get_webhook_info()).url == "https://example.invalid/hook"
    with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
        await bot.get_updates()
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert emu.pending_updates() == 0
    assert (await bot.get_webhook_info()).url == ""


async def test_raw_update_keeps_its_id_for_replays(emu: BotApiEmulator, bot: Bot) -> None:
    sent = emu.send_text(ALICE, "original")
    [delivered] = await bot.get_updates()
    replay = delivered.to_dict()
    assert emu.send_raw_update(replay) == delivered.update_id
    assert emu.send_raw_update({"message": {**sent, "text": "new"}}) == delivered.update_id + 1
    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [
        delivered.update_id,
        delivered.update_id,
        delivered.update_id + 1,
    ]


# -- messages, edits, callbacks ---------------------------------------------------------------


async def test_send_edit_press_answer_round_trip(emu: BotApiEmulator, bot: Bot) -> None:
    ticket = await bot.send_message(
        GROUP, "工单 #7：漏水", reply_markup=_keyboard(("认领", "claim:7"), ("转派", "pass:7"))
    )
    assert isinstance(ticket, Message)
    assert ticket.from_user is not None and ticket.from_user.is_bot
    assert isinstance(ticket.reply_markup, InlineKeyboardMarkup)
    assert ticket.reply_markup.inline_keyboard[0][1].callback_data == "pass:7"

    query_id = emu.press(BOB, GROUP, ticket.message_id, "claim:7")
    [update] = await bot.get_updates()
    query = update.callback_query
    assert isinstance(query, CallbackQuery)
    assert query.id == query_id
    assert query.data == "claim:7"
    assert query.from_user.id == BOB
    assert isinstance(query.message, Message)
    assert query.message.message_id == ticket.message_id
    assert query.message.chat.id == GROUP

    assert await query.answer("已认领")
    assert emu.callback_answers == [
        {"query_id": query_id, "text": "已认领", "show_alert": False, "url": None, "user_id": BOB}
    ]
    edited = await query.edit_message_text("工单 #7：漏水（波 已认领）")
    assert isinstance(edited, Message)
    assert edited.text == "工单 #7：漏水（波 已认领）"
    assert edited.reply_markup is None  # editing text without markup drops the keyboard
    assert edited.edit_date is not None

    [record] = emu.sent(GROUP)
    assert record["text"] == "工单 #7：漏水（波 已认领）"
    assert "reply_markup" not in record
    assert [e["method"] for e in record["edits"]] == ["editMessageText"]
    assert record["edits"][0]["old"]["text"] == "工单 #7：漏水"

    with pytest.raises(BadRequest, match="Query is too old"):
        await query.answer("again")


async def test_edit_reply_markup_and_not_modified(emu: BotApiEmulator, bot: Bot) -> None:
    message = await bot.send_message(ALICE, "选一个", reply_markup=_keyboard(("A", "a")))
    changed = await bot.edit_message_reply_markup(
        ALICE, message.message_id, reply_markup=_keyboard(("B", "b"))
    )
    assert isinstance(changed, Message)
    assert changed.reply_markup == _keyboard(("B", "b"))
    with pytest.raises(BadRequest) as raised:
        await bot.edit_message_text(
            "选一个", ALICE, message.message_id, reply_markup=_keyboard(("B", "b"))
        )
    assert "exactly the same as a current content and reply markup" in raised.value.message
    assert emu.calls[-1][2] == 400


async def test_replies_and_reply_parameters(emu: BotApiEmulator, bot: Bot) -> None:
    question = emu.send_text(ALICE, "/report 停电", chat_id=GROUP)
    assert question["entities"] == [{"type": "bot_command", "offset": 0, "length": 7}]
    answer = await bot.send_message(
        GROUP, "收到", reply_parameters=ReplyParameters(question["message_id"])
    )
    assert answer.reply_to_message is not None
    assert answer.reply_to_message.text == "/report 停电"

    follow_up = emu.send_text(BOB, "我来处理", chat_id=GROUP, reply_to=answer.message_id)
    assert follow_up["reply_to_message"]["message_id"] == answer.message_id
    assert "reply_to_message" not in follow_up["reply_to_message"]  # only one level deep

    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(GROUP, "?", reply_parameters=ReplyParameters(999))
    lenient = await bot.send_message(
        GROUP, "ok", reply_parameters=ReplyParameters(999, allow_sending_without_reply=True)
    )
    assert lenient.reply_to_message is None


async def test_html_parse_mode(bot: Bot) -> None:
    message = await bot.send_message(
        ALICE, '<b>工单</b> &lt;7&gt; <a href="https://x.test/t/7">查看</a>', parse_mode="HTML"
    )
    assert message.text == "工单 <7> 查看"
    assert [(e.type, e.offset, e.length) for e in message.entities] == [
        ("bold", 0, 2),
        ("text_link", 7, 2),
    ]
    with pytest.raises(BadRequest, match='unsupported start tag "br"'):
        await bot.send_message(ALICE, "a<br>b", parse_mode="HTML")
    with pytest.raises(BadRequest, match="end tag"):
        await bot.send_message(ALICE, "<b>unclosed", parse_mode="HTML")


async def test_location_copy_chat_and_commands(emu: BotApiEmulator, bot: Bot) -> None:
    location = await bot.send_location(GROUP, latitude=31.23, longitude=121.47)
    assert location.location is not None and location.location.latitude == 31.23
    original = emu.send_text(ALICE, "请转发给班组")
    copied = await bot.copy_message(GROUP, from_chat_id=ALICE, message_id=original["message_id"])
    assert emu.sent(GROUP)[-1]["text"] == "请转发给班组"
    assert copied.message_id == emu.sent(GROUP)[-1]["message_id"]

    chat = await bot.get_chat(GROUP)
    assert chat.title == "Squad A"
    assert chat.type == "group"

    assert await bot.set_my_commands([("start", "开始"), ("report", "报告问题")])
    assert [c.command for c in await bot.get_my_commands()] == ["start", "report"]
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()
    assert await bot.set_chat_menu_button()
    assert await bot.send_chat_action(ALICE, "typing")
    assert await bot.close()
    assert await bot.log_out()


async def test_caption_edit_delete_and_user_edit(emu: BotApiEmulator, bot: Bot) -> None:
    photo = await bot.send_photo(GROUP, photo=TINY_PNG, caption="旧说明")
    edited = await bot.edit_message_caption(GROUP, photo.message_id, caption="新说明")
    assert isinstance(edited, Message) and edited.caption == "新说明"
    with pytest.raises(BadRequest, match="no text in the message"):
        await bot.edit_message_text("x", GROUP, photo.message_id)
    assert await bot.delete_message(GROUP, photo.message_id)
    assert emu.sent(GROUP)[-1]["deleted"] is True
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(GROUP, photo.message_id)

    typed = emu.send_text(BOB, "水压低", chat_id=GROUP)
    emu.edit_text_by_user(BOB, GROUP, typed["message_id"], "水压很低")
    _, update = await bot.get_updates()
    assert update.edited_message is not None
    assert update.edited_message.text == "水压很低"
    assert update.edited_message.message_id == typed["message_id"]


async def test_pin_of_a_message_the_bot_cannot_see(emu: BotApiEmulator, bot: Bot) -> None:
    service = emu.pin_inaccessible(GROUP, ALICE, old_message_id=7)
    [update] = await bot.get_updates()
    message = update.message
    assert message is not None and message.from_user is not None
    assert (message.from_user.id, message.chat.id) == (ALICE, GROUP)
    assert message.message_id == service["message_id"] > 7
    assert isinstance(message.pinned_message, InaccessibleMessage)
    assert message.pinned_message.message_id == 7
    assert message.pinned_message.chat.id == GROUP
    assert service["pinned_message"]["date"] == 0
    assert emu.transcript()[-1] == "[Squad A] Alice Wang: [pinned message 7]"


# -- files ------------------------------------------------------------------------------------


async def test_user_photo_download_and_resend_by_file_id(emu: BotApiEmulator, bot: Bot) -> None:
    payload = b"\xff\xd8\xff\xe0 fake jpeg \r\n\r\n bytes"
    sent = emu.send_photo(ALICE, caption="漏水位置", data=payload)
    [update] = await bot.get_updates()
    assert update.message is not None
    assert update.message.caption == "漏水位置"
    largest = update.message.photo[-1]
    assert largest.file_id == sent["photo"][-1]["file_id"]

    file = await largest.get_file()
    assert file.file_path is not None and file.file_path.endswith(".jpg")
    assert bytes(await file.download_as_bytearray()) == payload

    resent = await bot.send_photo(GROUP, photo=largest.file_id, caption="转给班组")
    assert resent.photo[-1].file_id == largest.file_id
    assert resent.caption == "转给班组"


async def test_bot_uploads_photo_and_document(emu: BotApiEmulator, bot: Bot) -> None:
    photo = await bot.send_photo(ALICE, photo=TINY_PNG)
    assert len(photo.photo) == 2
    photo_file = await bot.get_file(photo.photo[-1].file_id)
    assert bytes(await photo_file.download_as_bytearray()) == TINY_PNG

    report = "月度报告\n".encode() * 100
    document = await bot.send_document(
        GROUP, document=InputFile(report, filename="report.csv"), caption="本月"
    )
    assert document.document is not None
    assert document.document.file_name == "report.csv"
    assert document.document.file_size == len(report)
    downloaded = await (await document.document.get_file()).download_as_bytearray()
    assert bytes(downloaded) == report
    assert emu.sent(GROUP)[-1]["document"]["file_name"] == "report.csv"
    assert emu.calls[-3][1]["document"] == f"<upload report.csv, {len(report)} bytes>"


async def test_multipart_with_non_ascii_filename(emu: BotApiEmulator, bot: Bot) -> None:
    document = await bot.send_document(
        ALICE, document=InputFile(b"\x00\x01binary\r\n--x", filename='整改 通知".pdf')
    )
    assert document.document is not None
    assert document.document.file_name is not None
    assert document.document.file_name.startswith("整改 通知")
    assert emu.file_bytes(document.document.file_id) == b"\x00\x01binary\r\n--x"


async def test_user_document_location_and_sticker(emu: BotApiEmulator, bot: Bot) -> None:
    emu.send_document(BOB, "合同.pdf", b"%PDF-1.4", "application/pdf", chat_id=GROUP)
    emu.send_location(BOB, 31.2, 121.5)
    emu.send_sticker(BOB)
    emu.send_photo(ALICE, chat_id=GROUP, caption="回复合同", reply_to=1)
    document, location, sticker, reply = (u.message for u in await bot.get_updates())
    assert reply is not None and reply.reply_to_message is not None
    assert reply.reply_to_message.document is not None
    assert document is not None and document.document is not None
    assert document.document.file_name == "合同.pdf"
    assert document.document.mime_type == "application/pdf"
    assert location is not None and location.location is not None
    assert location.location.longitude == 121.5
    assert sticker is not None and sticker.sticker is not None
    assert emu.file_bytes(document.document.file_id) == b"%PDF-1.4"


# -- Telegram's errors ------------------------------------------------------------------------


async def test_text_errors(bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"^Message text is empty$"):
        await bot.send_message(ALICE, "  ")
    with pytest.raises(BadRequest, match=r"^Message is too long$"):
        await bot.send_message(ALICE, "字" * 4097)
    assert (await bot.send_message(ALICE, "字" * 4096)).text == "字" * 4096
    # Counted in UTF-16 code units: each of these emoji is two.
    assert utf16_len("😀") == 2
    assert await bot.send_message(ALICE, "😀" * 2048)
    with pytest.raises(BadRequest, match=r"^Message is too long$"):
        await bot.send_message(ALICE, "😀" * 2049)
    with pytest.raises(BadRequest, match=r"^Message caption is too long$"):
        await bot.send_photo(ALICE, photo=TINY_PNG, caption="x" * 1025)


async def test_chat_errors(emu: BotApiEmulator, bot: Bot, http: httpx.AsyncClient) -> None:
    with pytest.raises(BadRequest, match=r"^Chat not found$"):
        await bot.send_message(777, "hello")
    emu.block(ALICE)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(ALICE, "hello")
    raw = await http.post("/sendMessage", data={"chat_id": ALICE, "text": "hello"})
    assert raw.status_code == 403
    assert raw.json() == {
        "ok": False,
        "error_code": 403,
        "description": "Forbidden: bot was blocked by the user",
    }
    emu.unblock(ALICE)
    assert await bot.send_message(ALICE, "hello")


async def test_edit_errors(emu: BotApiEmulator, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"^Message to edit not found$"):
        await bot.edit_message_text("x", ALICE, 12345)
    user_message = emu.send_text(ALICE, "mine")
    with pytest.raises(BadRequest, match="can't be edited"):
        await bot.edit_message_text("x", ALICE, user_message["message_id"])
    message = await bot.send_message(ALICE, "same")
    with pytest.raises(BadRequest, match=r"^Message is not modified: specified new message"):
        await bot.edit_message_text("same", ALICE, message.message_id)


async def test_button_data_and_file_errors(http: httpx.AsyncClient, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"^Button_data_invalid$"):
        await bot.send_message(ALICE, "x", reply_markup=_keyboard(("A", "a" * 65)))
    assert await bot.send_message(ALICE, "x", reply_markup=_keyboard(("A", "a" * 64)))
    raw = await http.post(
        "/sendMessage",
        data={
            "chat_id": ALICE,
            "text": "x",
            "reply_markup": json.dumps(
                {"inline_keyboard": [[{"text": "A", "callback_data": "数" * 22}]]}
            ),
        },
    )
    assert raw.json()["description"] == "Bad Request: BUTTON_DATA_INVALID"  # 66 bytes

    with pytest.raises(BadRequest, match=r"^Wrong file identifier/http url specified$"):
        await bot.get_file("no-such-file")
    with pytest.raises(BadRequest, match=r"^Wrong file identifier/http url specified$"):
        await bot.send_photo(ALICE, photo="no-such-file")
    with pytest.raises(BadRequest, match=r"^Query is too old and response timeout expired"):
        await bot.answer_callback_query("12345")


async def test_old_callback_query_expires() -> None:
    async with BotApiEmulator(TOKEN, callback_query_ttl=0.0) as emulator:
        _populate(emulator)
        async with _bot_for(emulator) as ptb_bot:
            message = await ptb_bot.send_message(ALICE, "x", reply_markup=_keyboard(("A", "a")))
            query_id = emulator.press(ALICE, ALICE, message.message_id, "a")
            with pytest.raises(BadRequest, match="Query is too old"):
                await ptb_bot.answer_callback_query(query_id)


async def test_press_requires_an_existing_button(emu: BotApiEmulator, bot: Bot) -> None:
    message = await bot.send_message(ALICE, "x", reply_markup=_keyboard(("A", "a")))
    with pytest.raises(ValueError, match="no button"):
        emu.press(ALICE, ALICE, message.message_id, "forged")
    assert emu.press(ALICE, ALICE, message.message_id, "forged", strict=False)
    with pytest.raises(ValueError, match="unknown chat"):
        emu.send_text(ALICE, "hi", chat_id=-999)
    emu.add_group(-999, "Other", [BOB])
    with pytest.raises(ValueError, match="not a member"):
        emu.send_text(ALICE, "hi", chat_id=-999)


# -- flood limits and injected faults ---------------------------------------------------------


async def test_private_chat_flood_limit_gives_retry_after() -> None:
    async with BotApiEmulator(
        TOKEN, flood_limits=True, private_limit=RateLimit(3, 60.0)
    ) as emulator:
        _populate(emulator)
        async with _bot_for(emulator) as ptb_bot:
            for n in range(3):
                await ptb_bot.send_message(ALICE, f"burst {n}")
            with pytest.raises(RetryAfter) as raised:
                await ptb_bot.send_message(ALICE, "one too many")
            assert 1 <= _retry_seconds(raised.value) <= 60
            assert await ptb_bot.send_message(BOB, "another chat is fine")
        async with httpx.AsyncClient() as client:
            raw = await client.post(
                f"{emulator.url}/bot{TOKEN}/sendMessage", data={"chat_id": ALICE, "text": "x"}
            )
    body = raw.json()
    assert raw.status_code == 429
    retry_after = body["parameters"]["retry_after"]
    assert body["description"] == f"Too Many Requests: retry after {retry_after}"
    assert emulator.stats["http_429"] == 2
    assert emulator.stats["sent_messages"] == 4
    assert len(emulator.sent(ALICE)) == 3


async def test_group_and_overall_flood_limits() -> None:
    async with BotApiEmulator(
        TOKEN,
        flood_limits=True,
        group_limit=RateLimit(2, 60.0),
        overall_limit=RateLimit(3, 60.0),
    ) as emulator:
        _populate(emulator)
        async with _bot_for(emulator) as ptb_bot:
            await ptb_bot.send_message(GROUP, "1")
            await ptb_bot.send_message(GROUP, "2")
            with pytest.raises(RetryAfter):
                await ptb_bot.send_message(GROUP, "3")
            await ptb_bot.send_message(ALICE, "private")
            with pytest.raises(RetryAfter):
                await ptb_bot.send_message(BOB, "over the overall limit")


async def test_a_slow_telegram_answers_sending_late(emu: BotApiEmulator, bot: Bot) -> None:
    emu.answer_sending_after(0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = await asyncio.gather(*(bot.send_message(ALICE, f"m{n}") for n in range(3)))
    took = loop.time() - started
    assert 0.3 <= took < 0.9  # each answered late, side by side rather than one after another
    assert [m.text for m in sent] == ["m0", "m1", "m2"]
    started = loop.time()
    assert await bot.get_me()  # not a sending method: answered at once
    assert loop.time() - started < 0.3
    emu.answer_sending_after(0)
    started = loop.time()
    await bot.send_message(ALICE, "quick again")
    assert loop.time() - started < 0.3


async def test_fail_next_injects_faults(emu: BotApiEmulator, bot: Bot) -> None:
    emu.fail_next("sendMessage")
    with pytest.raises(NetworkError, match="Internal Server Error"):
        await bot.send_message(ALICE, "first try")
    assert emu.sent(ALICE) == []
    assert (await bot.send_message(ALICE, "second try")).text == "second try"

    emu.fail_next("*", status=502, count=2)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_photo(ALICE, photo=TINY_PNG)
    with pytest.raises(NetworkError):
        await bot.send_message(ALICE, "x")
    assert await bot.get_me()  # not a sending method: unaffected

    emu.fail_next("sendmessage", status=429, retry_after=7)
    with pytest.raises(RetryAfter) as raised:
        await bot.send_message(ALICE, "x")
    assert _retry_seconds(raised.value) == 7

    emu.fail_next("sendMessage", applied=True)
    with pytest.raises(NetworkError):
        await bot.send_message(ALICE, "delivered, but the answer is lost")
    assert emu.sent(ALICE)[-1]["text"] == "delivered, but the answer is lost"
    assert emu.stats["http_5xx"] == 4
    assert emu.stats["http_429"] == 1


async def test_fail_next_can_aim_at_one_chat(emu: BotApiEmulator, bot: Bot) -> None:
    emu.fail_next("sendMessage", status=429, retry_after=5, count=2, chat_id=ALICE)
    assert (await bot.send_message(BOB, "others pass")).text == "others pass"
    for _ in range(2):
        with pytest.raises(RetryAfter):
            await bot.send_message(ALICE, "held")
    assert (await bot.send_message(ALICE, "and then through")).text == "and then through"
    assert emu.stats["http_429"] == 2


async def test_fail_at_random_is_seeded_and_counts_what_it_injected(
    emu: BotApiEmulator, bot: Bot
) -> None:
    async def run(seed: int) -> list[str]:
        record = emu.fail_at_random(0.3, [(502, False), (500, True)], seed=seed)
        outcomes = []
        for n in range(60):
            try:
                await bot.send_message(ALICE, f"m{n}")
                outcomes.append("ok")
            except NetworkError as exc:
                outcomes.append(str(exc))
        assert await bot.get_me()  # not a method it fails
        emu.stop_failing()
        assert sum(record.injected.values()) == 60 - outcomes.count("ok")
        return outcomes

    first, again, other = await run(1), await run(1), await run(2)
    assert first == again and first != other
    assert 5 <= 60 - first.count("ok") <= 35
    # a delivered message whose answer was lost is in the chat all the same
    delivered = [m["text"] for m in emu.sent(ALICE)]
    assert len(delivered) == 3 * 60 - sum(
        1 for outcome in first + again + other if "Bad Gateway" in outcome
    )
    assert (await bot.send_message(ALICE, "after")).text == "after"


# -- waiting and transcripts ------------------------------------------------------------------


async def test_wait_for_messages_returns_when_sent(emu: BotApiEmulator, bot: Bot) -> None:
    async def send_later() -> None:
        await asyncio.sleep(0.01)
        await bot.send_message(GROUP, "a")
        await bot.send_message(GROUP, "b")

    task = asyncio.create_task(send_later())
    messages = await emu.wait_for_messages(GROUP, 2)
    await task
    assert [m["text"] for m in messages] == ["a", "b"]

    with pytest.raises(TimeoutError, match="transcript tail"):
        await emu.wait_for(lambda: len(emu.sent()) > 2, timeout=0.1)


async def test_wait_for_can_recheck_outside_state(emu: BotApiEmulator) -> None:
    outside = {"done": False}

    async def finish_quietly() -> None:
        await asyncio.sleep(0.01)
        outside["done"] = True  # no emulator activity to wake the waiter

    task = asyncio.create_task(finish_quietly())
    await emu.wait_for(lambda: outside["done"], timeout=10, recheck=0.01)
    await task


async def test_transcript_reads_like_the_chat(emu: BotApiEmulator, bot: Bot) -> None:
    emu.send_text(ALICE, "/report 空调坏了", chat_id=GROUP)
    emu.send_photo(ALICE, chat_id=GROUP, caption="现场")
    ticket = await bot.send_message(GROUP, "工单 #1", reply_markup=_keyboard(("认领", "c:1")))
    query_id = emu.press(BOB, GROUP, ticket.message_id, "c:1")
    await bot.answer_callback_query(query_id, "已认领")
    await bot.edit_message_text("工单 #1 已认领", GROUP, ticket.message_id)
    assert emu.transcript() == [
        "[Squad A] Alice Wang: /report 空调坏了",
        "[Squad A] Alice Wang: [photo] 现场",
        "[Squad A] SquadBot: 工单 #1 [认领]",
        "[Squad A] 波 pressed [认领]",
        "  (toast to 波) 已认领",
        "[Squad A] SquadBot (edited): 工单 #1 已认领",
    ]


async def test_privacy_mode_hides_group_chatter() -> None:
    async with BotApiEmulator(TOKEN, privacy_mode=True) as emulator:
        _populate(emulator)
        emulator.send_text(ALICE, "just chatting", chat_id=GROUP)
        emulator.send_text(ALICE, "/report", chat_id=GROUP)
        emulator.send_text(ALICE, "hey @squadbot_sandbox_bot", chat_id=GROUP)
        emulator.send_text(ALICE, "private is always seen")
        assert emulator.pending_updates() == 3
        assert len(emulator.transcript()) == 4


# -- running the real Application against it --------------------------------------------------


async def test_application_polls_and_answers(emu: BotApiEmulator) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(
            "欢迎", reply_markup=_keyboard(("报告问题", "report"))
        )

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.callback_query is not None
        await update.callback_query.answer()
        await update.callback_query.edit_message_text("请描述问题")

    application = (
        Application.builder()
        .token(TOKEN)
        .base_url(f"{emu.url}/bot")
        .base_file_url(f"{emu.url}/file/bot")
        .build()
    )
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CallbackQueryHandler(pressed))
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0.0, timeout=1)
        try:
            emu.send_text(ALICE, "/start")
            [welcome] = await emu.wait_for_messages(ALICE, 1)
            assert welcome["text"] == "欢迎"
            emu.press(ALICE, ALICE, welcome["message_id"], "report")
            await emu.wait_for(lambda: bool(emu.sent(ALICE)[0]["edits"]))
            assert emu.sent(ALICE)[0]["text"] == "请描述问题"
            assert len(emu.callback_answers) == 1
        finally:
            await application.updater.stop()
            await application.stop()
    assert emu.pending_updates() == 0  # the updater confirmed everything on the way out


async def test_stop_ends_a_pending_long_poll() -> None:
    emulator = await BotApiEmulator(TOKEN).start()
    async with httpx.AsyncClient(base_url=f"{emulator.url}/bot{TOKEN}") as client:
        poll = asyncio.create_task(client.post("/getUpdates", data={"timeout": 30}, timeout=40))
        await emulator.wait_for(lambda: emulator.waiting_polls == 1)
        await asyncio.wait_for(emulator.stop(), timeout=10)
        [outcome] = await asyncio.wait_for(asyncio.gather(poll, return_exceptions=True), 10)
    # Either the poll was answered (empty) on the way out or its connection was cut.
    if isinstance(outcome, httpx.Response):
        assert outcome.json()["result"] == []
    else:
        assert isinstance(outcome, httpx.HTTPError)


# -- background thread ------------------------------------------------------------------------


def test_emulator_thread_serves_and_accepts_calls() -> None:
    with EmulatorThread(token=TOKEN) as thread:
        thread.call(_populate, thread.emu)
        message = thread.call(thread.emu.send_text, ALICE, "from another thread")
        assert message["text"] == "from another thread"
        with httpx.Client(base_url=f"{thread.url}/bot{TOKEN}") as client:
            assert client.get("/getMe").json()["result"]["username"] == "squadbot_sandbox_bot"
            updates = client.post("/getUpdates", data={"timeout": 5}).json()["result"]
            assert updates[0]["message"]["text"] == "from another thread"
            client.post("/sendMessage", data={"chat_id": ALICE, "text": "pong"})
        sent = thread.call(thread.emu.wait_for_messages, ALICE, 1)
        assert sent[0]["text"] == "pong"
