"""The rows a handling queues are handed to the dispatcher as written: when they are all that
is pending, a pass sends them without reading the queue (one small read of the pending ids
says so). A row queued any other way, held back or not yet sent, sends the pass back to
the queue, so a chat's messages still go out in the order they were queued."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session

from bot.i18n import t
from models.outbox import enqueue
from tests.e2e.builders import help_is_answered, statements
from tests.harness import Harness

NOTICE = "flood.notice"


async def test_an_answer_is_sent_from_the_rows_handed_over(harness: Harness) -> None:
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    delivery = h.service.delivery
    before = delivery.handed_passes
    with statements(h, "SELECT", "outboxmessage") as reads:
        for _ in range(3):
            await help_is_answered(h, "qian.hao")
    assert delivery.handed_passes >= before + 3
    # the queue's selection (its heads, grouped by chat) was not run for them
    assert not any("group by" in sql.lower() for sql in reads[:3])


async def test_a_held_row_of_the_chat_keeps_the_answer_behind_it(harness: Harness) -> None:
    """A notice queued for the chat by someone else and held for an hour: the /help
    answer handed over is not sent before it, and both go out, in order, once it is due."""
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    chat = h.ids["qian.hao"]
    with Session(h.engine) as session:
        held = enqueue(session, h.clock.now(), chat_id=chat, template=NOTICE, locale="zh-CN")
        held.next_attempt_at = h.clock.now() + timedelta(hours=1)
        session.commit()
    delivery, inbox = h.service.delivery, h.service.inbox
    before, handled, sent = delivery.handed_passes, inbox.handled, len(h.emu.sent(chat))
    h.emu.send_text(chat, "/help")
    await h.emu.wait_for(lambda: inbox.handled > handled, timeout=8.0, recheck=0.05)
    with pytest.raises(TimeoutError):  # the answer waits behind the held notice
        await h.emu.wait_for(lambda: len(h.emu.sent(chat)) > sent, timeout=1.5)
    assert delivery.handed_passes == before  # handed over, but not all that was pending
    h.clock.advance(timedelta(hours=1, seconds=1))
    await h.emu.wait_for(lambda: len(h.emu.sent(chat)) >= sent + 2, timeout=8.0)
    texts = [m.get("text") or "" for m in h.emu.sent(chat)[sent:]]
    assert texts[0] == t("zh-CN", NOTICE)
    assert t("zh-CN", NOTICE) not in texts[1]
