"""Files sent in a ticket's thread are kept by the domain, whoever sends them: the squad's
photos and the enterprise's photos, documents and places alike."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from models import closure, handling
from models.desk import Desk, DeskError
from models.ticket import Attachment, Ticket
from models.zone.config import read_zone
from tests.harness import zone_database
from tests.unit.test_queries import NOW, actor, filed_and_claimed


def photo() -> Attachment:
    return Attachment(kind="photo", file_id="AgAD-photo", file_unique_id="u-photo", added_at=NOW)


def test_both_sides_photos_are_kept_with_the_ticket_and_the_sender(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    number = filed_and_claimed(engine)
    with Session(engine) as session:
        desk = Desk(session, NOW + timedelta(minutes=10), read_zone(session))
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        member, ent = actor(session, "zhou.jun"), actor(session, "qian.hao")
        handling.reply(desk, member, ticket, "阀门照片", photo=photo())
        handling.enterprise_message(desk, ent, ticket, "现场照片", attachment=photo())
        session.commit()
        kept = session.exec(select(Attachment).where(Attachment.ticket_id == ticket.id)).all()
        assert [(a.added_by, a.added_at) for a in kept] == [
            (member.id, desk.now),
            (ent.id, desk.now),
        ]
    engine.dispose()


def test_a_refused_photo_is_not_kept(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    number = filed_and_claimed(engine)
    with Session(engine) as session:
        desk = Desk(session, NOW + timedelta(minutes=10), read_zone(session))
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        member, ent = actor(session, "zhou.jun"), actor(session, "qian.hao")
        handling.resolve(desk, member, ticket, "已恢复供水")
        closure.confirm(desk, ent, ticket, fixed=True)
        with pytest.raises(DeskError) as refused:
            handling.reply(desk, member, ticket, None, photo=photo())
        assert refused.value.key == "error.ticket_closed"
        session.commit()
        assert session.exec(select(Attachment)).all() == []
    engine.dispose()
