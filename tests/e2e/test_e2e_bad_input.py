"""Bad input over HTTP: each case gets a clear answer and loses nothing. Oversized and empty
text, stickers, unknown commands, people with no role, bad invite codes, forged and stale
button presses, members of another squad, other enterprises' tickets, redelivered updates
and a database that is busy.

Long because the brief lists every bad input, and each gets its own test.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from bot.inbox import store_updates
from models.org import Person
from models.plumbing import InboxUpdate, OutboxMessage
from models.ticket import Attachment, Draft, Ticket, TicketEvent
from tests.e2e.builders import raw_message
from tests.harness import Harness, start_harness

NO_ROLE = "邀请链接"  # start.no_role tells how to get an invite
STALE = "该按钮已失效"
NO_SUCH_TICKET = "未找到该工单"
BUSY = "系统繁忙"


# --- helpers ------------------------------------------------------------------------------
async def next_said(
    h: Harness, chat: int, needle: str, since: int, *, timeout: float = 8.0
) -> dict[str, Any]:
    """The first message the bot said in `chat` after the first `since` ones containing
    `needle`."""

    def found() -> list[dict[str, Any]]:
        return [
            m
            for m in h.emu.sent(chat)[since:]
            if needle in (m.get("text") or m.get("caption") or "")
        ]

    await h.emu.wait_for(lambda: bool(found()), timeout=timeout)
    return found()[0]


async def answer_to(h: Harness, chat: int, send: Any) -> dict[str, Any]:
    """Do `send()` (a user action in `chat`), settle, and return the bot's single answer."""
    since = len(h.emu.sent(chat))
    send()
    await h.emu.wait_for(lambda: len(h.emu.sent(chat)) > since)
    await h.settle()
    new = h.emu.sent(chat)[since:]
    assert len(new) == 1, [m.get("text") for m in new]
    return new[0]


