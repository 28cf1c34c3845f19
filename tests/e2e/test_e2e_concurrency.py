"""Claiming under concurrency: several squad members press Claim at the same moment, in
their private chats or in the squad's group; exactly one owns the ticket and the others are
told who. Below the chat, threads with sessions of their own race `handling.claim` on SQLite
and on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, func, select

from models import filing, handling
from models.db import is_busy
from models.desk import Desk, DeskError
from models.org import Person
from models.people import Actor, active_memberships
from models.ticket import Ticket, TicketEvent
from models.zone.config import read_zone
from models.zone.load import load_and_apply
from tests.e2e.builders import filed_ticket, zone_with_people
from tests.harness import EXAMPLE_ZONE, Harness, zone_database

SQUAD_PV = ("liu.yang", "zhou.jun", "xu.hui")
NAMES = {"liu.yang": "刘洋", "zhou.jun": "周军", "xu.hui": "徐慧"}


def claims_of(h: Harness, number: str) -> tuple[Ticket, int]:
    with Session(h.engine) as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        claimed = session.exec(
            select(func.count())
            .select_from(TicketEvent)
            .where(TicketEvent.ticket_id == ticket.id, TicketEvent.action == "claimed")
        ).one()
        return ticket, int(claimed)


def key_of(h: Harness, person_id: int | None) -> str:
    with Session(h.engine) as session:
        person = session.get(Person, person_id)
        assert person is not None
        return person.key


async def check_one_owner(h: Harness, number: str, queries: dict[str, str]) -> str:
    answers = {who: await h.answered(q) for who, q in queries.items()}
    await h.settle()
    ticket, claimed = claims_of(h, number)
    assert ticket.state == "claimed" and claimed == 1
    owner = key_of(h, ticket.owner_id)
    assert owner in queries
    for who, answer in answers.items():
        if who == owner:
            assert answer["text"] == f"已认领 {number}" and not answer["show_alert"]
        else:
            assert answer["show_alert"], answer
            assert NAMES[owner] in answer["text"] and number in answer["text"], answer
    # the enterprise hears of exactly one owner
    told = [t for t in h.texts(h.ids["qian.hao"]) if "认领处理" in t]
    assert len(told) == 1 and NAMES[owner] in told[0]
    return owner


async def test_simultaneous_claims_from_private_cards_have_one_owner(
    any_harness: Harness,
) -> None:
    """No group bound: every member has a card (and a Claim button) of their own."""
    h = any_harness
    await zone_with_people(h, members=SQUAD_PV[1:])
    number, _ = await filed_ticket(h)
    cards = {who: await h.said(h.ids[who], f"新工单 {number}") for who in SQUAD_PV}
    await h.settle()

    # all presses are queued before the bot gets to run
    queries = {who: h.press(who, cards[who], "认领") for who in SQUAD_PV}
    owner = await check_one_owner(h, number, queries)

    # every copy of the card now names the owner and has no Claim button left
    for who in SQUAD_PV:
        card = next(
            m for m in h.emu.sent(h.ids[who]) if m["message_id"] == cards[who]["message_id"]
        )
        assert NAMES[owner] in card["text"]
        assert not (card.get("reply_markup") or {}).get("inline_keyboard")


async def test_simultaneous_claims_in_the_group_have_one_owner(any_harness: Harness) -> None:
    h = any_harness
    group = (await zone_with_people(h, members=SQUAD_PV[1:], group=True)).group
    assert group is not None
    number, _ = await filed_ticket(h, category="杆线迁移", text="电线杆挡住了施工道路")
    card = await h.said(group, f"新工单 {number}")
    await h.settle()

    queries = {who: h.press(who, card, "认领") for who in SQUAD_PV}
    owner = await check_one_owner(h, number, queries)
    now = next(m for m in h.emu.sent(group) if m["message_id"] == card["message_id"])
    assert NAMES[owner] in now["text"]


# --- the domain, raced by threads ------------------------------------------------------------
NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
RACERS = ("liu.yang", "zhou.jun", "xu.hui", "wu.gang")  # squad PV in the example zone
ROUNDS = 5


def actor(session: Session, key: str) -> Actor:
    person = session.exec(select(Person).where(Person.key == key)).one()
    assert person.id is not None
    return Actor(person=person, memberships=active_memberships(session, person.id))


def file_ticket(engine: Engine, text: str) -> int:
    with Session(engine, expire_on_commit=False) as session:
        desk = Desk(session, NOW, read_zone(session))
        enterprise = actor(session, "qian.hao")
        filing.start_draft(desk, enterprise)
        filing.choose_category(desk, enterprise, "water")
        filing.describe(desk, enterprise, text)
        filing.choose_urgency(desk, enterprise, "normal")
        ticket = filing.submit(desk, enterprise)
        session.commit()
        assert ticket.id is not None
        return ticket.id


def race(engine: Engine, ticket_id: int) -> dict[str, Any]:
    """Every racer claims at once, each in its own session and thread, retrying a busy store
    as the inbox does. Returns who won and what the others were told."""
    barrier = threading.Barrier(len(RACERS))
    results: dict[str, Any] = {}

    def attempt(key: str) -> None:
        try:
            ready = False
            while True:
                with Session(engine, expire_on_commit=False) as session:
                    desk = Desk(session, NOW, read_zone(session))
                    who = actor(session, key)
                    ticket = session.get(Ticket, ticket_id)
                    if not ready:
                        barrier.wait(timeout=10)
                        ready = True
                    try:
                        handling.claim(desk, who, ticket)
                        session.commit()
                        results[key] = "won"
                        return
                    except DeskError as refusal:
                        session.rollback()
                        results[key] = refusal
                        return
                    except OperationalError as exc:
                        session.rollback()
                        if not is_busy(exc):
                            raise
        except BaseException as exc:  # reported by the test, not lost in the thread
            results[key] = exc

    threads = [threading.Thread(target=attempt, args=(key,)) for key in RACERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results


def check_race(engine: Engine) -> None:
    for round_ in range(ROUNDS):
        ticket_id = file_ticket(engine, f"第{round_}次停水")
        results = race(engine, ticket_id)
        winners = [key for key, outcome in results.items() if outcome == "won"]
        assert len(winners) == 1, results
        with Session(engine) as session:
            ticket = session.get(Ticket, ticket_id)
            assert ticket is not None and ticket.state == "claimed"
            owner = session.get(Person, ticket.owner_id)
            assert owner is not None and owner.key == winners[0]
            claimed = session.exec(
                select(func.count())
                .select_from(TicketEvent)
                .where(TicketEvent.ticket_id == ticket_id, TicketEvent.action == "claimed")
            ).one()
            assert claimed == 1
        for key, outcome in results.items():
            if key == winners[0]:
                continue
            assert isinstance(outcome, DeskError), (key, outcome)
            assert outcome.key == "claim.taken" and outcome.params["owner"] == owner.name


def test_threads_racing_claim_on_sqlite_leave_one_owner(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    try:
        check_race(engine)
    finally:
        engine.dispose()


@pytest.fixture
def pg_zone(pg_engine: Engine) -> Iterator[Engine]:
    load_and_apply(pg_engine, EXAMPLE_ZONE)
    yield pg_engine


@pytest.mark.postgres
def test_threads_racing_claim_on_postgresql_leave_one_owner(pg_zone: Engine) -> None:
    check_race(pg_zone)
