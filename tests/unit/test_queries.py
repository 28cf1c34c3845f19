"""The read side (models.queries): what /my and /ticket show, to whom, with no chat platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models import filing, handling, queries
from models.desk import Desk
from models.lifecycle import State
from models.org import Person
from models.people import Actor, active_memberships
from models.ticket import Ticket
from models.zone.config import read_zone
from tests.harness import zone_database

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def actor(session: Session, key: str) -> Actor:
    person = session.exec(select(Person).where(Person.key == key)).one()
    assert person.id is not None
    return Actor(person=person, memberships=active_memberships(session, person.id))


def filed_and_claimed(engine: Engine) -> str:
    """qian.hao (PV01) files a ticket; zhou.jun (squad PV) claims it and notes something."""
    with Session(engine, expire_on_commit=False) as session:
        desk = Desk(session, NOW, read_zone(session))
        ent = actor(session, "qian.hao")
        filing.start_draft(desk, ent)
        filing.choose_category(desk, ent, "water")
        filing.describe(desk, ent, "工地停水")
        filing.choose_urgency(desk, ent, "normal")
        ticket = filing.submit(desk, ent)
        session.commit()
    with Session(engine, expire_on_commit=False) as session:
        desk = Desk(session, NOW + timedelta(minutes=3), read_zone(session))
        member = actor(session, "zhou.jun")
        ticket = session.exec(select(Ticket).where(Ticket.number == ticket.number)).one()
        handling.claim(desk, member, ticket)
        handling.note(desk, member, ticket, "内部：先联系水务")
        session.commit()
        return ticket.number


def test_my_tickets_for_each_role(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    number = filed_and_claimed(engine)
    with Session(engine) as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        mine = queries.my_tickets(session, actor(session, "qian.hao")).lines
        assert [(line.number, line.state, line.category_code) for line in mine] == [
            (number, State.CLAIMED, "water")
        ]
        assert mine[0].response_due is None  # answered: claiming is a response
        assert mine[0].due == ticket.handling_due
        assert queries.my_tickets(session, actor(session, "zhou.jun")).lines
        assert [
            line.number for line in queries.my_tickets(session, actor(session, "wang.fang")).lines
        ] == [number]
        assert queries.my_tickets(session, actor(session, "hu.bin")).total == 0  # another squad
        assert queries.my_tickets(session, actor(session, "shi.lei")).total == 0  # other company
    engine.dispose()


def test_no_due_time_while_waiting_on_the_enterprise(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    number = filed_and_claimed(engine)
    with Session(engine) as session:
        desk = Desk(session, NOW + timedelta(minutes=5), read_zone(session))
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        handling.wait_for_enterprise(desk, actor(session, "zhou.jun"), ticket, "请补充施工图")
        session.commit()
        [line] = queries.my_tickets(session, actor(session, "qian.hao")).lines
        assert line.state == State.WAITING and line.due is None
    engine.dispose()


def test_ticket_view_hides_internal_notes_from_the_enterprise(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    number = filed_and_claimed(engine)
    with Session(engine) as session:
        member = queries.ticket_view(session, actor(session, "zhou.jun"), number.lower())
        enterprise = queries.ticket_view(session, actor(session, "qian.hao"), number)
        assert member is not None and enterprise is not None
        assert [h.action for h in member.history] == ["filed", "claimed", "noted"]
        assert [h.action for h in enterprise.history] == ["filed", "claimed"]
        assert member.history[0].who == "钱浩" and member.history[1].who == "周军"
        assert member.history[2].text == "内部：先联系水务"
        assert (member.number, member.state, member.description) == (
            number,
            State.CLAIMED,
            "工地停水",
        )
    engine.dispose()


def test_ticket_view_is_none_for_what_the_asker_may_not_see(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    number = filed_and_claimed(engine)
    with Session(engine) as session:
        assert queries.ticket_view(session, actor(session, "hu.bin"), number) is None
        assert queries.ticket_view(session, actor(session, "shi.lei"), number) is None
        assert queries.ticket_view(session, actor(session, "qian.hao"), "YZ-0000-0000") is None
        assert queries.ticket_view(session, actor(session, "wang.fang"), number) is not None
    engine.dispose()
