"""An update's sender is read as plain rows (`actor_for`), and so are the people a ticket
names (`Desk.person`): the session tracks nothing until a handler asks for the person to
change it, and from then on what is read of them is that object, changes included."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event
from sqlmodel import Session, select

from models.desk import Desk
from models.org import Membership, Person, Role
from models.people import Actor, PersonRow, actor_for
from models.zone.config import read_zone
from tests.harness import zone_database


def bind(session: Session, key: str, user: int) -> Person:
    person = session.exec(select(Person).where(Person.key == key)).one()
    person.telegram_user_id = user
    session.add(person)
    session.commit()
    return person


def test_the_sender_is_read_without_objects_for_the_session(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    with Session(engine) as session:
        zhou = bind(session, "zhou.jun", 4242)
        roles = session.exec(
            select(Membership).where(Membership.person_id == zhou.id, Membership.active)
        ).all()
        session.expunge_all()

        actor = actor_for(session, 4242)

        assert actor is not None
        assert len(session.identity_map) == 0  # nothing loaded as an object
        assert isinstance(actor.me, PersonRow)
        assert (actor.id, actor.me.name, actor.me.telegram_user_id) == (zhou.id, "周军", 4242)
        assert actor.roles() == {m.role for m in roles} and actor.is_squad_member
        assert actor.squad_ids == {m.squad_id for m in roles if m.squad_id is not None}
        assert actor_for(session, 999) is None
    engine.dispose()


def test_the_person_is_loaded_to_change_and_then_read_as_changed(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    with Session(engine) as session:
        bind(session, "zhou.jun", 4242)
        session.expunge_all()
        actor = actor_for(session, 4242)
        assert actor is not None and actor.me.language != "en"

        actor.person.language = "en"  # /lang: the object, loaded now
        assert isinstance(actor.person, Person) and actor.person is actor.person
        assert actor.me is actor.person and actor.me.language == "en"
        session.add(actor.person)
        session.commit()
        again = actor_for(session, 4242)
        assert again is not None and again.me.language == "en"
    engine.dispose()


def test_a_person_made_in_the_same_unit_of_work_is_found(tmp_path: Path) -> None:
    """An invite redeemed: the person and their role are added, not yet written, and the
    sender is read again in the same transaction."""
    engine = zone_database(tmp_path)
    with Session(engine) as session:
        person = Person(key="new.contact", name="新联系人", telegram_user_id=777)
        session.add(person)
        session.flush()
        assert person.id is not None
        session.add(Membership(person_id=person.id, role=Role.ENTERPRISE, project_id=None))

        actor = actor_for(session, 777)

        assert actor is not None and actor.id == person.id and actor.is_enterprise
        session.rollback()
        assert actor_for(session, 777) is None
    engine.dispose()


def test_an_actor_built_from_objects_reads_them() -> None:
    person = Person(id=5, key="p5", name="P5", language="en")
    actor = Actor(person, [Membership(person_id=5, role=Role.MANAGER)])
    assert actor.me is person and actor.person is person and actor.id == 5
    assert actor.is_manager and not actor.is_squad_member


def test_a_desk_reads_the_people_a_ticket_names_as_rows(tmp_path: Path) -> None:
    """Its contact, owner or leader, to tell or to name: a row, read once per unit of work;
    the session's object when it holds one, which may have been changed meanwhile."""
    engine = zone_database(tmp_path)
    with Session(engine) as session:
        zhou = session.exec(select(Person).where(Person.key == "zhou.jun")).one()
        assert zhou.id is not None
        session.expunge_all()
        desk = Desk(session, datetime.now(UTC), read_zone(session))
        statements: list[str] = []
        event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

        first = desk.person(zhou.id)
        again = desk.person(zhou.id)

        assert isinstance(first, PersonRow) and again is first and first.name == "周军"
        assert len(statements) == 1 and len(session.identity_map) == 0
        assert desk.person(None) is None and desk.person(999_999) is None

        loaded = session.get(Person, zhou.id)
        assert loaded is not None
        loaded.language = "en"  # changed in this unit of work, not yet written
        assert desk.person(zhou.id) is loaded
    engine.dispose()
