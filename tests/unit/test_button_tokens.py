"""Button tokens are written as rows in one statement, not kept as objects: they are in the
store once the unit of work commits (even when nothing else changed), found by a press in
the same transaction once it flushes, and gone with a rollback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlmodel import Session, func, select

from models.desk import Desk
from models.notify import write_buttons
from models.ticket import ButtonAction
from models.zone.config import read_zone
from tests.harness import zone_database
from tests.unit.test_queries import NOW


def tokens(session: Session) -> int:
    return session.exec(select(func.count()).select_from(ButtonAction)).one()


def test_a_keyboard_is_written_in_one_statement_at_the_commit(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    inserts: list[str] = []

    def note(_conn: object, _cursor: object, sql: str, *_rest: object) -> None:
        if sql.lstrip().upper().startswith("INSERT") and "buttonaction" in sql.lower():
            inserts.append(sql)

    event.listen(engine, "before_cursor_execute", note)
    with Session(engine) as session:
        before = tokens(session)
        desk = Desk(session, NOW, read_zone(session))
        made = [desk.notify.button("category", None, arg=f"c{n}") for n in range(11)]
        session.commit()  # nothing else changed in this unit of work
    event.remove(engine, "before_cursor_execute", note)
    assert len(inserts) == 1
    with Session(engine) as session:
        assert tokens(session) == before + 11
        pressed = session.get(ButtonAction, made[3])
        assert pressed is not None and (pressed.action, pressed.arg) == ("category", "c3")
        assert pressed.created_at == NOW
    engine.dispose()


@contextmanager
def a_desk(tmp_path: Path) -> Iterator[tuple[Session, Desk, int]]:
    """A unit of work on the example zone: its session, its desk, the tokens stored before."""
    engine = zone_database(tmp_path)
    with Session(engine) as session:
        yield session, Desk(session, NOW, read_zone(session)), tokens(session)
    engine.dispose()


def test_tokens_are_found_once_flushed_and_gone_with_a_rollback(tmp_path: Path) -> None:
    with a_desk(tmp_path) as (session, desk, before):
        token = desk.notify.button("submit", None)
        write_buttons(session)  # what a flush does first
        assert session.get(ButtonAction, token) is not None
        kept = desk.notify.button("cancel", None)
        session.rollback()
        session.commit()  # the rollback forgot the pending token too
        assert tokens(session) == before
        assert session.get(ButtonAction, kept) is None


def test_a_savepoint_rolled_back_keeps_the_tokens_made_before_it(tmp_path: Path) -> None:
    with a_desk(tmp_path) as (session, desk, before):
        kept = desk.notify.button("submit", None)
        savepoint = session.begin_nested()
        desk.notify.button("cancel", None)
        savepoint.rollback()
        session.commit()
        assert session.get(ButtonAction, kept) is not None
        assert tokens(session) >= before + 1
