"""What the dispatcher sent is written down in the transaction of the next update the bot
handles on its loop (one commit for both), or by the dispatcher itself when no update comes
within moments. Until then the rows stay the dispatcher's: nothing sends them again, an
edit of one finds its message, and a handling that fails gives them back to be written
down. A bot that stops writes down what is left."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from models.plumbing import OutboxMessage
from tests.e2e.builders import (
    answer_help_with,
    enterprise_with_help,
    failing_first,
    file_many,
    help_is_answered,
    until,
)
from tests.harness import Harness, start_harness


def last_row(h: Harness, chat: int) -> OutboxMessage:
    with Session(h.engine) as session:
        return session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.chat_id == chat)
            .order_by(col(OutboxMessage.id).desc())
        ).first()  # type: ignore[return-value]


async def enterprise(h: Harness) -> int:
    """qian.hao joined as an enterprise contact of PV01, the bot settled: his chat."""
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    return h.ids["qian.hao"]


def row_of(h: Harness, row_id: int) -> OutboxMessage:
    with Session(h.engine) as session:
        row = session.get(OutboxMessage, row_id)
    assert row is not None
    return row


def count_own_records(h: Harness, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows each commit of the dispatcher's own writing down held."""
    ledger = h.service.delivery.ledger
    real = ledger.record_sent
    calls: list[int] = []

    def counted(delivered: list[Any]) -> None:
        calls.append(len(delivered))
        real(delivered)

    monkeypatch.setattr(ledger, "record_sent", counted)
    return calls


async def test_the_next_update_writes_down_what_was_sent(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    chat = await enterprise(h)
    h.service.delivery.record_within = 60.0  # the dispatcher leaves them to a handling
    own = count_own_records(h, monkeypatch)

    await help_is_answered(h, "qian.hao")
    first = last_row(h, chat)
    assert first.id is not None
    assert first.state == "pending" and first.message_id is None  # sent, not written yet
    await help_is_answered(h, "qian.hao")
    first = row_of(h, first.id)
    assert first.state == "sent"
    assert first.message_id == h.emu.sent(chat)[-2]["message_id"]
    assert own == []  # no commit of its own: the second update's transaction wrote it
    assert len(h.emu.sent(chat)) == len({m["message_id"] for m in h.emu.sent(chat)})


async def test_with_no_update_to_carry_them_the_dispatcher_writes_them_down(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    chat = await enterprise(h)
    own = count_own_records(h, monkeypatch)
    await help_is_answered(h, "qian.hao")
    row_id = last_row(h, chat).id
    assert row_id is not None
    await h.emu.wait_for(lambda: row_of(h, row_id).state == "sent", timeout=8.0, recheck=0.02)
    assert row_of(h, row_id).message_id == h.emu.sent(chat)[-1]["message_id"]
    assert own == [1]


async def test_a_handling_that_fails_gives_them_back_and_nothing_goes_twice(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    real = await enterprise_with_help(h)
    chat = h.ids["qian.hao"]
    h.service.delivery.record_within = 60.0
    await help_is_answered(h, "qian.hao")
    first = last_row(h, chat)
    assert first.id is not None and first.state == "pending"
    tries: list[int] = []
    answer_help_with(h, monkeypatch, failing_first(real, tries))
    own = count_own_records(h, monkeypatch)
    await help_is_answered(h, "qian.hao")  # the try at once fails, the retry answers
    assert len(tries) == 2
    written = row_of(h, first.id)
    assert written.state == "sent" and written.message_id == h.emu.sent(chat)[-2]["message_id"]
    assert own and own[0] >= 1  # given back, and written down by the dispatcher at once
    ids = [m["message_id"] for m in h.emu.sent(chat)]
    assert len(ids) == len(set(ids))  # each answer sent once


async def test_a_pass_meanwhile_does_not_send_again_what_a_handling_is_writing_down(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handling has taken the sent row to write down and has not committed: a pass that
    reads the queue then finds the row still pending, and leaves it (it is this process's)."""
    h = harness
    real = await enterprise_with_help(h)
    chat = h.ids["qian.hao"]
    delivery = h.service.delivery
    delivery.record_within = 60.0
    await help_is_answered(h, "qian.hao")
    first = last_row(h, chat)
    assert first.id is not None and first.state == "pending"

    async def slow(update: Any, context: Any) -> None:
        delivery.poke()  # a pass reads the queue while this handling is under way
        await asyncio.sleep(0.3)
        await real(update, context)

    answer_help_with(h, monkeypatch, slow)
    await help_is_answered(h, "qian.hao")
    await h.settle()
    ids = [m["message_id"] for m in h.emu.sent(chat)]
    assert len(ids) == len(set(ids))
    assert [m["message_id"] for m in h.emu.sent(chat)][-2] == row_of(h, first.id).message_id
    assert row_of(h, first.id).attempts == 1  # sent once, written down once


async def test_an_edit_finds_a_message_not_yet_written_down(harness: Harness) -> None:
    """/my's first page is sent; no handling writes it down (nor does the dispatcher, for a
    minute): ▶ rewrites that same message, its id known from the send."""
    h = harness
    file_many(h, "qian.hao", 21)
    manager = await h.join("wang.fang", "manager")
    await h.settle()
    delivery = h.service.delivery
    delivery.record_within = 60.0
    h.service.runner.unrecorded = list  # never carried by a handling
    before = len(h.emu.sent(manager))

    h.emu.send_text(manager, "/my")
    first = await h.said(manager, "（第 1/2 页）")
    page = last_row(h, manager)
    assert page.state == "pending"  # sent, not written down
    h.press(manager, first, "下一页")
    second = await h.said(manager, "（第 2/2 页）")
    assert second["message_id"] == first["message_id"]  # rewritten, not sent anew
    assert len(h.emu.sent(manager)) == before + 1


async def test_a_bot_that_stops_writes_down_what_is_left(tmp_path: Path) -> None:
    h = await start_harness(tmp_path)
    try:
        chat = await enterprise(h)
        h.service.delivery.record_within = 60.0
        await help_is_answered(h, "qian.hao")
        row_id = last_row(h, chat).id
        assert row_id is not None and row_of(h, row_id).state == "pending"
        sent_id = h.emu.sent(chat)[-1]["message_id"]
    finally:
        await h.service.stop()
        await h.emu.stop()
    with Session(h.engine) as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None and row.state == "sent" and row.message_id == sent_id
    h.engine.dispose()


async def test_a_bot_that_stops_mid_send_waits_for_telegrams_answer(tmp_path: Path) -> None:
    """Stopping while a sendMessage is in flight: the pass finishes, so the message Telegram
    took is written down as sent (with its id) instead of going again at the next start."""
    h = await start_harness(tmp_path)
    try:
        chat = await enterprise(h)
        delivery = h.service.delivery
        delivery.record_within = 60.0
        before = len(h.emu.sent(chat))
        h.emu.answer_sending_after(0.5)
        h.emu.send_text(chat, "/help")

        def in_flight() -> bool:
            row = last_row(h, chat)
            return row.state == "pending" and row.id in delivery.leases.held

        await until(in_flight, 8.0, lambda: "the answer was never sent")
        row_id = last_row(h, chat).id
        assert len(h.emu.sent(chat)) == before  # Telegram has not answered yet
    finally:
        await h.service.stop()
        await h.emu.stop()
    sent = h.emu.sent(chat)
    assert len(sent) == before + 1
    with Session(h.engine) as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None and row.state == "sent"
        assert row.message_id == sent[-1]["message_id"]
    h.engine.dispose()
