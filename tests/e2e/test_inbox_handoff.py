"""On SQLite, while nothing else waits, an update that comes alone is stored and handled in
one transaction as it comes; otherwise the updates the fetch has just stored reach the
processing loop in memory, not read back from the store, as long as nothing else waits
there; a retry (or anything else left waiting) sends the next pass back to the store, and a
chat's updates are handled in the order they came either way. An update handed over is not
looked up before it is handled: its mark at the end still checks it was waiting and free."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update as sql_update
from sqlmodel import Session, col, func, select

from bot.inbox.storage import store_new
from bot.sending_bot import SendingBot
from models.plumbing import InboxUpdate, OutboxMessage
from tests.e2e.builders import (
    answer_help_with,
    enterprise_with_help,
    failing_first,
    help_is_answered,
    raw_message,
    statements,
)
from tests.harness import Harness


async def test_updates_that_come_alone_are_stored_and_handled_in_one_commit(
    harness: Harness,
) -> None:
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    chat = h.ids["qian.hao"]
    inbox = h.service.inbox
    before, handed = inbox.handled_at_once, inbox.handed_over
    with (
        statements(h, "SELECT", "inboxupdate") as reads,
        statements(h, "INSERT", "inboxupdate") as inserts,
    ):
        for _ in range(3):
            await help_is_answered(h, "qian.hao")
    assert inbox.handled_at_once == before + 3
    assert inbox.handed_over == handed  # none went through the processing loop
    assert reads == [] and len(inserts) == 3  # stored once each, never read back
    with Session(h.engine) as session:
        rows = session.exec(
            select(InboxUpdate).where(InboxUpdate.chat_id == chat).order_by(col(InboxUpdate.id))
        ).all()[-3:]
    assert all(r.processed_at is not None and r.attempts == 1 for r in rows)


async def test_a_handling_that_fails_at_once_leaves_the_update_to_the_store(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of the failed try is kept, not even the row: the update is then stored, the
    try counted as its first attempt, and handled again from the store."""
    h = harness
    tries: list[int] = []
    answer_help_with(h, monkeypatch, failing_first(await enterprise_with_help(h), tries))
    inbox = h.service.inbox
    before, handed = inbox.handled_at_once, inbox.handed_over
    await help_is_answered(h, "qian.hao")
    assert len(tries) == 2 and tries[0] == tries[1]  # the same update, tried twice
    assert inbox.handled_at_once == before and inbox.handed_over == handed  # read back
    with Session(h.engine) as session:
        row = session.exec(select(InboxUpdate).where(InboxUpdate.update_id == tries[0])).one()
    assert row.processed_at is not None and row.attempts == 2  # the try at once counted


async def test_stored_updates_are_handed_over_without_being_read_back(harness: Harness) -> None:
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    inbox = h.service.inbox
    inbox.at_once = False  # every update is stored first
    handed = inbox.handed_over
    for _ in range(3):
        await help_is_answered(h, "qian.hao")
    assert inbox.handed_over == handed + 3  # none of the three was read back


async def test_after_a_retry_the_store_is_read_and_the_chat_kept_in_order(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    real = await enterprise_with_help(h)
    handled: list[int] = []
    failed: list[int] = []

    async def fails_once(update: Any, context: Any) -> None:
        if not failed:
            failed.append(update.update_id)
            raise ValueError("fails the first time only")
        await real(update, context)
        handled.append(update.update_id)

    answer_help_with(h, monkeypatch, fails_once)
    inbox = h.service.inbox
    inbox.at_once = False  # every update is stored first
    handed = inbox.handed_over
    await help_is_answered(h, "qian.hao")  # handed over, fails, read back from the store, retried
    assert handled == failed  # handled once, on its second try
    assert inbox.handed_over == handed + 1  # the retry came from the store, not memory
    handed = inbox.handed_over
    await help_is_answered(h, "qian.hao")  # nothing waits any more: handed over again
    assert inbox.handed_over == handed + 1
    assert handled == sorted(handled) and len(handled) == 2


async def test_an_update_handed_over_is_handled_without_reading_its_row(harness: Harness) -> None:
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    chat = h.ids["qian.hao"]
    inbox = h.service.inbox
    inbox.at_once = False  # every update is stored first
    handed = inbox.handed_over
    with statements(h, "SELECT", "inboxupdate") as reads:
        await help_is_answered(h, "qian.hao")
    assert inbox.handed_over == handed + 1
    assert reads == []  # neither read back nor looked at before it was marked
    with Session(h.engine) as session:
        row = session.exec(
            select(InboxUpdate).where(InboxUpdate.chat_id == chat).order_by(col(InboxUpdate.id))
        ).all()[-1]
        assert row.processed_at is not None and row.attempts == 1


async def test_a_row_taken_as_fresh_that_was_done_meanwhile_leaves_no_trace(
    harness: Harness,
) -> None:
    """The mark still checks the row: were a row wrongly taken for fresh (done by someone
    else meanwhile), the handling is rolled back whole and nothing is said twice."""
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    chat = h.ids["qian.hao"]
    raw = raw_message(chat, "/help", update_id=7001)
    [row] = store_new(h.engine, [raw], h.clock)
    with Session(h.engine) as session:
        session.execute(
            sql_update(InboxUpdate)
            .where(col(InboxUpdate.id) == row.id)
            .values(processed_at=h.clock.now(), attempts=1)
        )
        session.commit()
        queued = session.exec(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.chat_id == chat)
        ).one()
    assert await h.service.runner.handle(raw, inbox_id=row.id, fresh=True) == "taken"
    with Session(h.engine) as session:
        assert (
            session.exec(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.chat_id == chat)
            ).one()
            == queued
        )
        done = session.get(InboxUpdate, row.id)
        assert done is not None and done.attempts == 1


async def test_the_outbox_sends_while_a_batch_is_handled_at_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Updates that came in one getUpdates answer, handled at once one after the other: the
    loop gets a turn between two of them, so the outbox's pass goes on meanwhile and the
    first answers leave before the last update of the batch is handled (a handling that
    never waits gives the loop no turn of its own: every answer waited for the last)."""
    h = harness
    real = await enterprise_with_help(h)
    chat = h.ids["qian.hao"]
    order: list[str] = []

    async def noted(update: Any, context: Any) -> None:
        order.append("handled")
        await real(update, context)

    answer_help_with(h, monkeypatch, noted)
    sending = SendingBot.send_text

    async def sent(self: SendingBot, *args: Any, **kwargs: Any) -> int:
        order.append("sent")
        return await sending(self, *args, **kwargs)

    monkeypatch.setattr(SendingBot, "send_text", sent)
    before, at_once = len(h.emu.sent(chat)), h.service.inbox.handled_at_once
    for _ in range(BATCH):  # queued together: one getUpdates answer carries them all
        h.emu.send_text(chat, "/help")
    await h.emu.wait_for(lambda: len(h.emu.sent(chat)) >= before + BATCH, timeout=8.0)

    assert h.service.inbox.handled_at_once == at_once + BATCH
    last_handled = len(order) - 1 - order[::-1].index("handled")
    assert order.count("sent") == BATCH and order.index("sent") < last_handled, order


BATCH = 8
