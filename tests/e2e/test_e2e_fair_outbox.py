"""The outbox is fair between chats, against the emulator with Telegram's flood limits on and
the outbox's real pacing: one chat's backlog, or a storm of 429s on one chat, delays no other
chat; holds survive a restart; digests and reports wait behind answers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from bot.application import ZoneCache, build_application
from bot.outbox import Limits
from bot.service import Service
from models.outbox import Lane, enqueue
from models.plumbing import OutboxMessage
from tests.harness import Harness, start_harness

SQUAD_GROUP = -1_000_000_777_001


async def flooded(tmp_path: Path) -> Harness:
    """Flood limits on in the emulator, the outbox with its production pacing."""
    return await start_harness(tmp_path, flood_limits=True, limits=Limits())


def queue(h: Harness, chat_id: int, texts: list[str], **extra: Any) -> None:
    with Session(h.engine) as session:
        for text in texts:
            enqueue(
                session,
                h.clock.now(),
                chat_id=chat_id,
                template="thread.from_squad",
                locale="zh-CN",
                params={"number": "YZ-1", "name": "专班", "text": text},
                **extra,
            )
        session.commit()
    h.service.delivery.poke()


def numbered(h: Harness, chat_id: int, prefix: str) -> list[str]:
    return [t.split("：", 1)[1] for t in h.texts(chat_id) if f"：{prefix}" in t]


def has_private(h: Harness, chat_id: int) -> Callable[[], bool]:
    return lambda: numbered(h, chat_id, "私信") == ["私信"]


def statuses_to(h: Harness, chat_id: int) -> list[int]:
    """The HTTP status of every sendMessage to the chat, in order."""
    return [
        status
        for method, params, status in h.emu.calls
        if method.lower() == "sendmessage" and str(params.get("chat_id")) == str(chat_id)
    ]


def calls_to(h: Harness, chat_id: int) -> int:
    return len(statuses_to(h, chat_id))


def head_of(h: Harness, chat_id: int) -> OutboxMessage:
    with Session(h.engine) as session:
        row = session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.chat_id == chat_id, OutboxMessage.state == "pending")
            .order_by(col(OutboxMessage.id))
        ).first()
    assert row is not None
    return row


async def test_a_group_backlog_does_not_starve_a_private_answer(tmp_path: Path) -> None:
    h = await flooded(tmp_path)
    try:
        ent = await h.join("qian.hao", "enterprise", project="PV01")
        await h.settle()
        h.emu.add_group(SQUAD_GROUP, "光伏专班")
        backlog = [f"群消息{n:03d}" for n in range(200)]
        queue(h, SQUAD_GROUP, backlog)
        await h.emu.wait_for(lambda: len(numbered(h, SQUAD_GROUP, "群消息")) >= 1)

        needle = h.needle("help.enterprise")
        helped = sum(needle in text for text in h.texts(ent))
        asked = time.monotonic()
        h.emu.send_text(ent, "/help")
        await h.said(ent, needle, count=helped + 1, timeout=5.0)
        assert time.monotonic() - asked < 2.5

        # the group goes on at its own pace, in order, none lost or failed
        got = numbered(h, SQUAD_GROUP, "群消息")
        assert got == backlog[: len(got)]
        assert len(got) < len(backlog)
        with Session(h.engine) as session:
            states = set(
                session.exec(
                    select(OutboxMessage.state).where(OutboxMessage.chat_id == SQUAD_GROUP)
                ).all()
            )
        assert states == {"sent", "pending"}
        assert h.emu.stats["http_429"] == 0
    finally:
        await h.stop()


async def test_a_429_storm_on_one_chat_holds_up_no_other(tmp_path: Path) -> None:
    h = await flooded(tmp_path)
    try:
        people = [
            await h.join("qian.hao", "enterprise", project="PV01"),
            await h.join("zhou.jun", "member", squad="PV"),
            await h.join("liu.yang", "lead", squad="PV"),
        ]
        await h.settle()
        h.emu.add_group(SQUAD_GROUP, "光伏专班")
        h.emu.fail_next("sendMessage", 429, retry_after=1, count=3, chat_id=SQUAD_GROUP)
        started = time.monotonic()
        queue(h, SQUAD_GROUP, ["风暴0", "风暴1"])
        await h.emu.wait_for(lambda: 429 in statuses_to(h, SQUAD_GROUP))
        # held in the database, in the injected clock, which has not moved
        assert head_of(h, SQUAD_GROUP).next_attempt_at > h.clock.now()

        for person in people:
            queue(h, person, ["私信"])
        for person in people:
            await h.emu.wait_for(has_private(h, person), timeout=3.0)
        # every private chat had its message while the storm still held the group
        assert numbered(h, SQUAD_GROUP, "风暴") == []
        assert time.monotonic() - started < 2.5

        await h.emu.wait_for(lambda: len(numbered(h, SQUAD_GROUP, "风暴")) == 2, timeout=10.0)
        assert numbered(h, SQUAD_GROUP, "风暴") == ["风暴0", "风暴1"]
        for person in people:
            assert numbered(h, person, "私信") == ["私信"]
        # each 429 was waited out: the 3 injected, none of the emulator's own flood limits
        assert statuses_to(h, SQUAD_GROUP) == [429, 429, 429, 200, 200]
    finally:
        await h.stop()


async def restart(h: Harness, tmp_path: Path) -> None:
    """Stop the service and start another on the same database, emulator and clock."""
    await h.service.stop()
    app = build_application(
        h.emu.token, base_url=f"{h.emu.url}/bot", base_file_url=f"{h.emu.url}/file/bot"
    )
    h.service = Service(
        app, h.engine, h.clock, ZoneCache(ttl=0), long_poll=1, data_dir=tmp_path / "data"
    )
    await h.service.start()


async def test_a_restart_keeps_the_holds(tmp_path: Path) -> None:
    h = await flooded(tmp_path)
    try:
        ent = await h.join("qian.hao", "enterprise", project="PV01")
        await h.settle()
        h.emu.add_group(SQUAD_GROUP, "光伏专班")
        h.emu.fail_next("sendMessage", 429, retry_after=30, chat_id=SQUAD_GROUP)
        queue(h, SQUAD_GROUP, ["等待一", "等待二"])
        queue(h, ent, ["先到"])
        await h.emu.wait_for(lambda: h.emu.stats["http_429"] == 1)
        await h.emu.wait_for(lambda: numbered(h, ent, "先到") == ["先到"])
        held = head_of(h, SQUAD_GROUP).next_attempt_at
        assert held >= h.clock.now() + timedelta(seconds=29)

        await restart(h, tmp_path)
        tried = calls_to(h, SQUAD_GROUP)
        queue(h, ent, ["重启后"])
        await h.emu.wait_for(lambda: numbered(h, ent, "重启后") == ["重启后"], timeout=5.0)
        with contextlib.suppress(TimeoutError):  # a few passes of the new dispatcher
            await h.emu.wait_for(lambda: calls_to(h, SQUAD_GROUP) > tried, timeout=1.5)
        assert calls_to(h, SQUAD_GROUP) == tried  # not hit again before its retry_after
        assert head_of(h, SQUAD_GROUP).next_attempt_at == held

        h.clock.advance(timedelta(seconds=31))
        h.service.delivery.poke()
        await h.emu.wait_for(lambda: len(numbered(h, SQUAD_GROUP, "等待")) == 2, timeout=5.0)
        assert numbered(h, SQUAD_GROUP, "等待") == ["等待一", "等待二"]
    finally:
        await h.stop()


async def test_digests_to_fifty_groups_wait_behind_an_acknowledgement(tmp_path: Path) -> None:
    h = await flooded(tmp_path)
    try:
        ent = await h.join("qian.hao", "enterprise", project="PV01")
        await h.settle()
        groups = [SQUAD_GROUP - n for n in range(50)]
        for n, group in enumerate(groups):
            h.emu.add_group(group, f"专班{n}")
        with Session(h.engine) as session:
            for group in groups:  # queued first, in the same commit as the answer
                enqueue(
                    session,
                    h.clock.now(),
                    chat_id=group,
                    template="digest.morning",
                    locale="zh-CN",
                    params={
                        "scope": "全区",
                        "day": "11月22日",
                        "filed": 1,
                        "resolved": 1,
                        "breaches": 0,
                        "overdue": 0,
                        "list": "",
                    },
                )
            ack = enqueue(
                session,
                h.clock.now(),
                chat_id=ent,
                template="thread.from_squad",
                locale="zh-CN",
                params={"number": "YZ-1", "name": "专班", "text": "已收到"},
            )
            session.commit()
            assert ack.priority == Lane.NOW
        h.service.delivery.poke()
        await h.emu.wait_for(
            lambda: sum(len(h.emu.sent(g)) for g in groups) == len(groups), timeout=10.0
        )
        await h.said(ent, "已收到")
        log = [(m.message["chat"]["id"], m.message.get("text") or "") for m in h.emu.bot_log]
        answer = next(i for i, (chat, text) in enumerate(log) if chat == ent and "已收到" in text)
        first_digest = min(i for i, (chat, _text) in enumerate(log) if chat in groups)
        assert answer < first_digest
        with Session(h.engine) as session:
            lanes = set(
                session.exec(
                    select(OutboxMessage.priority).where(OutboxMessage.template == "digest.morning")
                ).all()
            )
        assert lanes == {Lane.BULK}
    finally:
        await h.stop()
