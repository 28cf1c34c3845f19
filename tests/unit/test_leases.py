"""Leases on the injected clock, on SQLite and PostgreSQL: a row one process holds is left
alone by the others until its lease runs out, then taken over; renewing (the heartbeat)
keeps it; releasing frees it at once; work that is done is never taken. Stored updates are
taken a chat at a time, in order; on PostgreSQL, processes taking the same rows at the same
moment each win different ones."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import StatementError
from sqlmodel import Session, col, select
from telegram import Bot

from bot.archive import Archive
from bot.heartbeat import Heartbeat
from bot.inbox.storage import Waiting, inbox_leases, next_waiting, store_updates, take_in_order
from bot.outbox.queue import outbox_leases, ready_heads
from migrations.runner import upgrade
from models.clock import FakeClock
from models.db import make_engine
from models.leases import Leases, lease_writer, process_name, release_all
from models.outbox import enqueue
from models.plumbing import InboxUpdate, OutboxMessage
from models.ticket import Attachment
from tests.e2e.builders import raw_message
from tests.e2e.test_e2e_concurrency import NOW, file_ticket
from tests.harness import zone_database

LEASE = 30.0
A, B = "host-a/101/aaaaaa", "host-b/202/bbbbbb"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgresql":
        yield request.getfixturevalue("pg_engine")
        return
    engine = make_engine(f"sqlite:///{tmp_path / 'leases.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def messages(engine: Engine, clock: FakeClock, chats: list[int]) -> list[int]:
    with Session(engine, expire_on_commit=False) as session:
        rows = [
            enqueue(session, clock.now(), chat_id=chat, template="thread.from_squad", locale="en")
            for chat in chats
        ]
        session.commit()
    return [row.id for row in rows if row.id is not None]


def outbox_of(engine: Engine, clock: FakeClock, owner: str) -> Leases:
    return outbox_leases(engine, clock, owner, LEASE)


def test_a_lease_is_taken_over_only_once_it_has_run_out(engine: Engine) -> None:
    clock = FakeClock()
    ids = messages(engine, clock, [1, 2, 3])
    a, b = outbox_of(engine, clock, A), outbox_of(engine, clock, B)
    assert a.claim(ids) == set(ids) and a.held == set(ids)
    assert b.claim(ids) == set()
    assert a.claim(ids) == set(ids)  # its own rows stay its own
    clock.advance(timedelta(seconds=LEASE - 1))
    assert b.claim(ids) == set()
    clock.advance(timedelta(seconds=1))  # the lease has run out: A died, or stalled
    assert b.claim(ids) == set(ids)
    with Session(engine) as session:
        owners = session.exec(select(OutboxMessage.lease_owner)).all()
    assert owners == [B, B, B]
    # A comes back: renewing tells it the rows are no longer its own
    assert a.renew() == 0 and a.held == set()
    assert a.claim(ids) == set()


def test_the_heartbeat_keeps_what_a_process_works_on(engine: Engine) -> None:
    clock = FakeClock()
    ids = messages(engine, clock, [1, 2])
    a, b = outbox_of(engine, clock, A), outbox_of(engine, clock, B)
    a.claim(ids)
    heartbeat = Heartbeat([a], LEASE)
    assert heartbeat.every == LEASE / 3
    for _ in range(5):  # long work: two and a half leases, renewed every third of one
        clock.advance(timedelta(seconds=LEASE / 2))
        assert heartbeat.beat() == 2
        assert b.claim(ids) == set()
    clock.advance(timedelta(seconds=LEASE))  # no beat: it died
    assert b.claim(ids) == set(ids)


def test_a_released_lease_is_free_at_once_and_work_done_is_never_taken(engine: Engine) -> None:
    clock = FakeClock()
    first, second = messages(engine, clock, [1, 2])
    a, b = outbox_of(engine, clock, A), outbox_of(engine, clock, B)
    a.claim([first, second])
    a.release([first])
    assert b.claim([first, second]) == {first} and a.held == {second}
    with Session(engine) as session:
        sent = session.get(OutboxMessage, second)
        assert sent is not None
        sent.state = "sent"
        session.add(sent)
        session.commit()
    assert a.renew() == 0  # done: let go of, not renewed
    clock.advance(timedelta(seconds=LEASE))
    assert b.claim([second]) == set()


def test_a_chat_whose_first_update_another_process_holds_is_left_out_whole(
    engine: Engine,
) -> None:
    clock = FakeClock()
    x, y = 7001, 7002
    store_updates(
        engine,
        [
            raw_message(x, "/new", update_id=1),
            raw_message(y, "/help", update_id=2),
            raw_message(x, "停水", update_id=3),
        ],
        clock,
    )
    with Session(engine) as session:
        stored = {u.update_id: u for u in session.exec(select(InboxUpdate)).all()}
    assert {u.update_id: u.chat_id for u in stored.values()} == {1: x, 2: y, 3: x}
    a = inbox_leases(engine, clock, A, LEASE)
    b = inbox_leases(engine, clock, B, LEASE)
    assert a.claim([stored[1].id]) == {stored[1].id}

    def waiting(leases: Leases) -> list[int]:
        with Session(engine) as session:
            return [u.update_id for u in next_waiting(session, leases)]

    # x's second update is free, but its first is A's: B takes only y
    assert waiting(b) == [2]
    assert [u.update_id for u in take_in_order(waiting_rows(engine, b), b)] == [2]
    clock.advance(timedelta(seconds=LEASE))
    assert waiting(b) == [1, 2, 3]  # x's two, in order, now that A's lease ran out
    taken = take_in_order(waiting_rows(engine, b), b)
    assert [u.update_id for u in taken] == [1, 2, 3]
    assert waiting(a) == []  # A, back, finds every chat B's


def waiting_rows(engine: Engine, leases: Leases) -> list[Waiting]:
    with Session(engine, expire_on_commit=False) as session:
        return next_waiting(session, leases)


def test_a_chat_is_kept_only_up_to_the_first_update_someone_else_won(engine: Engine) -> None:
    clock = FakeClock()
    x = 7001
    store_updates(engine, [raw_message(x, f"第{n}条", update_id=n) for n in range(1, 4)], clock)
    a = inbox_leases(engine, clock, A, LEASE)
    b = inbox_leases(engine, clock, B, LEASE)
    rows = waiting_rows(engine, b)  # B reads all three ...
    assert [u.update_id for u in rows] == [1, 2, 3]
    a.claim([rows[0].id])  # ... A takes the first before B's claim
    assert take_in_order(rows, b) == []
    with Session(engine) as session:
        owners = session.exec(select(InboxUpdate.lease_owner).order_by(col(InboxUpdate.id))).all()
    assert owners == [A, None, None]  # what B won after the gap went back at once
    assert b.held == set()


def test_a_single_process_clears_what_a_killed_run_left(engine: Engine) -> None:
    clock = FakeClock()
    ids = messages(engine, clock, [1, 2])
    outbox_of(engine, clock, A).claim(ids)
    assert release_all(engine, (OutboxMessage, InboxUpdate)) == 2
    assert outbox_of(engine, clock, B).claim(ids) == set(ids)


def test_on_sqlite_leases_skip_the_disk_wait_and_the_connection_stays_durable(
    tmp_path: Path,
) -> None:
    """A lease on SQLite is written with synchronous=NORMAL; the connection goes back to
    FULL afterwards, even when the write fails, so nothing else is ever less durable."""
    engine = create_engine(f"sqlite:///{tmp_path / 'one.db'}", pool_size=1, max_overflow=0)
    event.listen(engine, "connect", lambda conn, _record: conn.execute("PRAGMA synchronous=2"))
    upgrade(engine)
    clock = FakeClock()
    ids = messages(engine, clock, [1, 2])
    leases = outbox_of(engine, clock, A)

    def synchronous() -> int:
        with engine.connect() as conn:  # the pool's one connection
            return int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())

    assert synchronous() == 2
    assert leases.claim(ids) == set(ids)
    assert synchronous() == 2
    leases.renew()
    leases.release()
    assert synchronous() == 2
    leases.clock = NaiveClock()  # a bug: the write fails half way
    with pytest.raises(StatementError, match="naive datetime"):
        leases.claim(ids)
    assert synchronous() == 2
    engine.dispose()


def test_on_a_sqlite_file_leases_are_written_without_switching_any_pragma(
    tmp_path: Path,
) -> None:
    """The lease writer's connections are set once (synchronous=NORMAL, a short busy
    timeout) when they open: a claim, a renewal and a release are their own statements
    and a commit, nothing else, on either engine."""
    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    upgrade(engine)
    clock = FakeClock()
    ids = messages(engine, clock, [1, 2])
    leases = outbox_of(engine, clock, A)
    writer = lease_writer(engine)
    assert writer is not None and writer is lease_writer(engine)  # one for the engine
    seen: list[str] = []
    for each in (engine, writer):
        event.listen(each, "before_cursor_execute", lambda *a: seen.append(a[2]))
    assert leases.claim(ids) == set(ids)
    leases.renew()
    leases.release()
    assert seen and not [sql for sql in seen if "PRAGMA" in sql.upper()]
    with writer.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
    assert lease_writer(make_engine("sqlite://")) is None  # in memory: the engine itself
    engine.dispose()


def test_the_one_process_on_a_sqlite_file_keeps_its_leases_in_memory(tmp_path: Path) -> None:
    """SQLite has one process per file: its inbox and outbox leases are noted in memory,
    no statement written, while a lease found in the table (another program's, or a killed
    run's) still keeps the selections off the row."""
    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    upgrade(engine)
    clock = FakeClock()
    ids = messages(engine, clock, [1, 2, 3])
    outbox_of(engine, clock, B).claim(ids[2:])  # written: B is not solo
    solo = outbox_leases(engine, clock, A, LEASE, solo=True)
    writer = lease_writer(engine)
    assert writer is not None
    seen: list[str] = []
    for each in (engine, writer):
        event.listen(each, "before_cursor_execute", lambda *a: seen.append(a[2]))
    assert solo.claim(ids[:2]) == set(ids[:2]) == solo.held
    assert solo.renew() == 2
    solo.release([ids[0]])
    assert solo.held == {ids[1]}
    solo.release()
    assert solo.held == set() and seen == []  # not one statement
    with Session(engine) as session:
        heads = ready_heads(session, clock.now(), 10, A)
    assert {row.id for row in heads} == set(ids[:2])  # B's lease is read and kept to
    clock.advance(timedelta(seconds=LEASE))  # B died: its lease ran out
    with Session(engine) as session:
        heads = ready_heads(session, clock.now(), 10, A)
    assert {row.id for row in heads} == set(ids)
    foreign = [row.id for row in heads if row.lease_owner not in (None, A)]
    assert foreign == [ids[2]]
    assert solo.claim((row.id for row in heads), foreign=foreign) == set(ids)
    assert [sql for sql in seen if sql.lstrip().upper().startswith("UPDATE")]  # B's row only
    with Session(engine) as session:
        owners = {row.id: row.lease_owner for row in session.exec(select(OutboxMessage))}
    assert owners == {ids[0]: None, ids[1]: None, ids[2]: A}  # taken over in the table
    engine.dispose()


class NaiveClock(FakeClock):
    def now(self) -> datetime:
        return super().now().replace(tzinfo=None)


def test_an_attachment_is_fetched_by_the_process_that_leased_it(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    ticket_id = file_ticket(engine, "现场照片")
    clock = FakeClock(NOW)
    with Session(engine) as session:
        session.add(
            Attachment(ticket_id=ticket_id, kind="photo", file_id="F1", added_at=clock.now())
        )
        session.commit()
    bot = Bot("123456789:" + "A" * 35)  # never called: nothing is fetched here
    here, there = (
        Archive(engine, bot, tmp_path / "files", clock=clock, owner=owner, lease_seconds=LEASE)
        for owner in (A, B)
    )
    assert [att.file_id for att, _number in here._waiting()] == ["F1"]
    assert there._waiting() == []
    clock.advance(timedelta(seconds=LEASE))  # the first died before fetching it
    assert [att.file_id for att, _number in there._waiting()] == ["F1"]
    engine.dispose()


def test_a_process_is_named_by_host_pid_and_a_random_part() -> None:
    host, pid, rest = process_name().split("/")
    assert host and int(pid) > 0 and len(rest) == 6
    assert len(process_name()) <= 64 and process_name() == process_name()


@pytest.mark.postgres
def test_processes_taking_the_same_rows_at_once_each_win_different_ones(
    pg_engine: Engine,
) -> None:
    clock = FakeClock()
    ids = messages(pg_engine, clock, list(range(1, 201)))
    racers = [outbox_of(pg_engine, clock, f"host/{n}/racer{n}") for n in range(4)]
    start = threading.Barrier(len(racers))
    won: dict[str, set[int]] = {}

    def race(leases: Leases) -> None:
        start.wait(timeout=10)
        taken: set[int] = set()
        for _ in range(5):  # each takes what it can, as dispatch passes would
            taken |= leases.claim(ids)
        won[leases.owner] = taken

    threads = [threading.Thread(target=race, args=(r,)) for r in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(won) == len(racers)
    every = [i for taken in won.values() for i in taken]
    assert sorted(every) == sorted(ids)  # each row won once, by one of them
