"""Bad input over HTTP: each case gets a clear answer and loses nothing. Oversized and empty
text, stickers, unknown commands, people with no role, bad invite codes, forged and stale
button presses, members of another squad, other enterprises' tickets, redelivered updates
and a database that is busy.

Long because the brief lists every bad input, and each gets its own test.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from sqlmodel import Session, func, select

from bot.inbox import store_updates
from models.org import Person
from models.plumbing import InboxUpdate
from models.ticket import Draft, Ticket, TicketEvent
from tests.e2e.builders import raw_message
from tests.harness import Harness

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
