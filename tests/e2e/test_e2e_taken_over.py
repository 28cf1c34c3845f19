"""Updates under leases, on the running bot and the injected clock: an update another process
holds is left alone until its lease runs out, then handled here, once; and on PostgreSQL a
handling whose update another process took over meanwhile leaves no trace, so the update is
handled once, by the process that holds it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update as sql_update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select
from telegram import Update
from telegram.ext import ContextTypes, TypeHandler

from bot.inbox.storage import chat_of, next_waiting, payload_of
from models.plumbing import InboxUpdate, Invite, OutboxMessage
from tests.e2e.builders import raw_message
from tests.harness import Harness, start_harness

ELSEWHERE = "host-b/202/bbbbbb"  # another squadbot process
LEASE = timedelta(seconds=30)


def store_held_elsewhere(h: Harness, raw: dict[str, object]) -> int:
    """Store an update as another process would that took it at once."""
    payload, digest = payload_of(raw)
    with Session(h.engine) as session:
        row = InboxUpdate(
            update_id=int(str(raw["update_id"])),
            digest=digest,
            payload=payload,
            received_at=h.clock.now(),
            chat_id=chat_of(raw),
            lease_owner=ELSEWHERE,
            lease_until=h.clock.now() + LEASE,
        )
        session.add(row)
        session.commit()
        assert row.id is not None
        return row.id


def queued_for(h: Harness, chat: int) -> int:
    with Session(h.engine) as session:
        return session.exec(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.chat_id == chat)
        ).one()


async def test_an_update_another_process_holds_waits_for_its_lease(
    any_harness: Harness,
) -> None:
    h = any_harness
    qian = await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    before = len(h.emu.sent(qian))
    raw = raw_message(qian, "/help", update_id=9001)
    inbox_id = store_held_elsewhere(h, raw)
    h.service.inbox.wake()
    with Session(h.engine) as session:
        assert next_waiting(session, h.service.inbox.leases) == []
    assert await h.service.runner.handle(raw, inbox_id=inbox_id) == "taken"
    assert queued_for(h, qian) == before
    h.clock.advance(LEASE)  # the other process died: its lease ran out
    h.service.inbox.wake()
    await h.emu.wait_for(lambda: len(h.emu.sent(qian)) > before, timeout=8.0)
    await h.settle()
    assert len(h.emu.sent(qian)) == before + 1
    with Session(h.engine) as session:
        row = session.get(InboxUpdate, inbox_id)
        assert row is not None and row.processed_at is not None and row.attempts == 1
        assert row.lease_owner is None


@pytest.fixture
async def pg_harness(pg_engine: Engine, tmp_path: Path) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path, engine=pg_engine)
    try:
        yield h
    finally:
        await h.stop()


async def test_a_handling_whose_update_was_taken_over_leaves_no_trace(
    pg_harness: Harness,
) -> None:
    h = pg_harness
    await h.settle()
    walk_in = 8101
    h.emu.add_user(walk_in, "企业8101")
    code = h.invite("enterprise")
    outcomes: list[str] = []
    h.service.inbox.on_handled = lambda outcome, _seconds: outcomes.append(outcome)
    stolen: list[int] = []

    async def steal(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """While the update is being handled, another process takes it over (its lease
        ran out: this one stalled), once."""
        if stolen:
            return
        stolen.append(update.update_id)
        with Session(h.engine) as session:
            session.execute(
                sql_update(InboxUpdate)
                .where(col(InboxUpdate.update_id) == update.update_id)
                .values(lease_owner=ELSEWHERE, lease_until=h.clock.now() + LEASE)
            )
            session.commit()

    h.service.app.add_handler(TypeHandler(Update, steal), group=-1)
    h.emu.send_text(walk_in, f"/start {code}")
    await h.emu.wait_for(lambda: "taken" in outcomes, timeout=8.0, recheck=0.05)
    # the invite was redeemed inside the handling: rolled back with it, nothing said
    with Session(h.engine) as session:
        invite = session.exec(select(Invite).where(Invite.code == code)).one()
        assert invite.used_at is None
    assert queued_for(h, walk_in) == 0 and h.emu.sent(walk_in) == []
    h.clock.advance(LEASE)  # the other process died too: the update is free again
    h.service.inbox.wake()
    await h.emu.wait_for(lambda: len(h.emu.sent(walk_in)) >= 2, timeout=8.0)
    await h.settle()
    texts = [m.get("text") or "" for m in h.emu.sent(walk_in)]
    assert sum("已作为企业联系人开通" in t for t in texts) == 1
    assert outcomes.count("taken") == 1 and outcomes.count("done") >= 1
    with Session(h.engine) as session:
        row = session.exec(select(InboxUpdate).where(InboxUpdate.update_id == stolen[0])).one()
        assert row.processed_at is not None and row.attempts == 1
