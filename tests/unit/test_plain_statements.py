"""What the filing path writes as plain statements rather than objects: ticket numbers drawn
by one upsert (never the same number twice, even from two transactions at once), a page
button given the id of the message it belongs to, whether its token is written yet or not,
and a draft changed only if it is still there."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models import filing
from models.desk import Desk, DeskError
from models.notify import write_buttons
from models.org import Person, Project
from models.people import Actor
from models.ticket import ButtonAction, Draft, TicketCounter
from models.zone.config import read_zone
from models.zone.load import load_and_apply
from tests.harness import EXAMPLE_ZONE, zone_database
from tests.unit.test_queries import NOW


def test_numbers_count_up_per_prefix_and_month(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    with Session(engine) as session:
        project = session.exec(select(Project)).first()
        assert project is not None
        project.number_prefix = "KF"  # a project numbering on its own
        session.add(project)
        session.flush()
        desk = Desk(session, NOW, read_zone(session))
        zone = desk.zone.code
        month = NOW.astimezone(desk.zone.tz).strftime("%y%m")
        drawn = [desk.next_number(None) for _ in range(3)]
        assert drawn == [f"{zone}-{month}-{n:04d}" for n in (1, 2, 3)]
        own = desk.next_number(project)
        assert own == f"KF-{month}-0001"
        later = Desk(session, NOW + timedelta(days=40), desk.zone)
        next_month = later.now.astimezone(desk.zone.tz).strftime("%y%m")
        assert later.next_number(None) == f"{zone}-{next_month}-0001"
        session.commit()
    with Session(engine) as session:
        counters = {(c.prefix, c.period): c.last for c in session.exec(select(TicketCounter))}
        assert counters[(zone, month)] == 3
        assert counters[("KF", month)] == 1
    engine.dispose()


def test_two_filers_at_once_never_draw_the_same_number(pg_engine: Engine) -> None:
    """PostgreSQL, several processes: the second draw waits for the first transaction."""
    load_and_apply(pg_engine, EXAMPLE_ZONE)
    first = Session(pg_engine)
    desk = Desk(first, NOW, read_zone(first))
    one = desk.next_number(None)  # its counter row stays locked until `first` ends
    got: list[str] = []

    def second() -> None:
        with Session(pg_engine) as session:
            got.append(Desk(session, NOW, desk.zone).next_number(None))
            session.commit()

    waiting = threading.Thread(target=second)
    waiting.start()
    waiting.join(timeout=1.0)
    assert waiting.is_alive() and not got  # held by the first transaction
    first.commit()
    first.close()
    waiting.join(timeout=10.0)
    assert not waiting.is_alive()
    assert one.endswith("-0001") and got == [one[:-4] + "0002"]


def test_a_page_button_names_its_message_written_or_not(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    with Session(engine) as session:
        desk = Desk(session, NOW, read_zone(session))
        early = desk.notify.button("page", None, arg="my")
        write_buttons(session)  # written already (a flush came in between)
        late = desk.notify.button("page", None, arg="my")  # still waiting to be written
        desk.notify.settle_button(early, "my:2:41")
        desk.notify.settle_button(late, "my:1:41")
        session.commit()
    with Session(engine) as session:
        args = {token: session.get(ButtonAction, token) for token in (early, late)}
        assert {t: a.arg if a else None for t, a in args.items()} == {
            early: "my:2:41",
            late: "my:1:41",
        }
    engine.dispose()


def test_a_draft_gone_since_it_was_read_is_not_changed(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    with Session(engine) as session:
        person = session.exec(select(Person)).first()
        assert person is not None
        actor = Actor(person=person)
        desk = Desk(session, NOW, read_zone(session))
        filing.start_draft(desk, actor)
        filing.choose_category(desk, actor, filing.categories(desk)[0].code)
        read = filing.draft_of(desk, actor)
        assert read is not None and read.step == "description"
        session.connection().execute(delete(Draft.__table__))  # type: ignore[attr-defined]
        with pytest.raises(DeskError) as refused:
            filing.describe(desk, actor, "厂房屋顶漏水", read)
        assert refused.value.key == "error.no_draft"
        assert filing.draft_of(desk, actor) is None
    engine.dispose()
