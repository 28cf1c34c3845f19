"""Leadership's actions in the domain, without a chat: what a transfer does to the owner,
the leader and the clocks of a ticket in each state, and that a refusal writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from models import filing, handling, interventions
from models.desk import Desk, DeskError
from models.lifecycle import State
from models.org import Membership, Person, Role, Squad
from models.people import Actor, active_memberships
from models.plumbing import OutboxMessage
from models.ticket import Ticket, TicketEvent
from models.zone.config import read_zone
from tests.harness import zone_database

R = TypeVar("R")
NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def actor(session: Session, key: str) -> Actor:
    person = session.exec(select(Person).where(Person.key == key)).one()
    assert person.id is not None
    return Actor(person=person, memberships=active_memberships(session, person.id))


def at(engine: Engine, moment: datetime, fn: Callable[[Desk, Session], R]) -> R:
    with Session(engine, expire_on_commit=False) as session:
        result = fn(Desk(session, moment, read_zone(session)), session)
        session.commit()
        return result


def filed(engine: Engine) -> int:
    """qian.hao (PV01) files a ticket at NOW; its id."""

    def file(desk: Desk, session: Session) -> int:
        ent = actor(session, "qian.hao")
        filing.start_draft(desk, ent)
        filing.choose_category(desk, ent, "planning_permit")
        filing.describe(desk, ent, "变电站规划许可")
        filing.choose_urgency(desk, ent, "normal")
        ticket = filing.submit(desk, ent)
        assert ticket.id is not None
        return ticket.id

    return at(engine, NOW, file)


def by(
    engine: Engine, moment: datetime, key: str, fn: Callable[..., object], tid: int, *args: object
) -> None:
    at(engine, moment, lambda desk, s: fn(desk, actor(s, key), s.get(Ticket, tid), *args))


def read(engine: Engine, tid: int) -> Ticket:
    with Session(engine) as session:
        ticket = session.get(Ticket, tid)
        assert ticket is not None
        return ticket


def squad_id(engine: Engine, code: str) -> int:
    with Session(engine) as session:
        found = session.exec(select(Squad).where(Squad.code == code)).one().id
    assert found is not None
    return found


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return zone_database(tmp_path)


def test_a_waiting_ticket_moved_away_from_its_owner_runs_its_clock_again(engine: Engine) -> None:
    tid = filed(engine)
    by(engine, NOW + timedelta(minutes=3), "zhou.jun", handling.claim, tid)
    by(engine, NOW + timedelta(minutes=30), "zhou.jun", handling.wait_for_enterprise, tid, "图纸")
    paused = read(engine, tid)
    assert paused.state == State.WAITING and paused.handling_remaining_s is not None
    left = timedelta(seconds=paused.handling_remaining_s)
    moved_at = NOW + timedelta(hours=5)
    by(engine, moved_at, "liu.yang", interventions.transfer, tid, "HV", "属于高压项目")
    after = read(engine, tid)
    assert (after.state, after.owner_id, after.squad_id) == (
        State.OPEN,
        None,
        squad_id(engine, "HV"),
    )
    # the time it had left, from now: waiting on the enterprise never counted
    assert after.handling_due == moved_at + left
    assert after.paused_at is None and after.handling_remaining_s is None
    assert after.response_due == paused.response_due and after.next_alert_at is not None
    with Session(engine) as session:
        event = session.exec(
            select(TicketEvent).where(
                TicketEvent.ticket_id == tid, TicketEvent.action == "transferred"
            )
        ).one()
    assert (event.from_state, event.to_state) == (State.WAITING, State.OPEN)


def test_an_owner_in_both_squads_keeps_the_ticket(engine: Engine) -> None:
    tid = filed(engine)
    by(engine, NOW + timedelta(minutes=3), "zhou.jun", handling.claim, tid)
    with Session(engine) as session:
        zhou = actor(session, "zhou.jun")
        session.add(
            Membership(person_id=zhou.id, role=Role.MEMBER, squad_id=squad_id(engine, "HV"))
        )
        session.commit()
    before = read(engine, tid)
    by(engine, NOW + timedelta(minutes=9), "wang.fang", interventions.transfer, tid, "HV", "转办")
    after = read(engine, tid)
    assert (after.state, after.owner_id) == (State.CLAIMED, before.owner_id)
    assert after.handling_due == before.handling_due


def test_a_leader_who_cannot_follow_the_ticket_lets_go(engine: Engine) -> None:
    tid = filed(engine)
    by(engine, NOW + timedelta(minutes=1), "liu.yang", interventions.take_on, tid)
    assert read(engine, tid).led_by is not None
    by(engine, NOW + timedelta(minutes=2), "liu.yang", interventions.transfer, tid, "HV", "转")
    assert read(engine, tid).led_by is None  # the PV lead cannot see an HV ticket
    by(engine, NOW + timedelta(minutes=3), "wang.fang", interventions.take_on, tid)
    by(engine, NOW + timedelta(minutes=4), "wang.fang", interventions.transfer, tid, "EV", "转")
    with Session(engine) as session:
        manager = actor(session, "wang.fang")
    assert read(engine, tid).led_by == manager.id  # a manager follows it anywhere


@pytest.mark.parametrize(
    ("key", "args", "refusal"),
    [
        ("liu.yang", ("NOPE", "转"), "transfer.no_such_squad"),
        ("liu.yang", ("PV", "转"), "transfer.same_squad"),
        ("liu.yang", ("HV", "  \u200b "), "error.empty_text"),
        ("zhou.jun", ("HV", "转"), "error.not_allowed"),
        ("ma.lin", ("HV", "转"), "error.no_such_ticket"),
    ],
)
def test_a_refused_transfer_writes_nothing(
    engine: Engine, key: str, args: tuple[str, str], refusal: str
) -> None:
    tid = filed(engine)

    def counts() -> tuple[int, int]:
        with Session(engine) as session:
            return (
                session.exec(select(func.count()).select_from(OutboxMessage)).one(),
                session.exec(select(func.count()).select_from(TicketEvent)).one(),
            )

    before = counts()
    with pytest.raises(DeskError) as caught:
        by(engine, NOW + timedelta(minutes=5), key, interventions.transfer, tid, *args)
    assert caught.value.key == refusal
    assert counts() == before and read(engine, tid).squad_id == squad_id(engine, "PV")


def test_closed_and_resolved_tickets_are_neither_urged_led_nor_moved(engine: Engine) -> None:
    tid = filed(engine)
    by(engine, NOW + timedelta(minutes=3), "zhou.jun", handling.claim, tid)
    by(engine, NOW + timedelta(minutes=9), "zhou.jun", handling.resolve, tid, "已办结")
    attempts: list[tuple[str, Callable[..., object], tuple[str, ...]]] = [
        ("wang.fang", interventions.urge, ("快",)),
        ("liu.yang", interventions.take_on, ()),
        ("liu.yang", interventions.transfer, ("HV", "转")),
    ]
    for key, fn, args in attempts:
        with pytest.raises(DeskError) as caught:
            by(engine, NOW + timedelta(minutes=10), key, fn, tid, *args)
        assert caught.value.key == "error.bad_state"
    with Session(engine) as session:
        actions = session.exec(
            select(TicketEvent.action)
            .where(TicketEvent.ticket_id == tid)
            .order_by(col(TicketEvent.id))
        ).all()
    assert actions == ["filed", "claimed", "resolved"]
