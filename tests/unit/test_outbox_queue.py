"""Choosing what the outbox sends next: lanes from templates, the due first row of each chat
(on SQLite and PostgreSQL), holds written to next_attempt_at, backoff with jitter; with
several processes, a chat whose first row another one has leased, and holds that never cut
another process's short."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.outbox.dispatcher import MAX_BACKOFF, backoff
from bot.outbox.queue import Holds, outbox_leases, ready, ready_heads, ready_hooks
from models.clock import FakeClock
from models.outbox import LANES, Lane, enqueue, lane_of, outbox_row
from models.plumbing import OutboxMessage
from tests.harness import zone_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgresql":
        yield request.getfixturevalue("pg_engine")
        return
    engine = zone_database(tmp_path)
    yield engine
    engine.dispose()


def test_lanes_follow_the_template_unless_told() -> None:
    assert lane_of("digest.morning") is Lane.BULK
    assert lane_of("ranking.monthly") is Lane.BULK
    assert lane_of("report.file") is Lane.BULK
    assert lane_of("ticket.filed") is Lane.NOW
    assert lane_of("alert.warning") is Lane.NOW
    assert all(prefix.endswith(".") for prefix, _lane in LANES)
    now = FakeClock().now()
    assert outbox_row(now, template="digest.morning", locale="zh-CN")["priority"] == Lane.BULK
    row = outbox_row(now, template="digest.morning", locale="zh-CN", priority=Lane.NOW)
    assert row["priority"] == Lane.NOW


def add(session: Session, clock: FakeClock, chat_id: int | None, template: str) -> OutboxMessage:
    row = enqueue(
        session,
        clock.now(),
        chat_id=chat_id,
        template=template,
        locale="zh-CN",
        channel="telegram" if chat_id is not None else "webhook",
    )
    session.flush()
    return row


def test_the_due_head_of_each_chat_higher_lanes_first(engine: Engine) -> None:
    clock = FakeClock()
    with Session(engine, expire_on_commit=False) as session:
        a1 = add(session, clock, 1, "thread.from_squad")
        a2 = add(session, clock, 1, "thread.from_squad")
        bulk = add(session, clock, -2, "digest.morning")
        b2 = add(session, clock, -2, "thread.from_squad")
        c1 = add(session, clock, 3, "ticket.filed")
        hook = add(session, clock, None, "alert.breach")
        a1.next_attempt_at = clock.now() + timedelta(seconds=30)  # chat 1 is held
        session.add(a1)
        session.commit()

    def heads() -> list[int | None]:
        with Session(engine) as session:
            return [row.id for row in ready_heads(session, clock.now(), 150)]

    # chat 1's second row is due, but its first is held: the chat waits whole
    assert heads() == [c1.id, bulk.id]
    assert a2.id not in heads() and b2.id not in heads()
    clock.advance(timedelta(seconds=30))
    assert heads() == [a1.id, c1.id, bulk.id]
    with Session(engine) as session:
        assert [r.id for r in ready_hooks(session, clock.now(), 150)] == [hook.id]
        assert [r.id for r in ready_heads(session, clock.now(), 2)] == [a1.id, c1.id]
        # the dispatcher's one statement finds what the two selections find
        for limit in (150, 2, 1):
            heads_, hooks_, _more = ready(session, clock.now(), limit)
            assert [r.id for r in heads_] == [
                r.id for r in ready_heads(session, clock.now(), limit)
            ]
            assert [r.id for r in hooks_] == [
                r.id for r in ready_hooks(session, clock.now(), limit)
            ]


def test_the_selection_says_whether_more_waits_behind_what_it_found(engine: Engine) -> None:
    """After a pass has sent what it found, the dispatcher reads again at once only if a
    chat had a second row or a batch was full; else it waits for news (a poke)."""
    clock = FakeClock()
    with Session(engine, expire_on_commit=False) as session:
        add(session, clock, 1, "thread.from_squad")
        add(session, clock, 2, "ticket.filed")
        add(session, clock, None, "alert.breach")
        session.commit()
        assert ready(session, clock.now(), 150).more is False
        assert ready(session, clock.now(), 2).more is True  # a full batch of heads
        add(session, clock, 2, "thread.from_squad")  # chat 2's second row
        session.commit()
        found = ready(session, clock.now(), 150)
        assert found.more is True and len(found.heads) == 2 and len(found.hooks) == 1


def test_a_hold_is_written_down_and_released_in_real_time(engine: Engine) -> None:
    clock = FakeClock()
    with Session(engine, expire_on_commit=False) as session:
        row = add(session, clock, 1, "thread.from_squad")
        session.commit()
    assert row.id is not None
    holds = Holds(engine, clock)
    holds.hold({row.id: 0.05})
    with Session(engine) as session:
        stored = session.get(OutboxMessage, row.id)
        assert stored is not None
        assert stored.next_attempt_at == clock.now() + timedelta(seconds=0.05)
        assert ready_heads(session, clock.now(), 150) == []
    time.sleep(0.06)  # the injected clock stands still; the process's own time does not
    holds.release_due()
    with Session(engine) as session:
        assert [r.id for r in ready_heads(session, clock.now(), 150)] == [row.id]
    assert len(holds) == 0


def test_a_chat_whose_first_row_another_process_sends_waits_whole(engine: Engine) -> None:
    clock = FakeClock()
    with Session(engine, expire_on_commit=False) as session:
        c1 = add(session, clock, 1, "thread.from_squad")
        c2 = add(session, clock, 1, "thread.from_squad")
        d1 = add(session, clock, 2, "thread.from_squad")
        hook = add(session, clock, None, "alert.breach")
        session.commit()
    elsewhere = outbox_leases(engine, clock, "host-b/202/bbbbbb", 30)
    assert elsewhere.claim([c1.id, hook.id]) == {c1.id, hook.id}

    def heads(owner: str) -> list[int | None]:
        with Session(engine) as session:
            found = ready_heads(session, clock.now(), 150, owner)
            found += ready_hooks(session, clock.now(), 150, owner)
            at_once, hooks_at_once, _more = ready(session, clock.now(), 150, owner)
        assert [row.id for row in at_once + hooks_at_once] == [row.id for row in found]
        return [row.id for row in found]

    # chat 1's second row is due, but its first is being sent by the other process
    assert heads("host-a/101/aaaaaa") == [d1.id]
    assert heads("host-b/202/bbbbbb") == [c1.id, d1.id, hook.id]
    clock.advance(timedelta(seconds=30))  # that process died: its lease ran out
    assert heads("host-a/101/aaaaaa") == [c1.id, d1.id, hook.id]
    assert c2.id not in heads("host-a/101/aaaaaa")


def test_one_processes_hold_never_cuts_anothers_short(engine: Engine) -> None:
    clock = FakeClock()
    with Session(engine, expire_on_commit=False) as session:
        row = add(session, clock, 1, "thread.from_squad")
        session.commit()
    assert row.id is not None
    told_to_wait, pacing = Holds(engine, clock), Holds(engine, clock)  # two processes
    told_to_wait.hold({row.id: 30})  # a 429's retry_after
    pacing.hold({row.id: 0.05})  # the other's own pacer: shorter, so it writes nothing

    def due_at() -> object:
        with Session(engine) as session:
            stored = session.get(OutboxMessage, row.id)
            assert stored is not None
            return stored.next_attempt_at

    assert due_at() == clock.now() + timedelta(seconds=30)
    time.sleep(0.06)
    pacing.release_due()  # its hold has passed, but the row is held by the other's
    assert due_at() == clock.now() + timedelta(seconds=30)
    assert len(pacing) == 0 and len(told_to_wait) == 1


def test_backoff_doubles_with_jitter_up_to_its_ceiling() -> None:
    assert backoff(0, lambda: 0.0) == 0.25 and backoff(0, lambda: 1.0) == 0.5
    assert backoff(3, lambda: 0.0) == 2.0 and backoff(3, lambda: 1.0) == 4.0
    assert backoff(40, lambda: 1.0) == MAX_BACKOFF
    draws = {backoff(5) for _ in range(50)}
    assert len(draws) > 1 and all(8.0 <= d <= 16.0 for d in draws)
