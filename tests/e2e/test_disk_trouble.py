"""The SQLite file on a disk that takes no writes: read-only, or full (SQLite's
max_page_count held at the file's size, so that a write needing one more page fails as on a
full disk, while writes that fit still succeed). Every update stays unconfirmed with
Telegram, nothing is half-written, the person is told once and a press is answered, the
log says why once, /healthz answers 503 with the reason, and all is as usual when the disk
takes writes again, without a restart."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.health import HealthServer
from bot.i18n import t
from models.db import make_engine
from models.org import Person
from models.outbox import enqueue
from models.plumbing import InboxUpdate, OutboxMessage
from models.ticket import Draft, Ticket
from tests.harness import Harness, start_harness

UNAVAILABLE = t("zh-CN", "error.storage_unavailable")
ASK_URGENCY = "请选择紧急程度"
REASON = {"read-only": "readonly database", "full": "disk is full"}


@dataclass
class Disk:
    """What the bot's connections may write, set on each checkout from the pool: everything
    ("fine"), nothing ("read-only": PRAGMA query_only, refused as SQLite refuses a read-only
    file), or nothing that needs another page ("full")."""

    state: str = "fine"

    def attach(self, engine: Engine) -> None:
        def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA query_only = {int(self.state == 'read-only')}")
            cursor.execute(f"PRAGMA max_page_count = {1 if self.state == 'full' else 2**31}")
            cursor.close()

        event.listen(engine, "checkout", on_checkout)


@dataclass
class Disked:
    h: Harness
    disk: Disk
    health: str


@pytest.fixture
async def disked(tmp_path: Any) -> AsyncIterator[Disked]:
    disk = Disk()
    h = await start_harness(tmp_path, configure=disk.attach)
    server = HealthServer(h.service.monitor, "127.0.0.1", 0)
    await server.start()
    try:
        yield Disked(h, disk, f"http://127.0.0.1:{server.port}/healthz")
    finally:
        disk.state = "fine"
        await server.stop()
        await h.stop()


async def health(url: str, status: int, timeout: float = 8.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
        while True:
            answer = await client.get(url)
            if answer.status_code == status:
                body: dict[str, Any] = answer.json()
                return body
            assert time.monotonic() < deadline, (status, answer.status_code, answer.text)
            await asyncio.sleep(0.1)


def said(h: Harness, chat: int, needle: str, since: int) -> list[str]:
    return [text for text in h.texts(chat)[since:] if needle in text]


def stored(h: Harness) -> tuple[Any, ...]:
    """Everything an update could have written."""
    with Session(h.engine) as session:
        person = session.exec(select(Person).where(Person.key == "qian.hao")).one()
        draft = session.get(Draft, person.id)
        return (
            session.exec(select(func.count()).select_from(InboxUpdate)).one(),
            session.exec(select(func.count()).select_from(OutboxMessage)).one(),
            session.exec(select(func.count()).select_from(Ticket)).one(),
            None if draft is None else (draft.step, draft.category_code, draft.description),
        )


def squeeze(h: Harness) -> None:
    """No free page left inside the file, so the next write that needs a page fails."""
    path = h.engine.url.database
    assert path
    with sqlite3.connect(path, timeout=10) as conn:
        conn.execute("VACUUM")
        assert conn.execute("PRAGMA freelist_count").fetchone() == (0,)


@pytest.mark.parametrize("trouble", ["read-only", "full"])
async def test_a_disk_that_takes_no_writes_loses_nothing_and_says_so(
    disked: Disked, trouble: str, caplog: pytest.LogCaptureFixture
) -> None:
    h, disk = disked.h, disked.disk
    await h.join("qian.hao", "enterprise", project="PV01")
    ent = h.ids["qian.hao"]
    h.emu.send_text(ent, "/new")
    menu = await h.said(ent, "请选择问题类别")
    h.press("qian.hao", menu, "临时停水")
    await h.said(ent, "请用文字描述问题")
    await h.settle()
    await health(disked.health, 200)
    if trouble == "full":
        squeeze(h)
    before = stored(h)
    since = len(h.emu.sent(ent))
    caplog.set_level(logging.INFO, logger="bot.outage")

    disk.state = trouble
    description = "工地临时停水，混凝土浇筑受影响。" * 180  # 2,880 characters, 8.6 kB: pages more
    h.emu.send_text(ent, description)
    await h.emu.wait_for(lambda: bool(said(h, ent, UNAVAILABLE, since)))
    query = h.emu.press(ent, ent, menu["message_id"], "no-such-button", strict=False)
    answer = await h.answered(query)
    assert answer["show_alert"] and answer["text"] == UNAVAILABLE
    down = await health(disked.health, 503)
    assert any(REASON[trouble] in problem for problem in down["problems"]), down
    assert down["database_writable"] is False and down["database"] is True
    await asyncio.sleep(1.0)  # several rounds of refusals
    assert h.emu.pending_updates() == 2  # neither confirmed to Telegram
    assert stored(h) == before  # nothing half-written
    assert len(said(h, ent, UNAVAILABLE, since)) == 1
    refusals = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refusals) == 1 and REASON[trouble] in refusals[0].getMessage()

    disk.state = "fine"
    await h.emu.wait_for(lambda: bool(said(h, ent, ASK_URGENCY, since)), recheck=0.05)
    await h.settle()
    up = await health(disked.health, 200)
    assert up["database_writable"] is True
    inbox, _outbox, tickets, draft = stored(h)
    assert inbox == before[0] + 2 and tickets == before[2]  # each update stored once
    assert draft == ("urgency", "water", description)
    assert len(said(h, ent, UNAVAILABLE, since)) == 1
    assert any("takes writes again" in r.getMessage() for r in caplog.records)
    assert h.emu.pending_updates() == 0


async def test_a_message_sent_while_the_record_cannot_be_written_goes_once(
    disked: Disked,
) -> None:
    """Telegram takes the message, the database refuses to mark it sent: it is kept in
    memory and marked when the disk is back, never sent again meanwhile."""
    h, disk = disked.h, disked.disk
    ent = await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    since = len(h.emu.sent(ent))
    disk.state = "read-only"
    # another process queues it: its own connection is not read-only
    other = make_engine(str(h.engine.url))
    try:
        with Session(other) as session:
            row = enqueue(
                session, h.clock.now(), chat_id=ent, template="help.enterprise", locale="zh-CN"
            )
            session.commit()
            row_id = row.id
    finally:
        other.dispose()
    h.service.delivery.poke()
    await health(disked.health, 503)
    await asyncio.sleep(1.5)  # many passes while the record cannot be written
    assert len(h.emu.sent(ent)) == since + 1
    disk.state = "fine"
    await h.settle()
    with Session(h.engine) as session:
        sent = session.get(OutboxMessage, row_id)
        assert sent is not None and sent.state == "sent" and sent.message_id is not None
    assert len(h.emu.sent(ent)) == since + 1
    await health(disked.health, 200)