def ticket_state(h: Harness, number: str) -> tuple[Any, ...]:
    """Everything that would show a change to the ticket."""
    with Session(h.engine) as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        events = session.exec(
            select(func.count()).select_from(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
        ).one()
        return (
            ticket.state,
            ticket.owner_id,
            ticket.first_response_at,
            ticket.updated_at,
            ticket.description,
            ticket.rating,
            events,
        )


def ticket_count(h: Harness) -> int:
    with Session(h.engine) as session:
        return int(session.exec(select(func.count()).select_from(Ticket)).one())


def draft_of(h: Harness, key: str) -> Draft | None:
    with Session(h.engine) as session:
        person = session.exec(select(Person).where(Person.key == key)).one()
        return session.get(Draft, person.id)


async def start_draft(h: Harness, who: str, category: str = "临时停水") -> int:
    """/new and a category: the draft now waits for its description."""
    chat = h.ids[who]
    since = len(h.emu.sent(chat))
    h.emu.send_text(chat, "/new")
    menu = await next_said(h, chat, "请选择问题类别", since)
    since = len(h.emu.sent(chat))
    h.press(who, menu, category)
    await next_said(h, chat, "请用文字描述问题", since)
    await h.settle()
    return chat


async def squad_pv(h: Harness, *, group: bool = True, outsider: bool = False) -> int | None:
    """qian.hao of PV01, squad PV (lead liu.yang, member zhou.jun) and, if asked, hu.bin of
    squad HV, who is in PV's group too. Returns the group's chat id."""
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.join("liu.yang", "lead", squad="PV")
    await h.join("zhou.jun", "member", squad="PV")
    if outsider:
        await h.join("hu.bin", "member", squad="HV")
    if not group:
        return None
    members = ["zhou.jun", "hu.bin"] if outsider else ["zhou.jun"]
    return await h.bind_group("PV", "liu.yang", members)


# --- text over 4096 characters ------------------------------------------------------------
async def test_text_over_4096_is_refused_with_the_limit_and_the_draft_stays(
    harness: Harness,
) -> None:
    h = harness
    await squad_pv(h, group=False)
    ent = await start_draft(h, "qian.hao")
    huge = "停" * 5000

    answer = await answer_to(h, ent, lambda: h.emu.send_text(ent, huge))
    assert "3000" in answer["text"] and "5000" in answer["text"]
    draft = draft_of(h, "qian.hao")
    assert draft is not None and draft.step == "description" and draft.description is None
    assert ticket_count(h) == 0

    # the same, delivered as a raw update Telegram itself would never send
    answer = await answer_to(
        h, ent, lambda: h.emu.send_raw_update(raw_message(ent, "水" * 4097, update_id=7001))
    )
    assert "3000" in answer["text"]
    draft = draft_of(h, "qian.hao")
    assert draft is not None and draft.step == "description" and draft.description is None

    # the draft carries on as if nothing had happened
    since = len(h.emu.sent(ent))
    h.emu.send_text(ent, "工地停水")
    ask = await next_said(h, ent, "请选择紧急程度", since)
    h.press("qian.hao", ask, "一般")
    confirm = await next_said(h, ent, "请确认", since)
    h.press("qian.hao", confirm, "提交")
    ack = await next_said(h, ent, "已受理", since)
    number = str(ack["text"]).split()[1]
    with Session(h.engine) as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        assert ticket.description == "工地停水"


async def test_description_added_in_parts_stays_within_the_limit(harness: Harness) -> None:
    """Text added to a description later counts towards the same limit, so the card the
    squad reads is never cut short."""
    h = harness
    await squad_pv(h, group=False)
    ent = await start_draft(h, "qian.hao")
    first = "甲" * 2000
    since = len(h.emu.sent(ent))
    h.emu.send_text(ent, first)
    await next_said(h, ent, "请选择紧急程度", since)
    await h.settle()

    answer = await answer_to(h, ent, lambda: h.emu.send_text(ent, "乙" * 2000))
    assert "3000" in answer["text"]
    draft = draft_of(h, "qian.hao")
    assert draft is not None and draft.description == first and draft.step == "urgency"


async def test_an_oversized_reply_reaches_nobody_and_is_refused(harness: Harness) -> None:
    h = harness
    await squad_pv(h, group=False)
    number = await h.file_ticket("qian.hao", "临时停水", "工地停水")
    member = h.ids["zhou.jun"]
    ent = h.ids["qian.hao"]
    await h.settle()
    before = ticket_state(h, number)
    to_enterprise = len(h.emu.sent(ent))

    answer = await answer_to(
        h, member, lambda: h.emu.send_text(member, f"/reply {number} {'修' * 5000}")
    )
    assert "3500" in answer["text"]
    # the enterprise talks back on its acknowledgement with too much text
    ack = await h.said(ent, "已受理")
    to_member = len(h.emu.sent(member))
    answer = await answer_to(
        h, ent, lambda: h.emu.send_text(ent, "等" * 5000, reply_to=ack["message_id"])
    )
    assert "3500" in answer["text"]
    await h.settle()
    assert ticket_state(h, number) == before
    assert len(h.emu.sent(ent)) == to_enterprise + 1  # only the refusal
    assert len(h.emu.sent(member)) == to_member


async def test_long_text_of_wide_characters_still_reaches_the_squad(harness: Harness) -> None:
    """Telegram counts its 4096 limit in UTF-16 units: a description of emoji or rare CJK
    characters within the bot's limit must still produce a card the squad receives."""
    h = harness
    group = await squad_pv(h)
    assert group is not None
    text = "💧" * 2990
    number = await h.file_ticket("qian.hao", "临时停水", text)
    card = await h.said(group, f"新工单 {number}")
    assert "💧💧💧" in card["text"]
    await h.settle()
    with Session(h.engine) as session:
        failed = session.exec(select(OutboxMessage).where(OutboxMessage.state == "failed")).all()
    assert failed == []


# --- empty text, stickers, unknown commands ------------------------------------------------
async def test_empty_and_whitespace_messages_get_a_clear_answer(harness: Harness) -> None:
    h = harness
    await squad_pv(h, group=False)
    ent = await start_draft(h, "qian.hao")

    answer = await answer_to(h, ent, lambda: h.emu.send_text(ent, "   \n  "))
    assert "内容为空" in answer["text"]
    answer = await answer_to(
        h, ent, lambda: h.emu.send_raw_update(raw_message(ent, "", update_id=7101))
    )
    assert answer["text"].strip()
    draft = draft_of(h, "qian.hao")
    assert draft is not None and draft.step == "description" and draft.description is None


async def test_squad_commands_without_text_answer_with_their_usage(harness: Harness) -> None:
    h = harness
    await squad_pv(h, group=False)
    number = await h.file_ticket("qian.hao", "临时停水", "工地停水")
    member = h.ids["zhou.jun"]
    await h.settle()
    before = ticket_state(h, number)
    for command, usage in (
        ("/reply", "用法：/reply"),
        (f"/reply {number}", "用法：/reply"),
        (f"/reply {number}    ", "用法：/reply"),
        ("/note", "用法：/note"),
        (f"/resolve {number}", "用法：/resolve"),
        (f"/wait {number}", "用法：/wait"),
        ("/plan", "用法：/plan"),
        (f"/plan {number} someday 抢修", "用法：/plan"),
        (f"/extend {number} forever 因为", "用法：/extend"),
        ("/ticket", "用法：/ticket"),
    ):
        answer = await answer_to(h, member, lambda c=command: h.emu.send_text(member, c))
        assert usage in answer["text"], (command, answer["text"])
    assert ticket_state(h, number) == before


async def test_out_of_range_numbers_and_dates_get_a_clear_answer(harness: Harness) -> None:
    """Ticket references and durations that do not fit a number or the calendar are
    refused like any other bad value, not reported as an internal error."""
    h = harness
    await squad_pv(h, group=False)
    number = await h.file_ticket("qian.hao", "临时停水", "工地停水")
    member = h.ids["zhou.jun"]
    await h.settle()
    before = ticket_state(h, number)
    for command, expected in (
        ("/ticket 99999999999999999999999", NO_SUCH_TICKET),
        ("/ticket ²", NO_SUCH_TICKET),
        ("/ticket ０００１", NO_SUCH_TICKET),
        ("/reply 0 你好", NO_SUCH_TICKET),
        (f"/reply 9{'9' * 5000} 你好", NO_SUCH_TICKET),
        (f"/extend {number} 99999999999999d 需要协调", "用法：/extend"),
        (f"/extend {number} 31d 需要协调", "用法：/extend"),
        (f"/plan {number} 99999999d 抢修", "太远"),
        (f"/plan {number} 9999-12-31 23:59 抢修", "太远"),
        (f"/plan {number} 2030-01-01 抢修", "太远"),
        (f"/plan {number} 2020-01-01 抢修", "晚于现在"),
    ):
        answer = await answer_to(h, member, lambda c=command: h.emu.send_text(member, c))
        assert expected in answer["text"], (command, answer["text"])
    assert ticket_state(h, number) == before
    assert not any("出错" in t for t in h.texts(member))


async def test_a_sticker_gets_a_clear_answer_and_changes_nothing(harness: Harness) -> None:
    h = harness
    group = await squad_pv(h)
    assert group is not None
    ent = await start_draft(h, "qian.hao")

    answer = await answer_to(h, ent, lambda: h.emu.send_sticker(ent))
    assert "贴纸" in answer["text"]
    draft = draft_of(h, "qian.hao")
    assert draft is not None and draft.step == "description" and draft.description is None
    with Session(h.engine) as session:
        assert session.exec(select(Attachment)).all() == []

    member = h.ids["zhou.jun"]
    answer = await answer_to(h, member, lambda: h.emu.send_sticker(member))
    assert "贴纸" in answer["text"]
    # in the squad's group, where people chat, a sticker is simply not the bot's business
    before = len(h.emu.sent(group))
    h.emu.send_sticker(member, chat_id=group)
    await h.settle()
    assert len(h.emu.sent(group)) == before


async def test_an_unknown_command_is_answered(harness: Harness) -> None:
    h = harness
    await squad_pv(h, group=False)
    ent = h.ids["qian.hao"]
    answer = await answer_to(h, ent, lambda: h.emu.send_text(ent, "/frobnicate now"))
    assert "无法识别该命令" in answer["text"] and "/help" in answer["text"]
    stranger = await h.stranger()
    answer = await answer_to(h, stranger, lambda: h.emu.send_text(stranger, "/frobnicate"))
    assert NO_ROLE in answer["text"]


# --- people with no role ------------------------------------------------------------------
async def test_someone_with_no_role_is_told_how_to_get_an_invite(harness: Harness) -> None:
    h = harness
    group = await squad_pv(h)
    assert group is not None
    number = await h.file_ticket("qian.hao", "临时停水", "工地停水，正在浇筑混凝土")
    stranger = await h.stranger()
    for text in ("你好", "/new", "/my", f"/ticket {number}", f"/reply {number} 我来", "/start"):
        answer = await answer_to(h, stranger, lambda t=text: h.emu.send_text(stranger, t))
        assert NO_ROLE in answer["text"], (text, answer["text"])
        assert "浇筑" not in answer["text"]
    answer = await answer_to(h, stranger, lambda: h.emu.send_photo(stranger))
    assert NO_ROLE in answer["text"]

    # in the group, a stranger who can see the card presses Claim: refused, nothing changes
    h.emu.add_group(group, "PV 专班群", [h.ids["liu.yang"], h.ids["zhou.jun"], stranger])
    card = await h.said(group, f"新工单 {number}")
    before = ticket_state(h, number)
    query = h.press(stranger, card, "认领")
    answer = await h.answered(query)
    assert answer["show_alert"] and "邀请链接" in answer["text"]
    await h.settle()
    assert ticket_state(h, number) == before
    with Session(h.engine) as session:
        assert (
            session.exec(select(Person).where(Person.telegram_user_id == stranger)).first() is None
        )


# --- invite codes -------------------------------------------------------------------------
async def test_start_with_an_unknown_used_or_expired_code_is_refused(harness: Harness) -> None:
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    stranger = await h.stranger()

    answer = await answer_to(h, stranger, lambda: h.emu.send_text(stranger, "/start nosuchcode"))
    assert "邀请码无效" in answer["text"]

    used = h.invite("enterprise", project="PV01", person="qian.hao")
    since = len(h.emu.sent(h.ids["qian.hao"]))
    h.emu.send_text(h.ids["qian.hao"], f"/start {used}")
    await next_said(h, h.ids["qian.hao"], "企业联系人", since)
    answer = await answer_to(h, stranger, lambda: h.emu.send_text(stranger, f"/start {used}"))
    assert "已被使用" in answer["text"]

    expiring = h.invite("enterprise", project="PV01", person="shi.lei")
    h.clock.advance(timedelta(days=7, minutes=1))
    answer = await answer_to(h, stranger, lambda: h.emu.send_text(stranger, f"/start {expiring}"))
    assert "已过期" in answer["text"]

    group_code = h.invite("group", squad="PV")
    answer = await answer_to(h, stranger, lambda: h.emu.send_text(stranger, f"/start {group_code}"))
    assert "/bind" in answer["text"]

    # none of that gave the stranger a role
    answer = await answer_to(h, stranger, lambda: h.emu.send_text(stranger, "/my"))
    assert NO_ROLE in answer["text"]
    with Session(h.engine) as session:
        assert (
            session.exec(select(Person).where(Person.telegram_user_id == stranger)).first() is None
        )


async def test_a_group_is_bound_only_by_its_own_lead(harness: Harness) -> None:
    h = harness
    await squad_pv(h, group=False)
    await h.join("ma.lin", "lead", squad="HV")
    chat = -1000000000099
    h.emu.add_group(chat, "PV 群", [h.ids["liu.yang"], h.ids["zhou.jun"], h.ids["ma.lin"]])
    code = h.invite("group", squad="PV")
    for who in ("zhou.jun", "ma.lin"):
        answer = await answer_to(
            h, chat, lambda w=who: h.emu.send_text(h.ids[w], f"/bind {code}", chat_id=chat)
        )
        assert "牵头领导" in answer["text"]
    answer = await answer_to(
        h, chat, lambda: h.emu.send_text(h.ids["liu.yang"], f"/bind {code}", chat_id=chat)
    )
    assert "已绑定" in answer["text"]


# --- forged and stale presses -------------------------------------------------------------
async def test_forged_callback_data_is_refused_and_logged(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    group = await squad_pv(h)
    assert group is not None
    number = await h.file_ticket("qian.hao", "临时停水", "工地停水")
    card = await h.said(group, f"新工单 {number}")
    await h.settle()
    before = ticket_state(h, number)
    caplog.set_level(logging.WARNING, logger="handlers.buttons")

    forged = secrets.token_urlsafe(12)
    query = h.emu.press(h.ids["zhou.jun"], group, card["message_id"], forged, strict=False)
    answer = await h.answered(query)
    assert answer["show_alert"] and STALE in answer["text"]
    query = h.emu.press(
        h.ids["zhou.jun"], group, card["message_id"], "claim:1'; DROP TABLE ticket;--", strict=False
    )
    answer = await h.answered(query)
    assert answer["show_alert"] and STALE in answer["text"]
    await h.settle()
    assert ticket_state(h, number) == before
    assert any(forged in r.getMessage() and "forged" in r.getMessage() for r in caplog.records)


async def test_someone_elses_personal_button_is_refused(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A button made for one person (a category in their draft) pressed by another, with
    the callback_data copied into a crafted update."""
    h = harness
    await squad_pv(h, group=False)
    await h.join("shi.lei", "enterprise", project="PV01")
    ent = h.ids["qian.hao"]
    since = len(h.emu.sent(ent))
    h.emu.send_text(ent, "/new")
    menu = await next_said(h, ent, "请选择问题类别", since)
    await h.settle()
    data = h.button(menu, "临时停水")
    caplog.set_level(logging.WARNING, logger="handlers.buttons")

    other = h.ids["shi.lei"]
    user = {"id": other, "is_bot": False, "first_name": "shi.lei"}
    h.emu.send_raw_update(
        {
            "callback_query": {
                "id": "forged-1",
                "from": user,
                "chat_instance": "1",
                "data": data,
                "message": {
                    "message_id": 1,
                    "date": 1_790_000_000,
                    "chat": {"id": other, "type": "private"},
                    "text": "请选择问题类别：",
                },
            }
        }
    )
    await h.settle()
    draft = draft_of(h, "qian.hao")
    assert draft is not None and draft.step == "category" and draft.category_code is None
    assert draft_of(h, "shi.lei") is None
    assert any("pressed by" in r.getMessage() for r in caplog.records)


async def test_stale_presses_are_refused_and_change_nothing(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    group = await squad_pv(h)
    assert group is not None
    ent = h.ids["qian.hao"]
    since = len(h.emu.sent(ent))
    number = await h.file_ticket("qian.hao", "临时停水", "工地停水")
    menu = await next_said(h, ent, "请选择问题类别", since)
    card = await h.said(group, f"新工单 {number}")
    claim = h.button(card, "认领")
    answer = await h.answered(h.press("zhou.jun", card, "认领"))
    assert number in answer["text"]
    await h.said(ent, "已由")
    await h.settle()
    before = ticket_state(h, number)
    caplog.set_level(logging.WARNING, logger="handlers.buttons")

    # the card lost its button; an old client still shows it and the lead presses it
    query = h.emu.press(h.ids["liu.yang"], group, card["message_id"], claim, strict=False)
    answer = await h.answered(query)
    assert answer["show_alert"] and "周军" in answer["text"] and number in answer["text"]
    # the owner himself presses it again
    query = h.emu.press(h.ids["zhou.jun"], group, card["message_id"], claim, strict=False)
    answer = await h.answered(query)
    assert answer["show_alert"] and "周军" in answer["text"]

    # a category of the draft that became this ticket
    query = h.press("qian.hao", menu, "杆线迁移")
    answer = await h.answered(query)
    assert answer["show_alert"] and STALE in answer["text"]
    await h.settle()
    assert ticket_state(h, number) == before
    assert draft_of(h, "qian.hao") is None
    assert ticket_count(h) == 1
    assert any("category" in r.getMessage() for r in caplog.records)


# --- another squad, another enterprise ------------------------------------------------------
async def test_a_member_of_another_squad_is_refused_and_sees_nothing(harness: Harness) -> None:
    h = harness
    group = await squad_pv(h, outsider=True)
    assert group is not None
    secret = "东门二号井漏水"
    number = await h.file_ticket("qian.hao", "临时停水", secret)
    card = await h.said(group, f"新工单 {number}")
    ent = h.ids["qian.hao"]
    outsider = h.ids["hu.bin"]
    await h.settle()
    before = ticket_state(h, number)
    to_enterprise = len(h.emu.sent(ent))

    answer = await h.answered(h.press("hu.bin", card, "认领"))
    assert answer["show_alert"] and NO_SUCH_TICKET in answer["text"]
    assert secret not in answer["text"] and number not in answer["text"]

    for command in (
        f"/reply {number} 我们来处理",
        f"/note {number} 备注",
        f"/resolve {number} 已修好",
        f"/wait {number} 请补充材料",
        f"/plan {number} 3d 抢修",
        f"/needplan {number}",
        f"/extend {number} 4h 需要协调",
        f"/ticket {number}",
        f"/reply {number.lower()} 我们来处理",
    ):
        answer = await answer_to(h, outsider, lambda c=command: h.emu.send_text(outsider, c))
        assert NO_SUCH_TICKET in answer["text"], (command, answer["text"])
        assert secret not in answer["text"]
    answer = await answer_to(h, outsider, lambda: h.emu.send_text(outsider, "/my"))
    assert number not in answer["text"]

    # replying to PV's card in the group does not reach the enterprise either
    h.emu.send_text(outsider, "我是胡斌", chat_id=group, reply_to=card["message_id"])
    await h.settle()
    assert ticket_state(h, number) == before
    assert len(h.emu.sent(ent)) == to_enterprise
    assert all(secret not in (m.get("text") or "") for m in h.emu.sent(outsider))


async def test_an_enterprise_sees_only_its_own_tickets(harness: Harness) -> None:
    h = harness
    await squad_pv(h, group=False)
    await h.join("yang.fan", "enterprise", project="HV01")
    secret = "东门二号井漏水"
    number = await h.file_ticket("qian.hao", "临时停水", secret)
    other = h.ids["yang.fan"]
    await h.settle()
    before = ticket_state(h, number)
    for command in (f"/ticket {number}", f"/reply {number} 我也有问题", f"/resolve {number} x"):
        answer = await answer_to(h, other, lambda c=command: h.emu.send_text(other, c))
        assert secret not in answer["text"]
        assert NO_SUCH_TICKET in answer["text"] or "专班成员" in answer["text"]
    answer = await answer_to(h, other, lambda: h.emu.send_text(other, "/my"))
    assert number not in answer["text"]
    assert ticket_state(h, number) == before


# --- redelivered updates ------------------------------------------------------------------
async def test_a_redelivered_update_changes_nothing_the_second_time(harness: Harness) -> None:
    h = harness
    await squad_pv(h, group=False)
    number = await h.file_ticket("qian.hao", "临时停水", "工地停水")
    ent = h.ids["qian.hao"]
    member = h.ids["zhou.jun"]
    await h.settle()
    user = {"id": member, "is_bot": False, "first_name": "zhou.jun", "language_code": "zh-hans"}
    text = f"/reply {number} 备用水源车已出发"
    update = {
        "update_id": 8001,
        "message": {
            "message_id": 8001,
            "from": user,
            "chat": {"id": member, "type": "private", "first_name": "zhou.jun"},
            "date": 1_790_000_000,
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }
    # delivered twice in the same batch
    h.emu.send_raw_update(update)
    h.emu.send_raw_update(update)
    await h.said(ent, "备用水源车已出发")
    await h.settle()
    after_first = ticket_state(h, number)
    sent_first = (len(h.emu.sent(ent)), len(h.emu.sent(member)))

    # redelivered after it was handled: stored again (ignored) and handled again (no-op)
    assert store_updates(h.engine, [update], h.clock) == 0
    with Session(h.engine) as session:
        stored = session.exec(select(InboxUpdate).where(InboxUpdate.update_id == 8001)).one()
    assert await h.service.runner.handle(update, inbox_id=stored.id) == "done"
    # and once more through Telegram, as after a crash before the offset was confirmed
    h.emu.send_raw_update({**update, "update_id": 8001})
    await h.settle()
    assert ticket_state(h, number) == after_first
    assert (len(h.emu.sent(ent)), len(h.emu.sent(member))) == sent_first
    assert sum("备用水源车已出发" in t for t in h.texts(ent)) == 1
    with Session(h.engine) as session:
        rows = session.exec(select(InboxUpdate).where(InboxUpdate.update_id == 8001)).all()
        assert len(rows) == 1 and rows[0].processed_at is not None and rows[0].attempts == 1
        replies = session.exec(
            select(func.count()).select_from(TicketEvent).where(TicketEvent.action == "replied")
        ).one()
    assert replies == 1


# --- a database that is busy ---------------------------------------------------------------
@pytest.fixture
async def quick_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A harness whose database gives up waiting for a lock after 50 ms, not 5 s."""

    def short_busy_timeout(engine: Engine) -> None:
        event.listen(
            engine, "connect", lambda conn, _record: conn.execute("PRAGMA busy_timeout=50")
        )

    h = await start_harness(tmp_path, configure=short_busy_timeout)
    try:
        yield h
    finally:
        await h.stop()


def lock_database(h: Harness) -> sqlite3.Connection:
    """Another process holds the write lock on the bot's SQLite file."""
    path = h.engine.url.database
    assert path
    locker = sqlite3.connect(path, isolation_level=None, timeout=5)
    locker.execute("BEGIN EXCLUSIVE")
    return locker


async def test_a_busy_database_keeps_the_message_and_says_so_once(
    quick_harness: Harness,
) -> None:
    """Locked before the message arrives: it cannot even be stored, so it stays unconfirmed
    with Telegram; the user is told once, and it is handled when the lock goes."""
    h = quick_harness
    await h.join("qian.hao", "enterprise", project="PV01")
    ent = h.ids["qian.hao"]
    await h.settle()
    since = len(h.emu.sent(ent))
    locker = lock_database(h)
    try:
        h.emu.send_text(ent, "/new")
        told = await next_said(h, ent, BUSY, since)
        assert "已保存" in told["text"]
        await asyncio.sleep(0.5)  # several retries while the lock is held
        assert h.emu.pending_updates() >= 1  # not confirmed to Telegram: nothing lost
        assert all("请选择问题类别" not in t for t in h.texts(ent)[since:])
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await next_said(h, ent, "请选择问题类别", since)
    await h.settle()
    assert sum(BUSY in t for t in h.texts(ent)[since:]) == 1
    assert draft_of(h, "qian.hao") is not None


async def test_a_busy_database_while_handling_retries_the_stored_update(
    quick_harness: Harness,
) -> None:
    """Stored, then the lock is taken before it is handled: the handling is rolled back and
    retried, the user is told once, and the menu arrives when the lock goes."""
    h = quick_harness
    await h.join("qian.hao", "enterprise", project="PV01")
    ent = h.ids["qian.hao"]
    await h.settle()
    since = len(h.emu.sent(ent))
    update = raw_message(ent, "/new", update_id=9_000_001)
    # stored and locked without yielding to the bot in between
    store_updates(h.engine, [update], h.clock)
    locker = lock_database(h)
    try:
        await next_said(h, ent, BUSY, since)
        await asyncio.sleep(0.5)
        with Session(h.engine) as session:
            row = session.exec(select(InboxUpdate).where(InboxUpdate.update_id == 9_000_001)).one()
            assert row.processed_at is None
        assert draft_of(h, "qian.hao") is None
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await next_said(h, ent, "请选择问题类别", since)
    await h.settle()
    assert sum(BUSY in t for t in h.texts(ent)[since:]) == 1
    with Session(h.engine) as session:
        row = session.exec(select(InboxUpdate).where(InboxUpdate.update_id == 9_000_001)).one()
        assert row.processed_at is not None and row.error is None
    assert draft_of(h, "qian.hao") is not None
