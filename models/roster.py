"""Who holds which seat of the zone, and who has joined: each squad's lead and members, each
project's contacts, the managers, the admins and the walk-in enterprises, with whether their
Telegram account is bound and until when an open invite names them. Reading only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, select

from models.org import Membership, Person, Project, Role, Squad
from models.plumbing import Invite

SEAT_ORDER: dict[str, int] = {
    Role.LEAD: 0,
    Role.MEMBER: 1,
    Role.ENTERPRISE: 2,
    Role.MANAGER: 3,
    Role.ADMIN: 4,
}


@dataclass(frozen=True)
class Seat:
    role: str
    key: str
    name: str
    joined: bool
    top: bool = False
    invited_until: datetime | None = None  # the latest open invite naming this person


@dataclass
class Unit:
    """A squad, a project, or one of the zone-wide lists ("managers", "admins", "walk_in")."""

    kind: str
    code: str = ""
    name: str = ""
    seats: list[Seat] = field(default_factory=list)
    group_bound: bool = False  # a squad's group chat
    enterprise: str = ""  # a project's
    squad: str | None = None  # the squad serving a project


@dataclass
class Roster:
    units: list[Unit]

    @property
    def people(self) -> dict[str, bool]:
        """Each person with a seat, and whether they have joined."""
        return {seat.key: seat.joined for unit in self.units for seat in unit.seats}


def roster(session: Session, now: datetime) -> Roster:
    squads = session.exec(select(Squad).where(col(Squad.active)).order_by(col(Squad.code))).all()
    projects = session.exec(
        select(Project).where(col(Project.active)).order_by(col(Project.code))
    ).all()
    people = {p.id: p for p in session.exec(select(Person)).all()}
    invited: dict[str, datetime] = {}
    for invite in session.exec(
        select(Invite).where(col(Invite.used_at).is_(None), col(Invite.expires_at) > now)
    ).all():
        if invite.person_key and invite.expires_at > invited.get(invite.person_key, now):
            invited[invite.person_key] = invite.expires_at
    memberships = session.exec(
        select(Membership).where(col(Membership.active)).order_by(col(Membership.id))
    ).all()

    def seats(rows: list[Membership]) -> list[Seat]:
        found = []
        for m in rows:
            person = people.get(m.person_id)
            if person is None:
                continue
            found.append(
                Seat(
                    role=m.role,
                    key=person.key,
                    name=person.name,
                    joined=person.telegram_user_id is not None,
                    top=m.is_top,
                    invited_until=invited.get(person.key),
                )
            )
        return sorted(found, key=lambda s: (SEAT_ORDER.get(s.role, 9), not s.top, s.key))

    squad_codes = {s.id: s.code for s in squads}
    units = [
        Unit(
            "squad",
            s.code,
            s.name,
            seats([m for m in memberships if m.squad_id == s.id]),
            group_bound=s.group_chat_id is not None,
        )
        for s in squads
    ]
    units += [
        Unit(
            "project",
            p.code,
            p.name,
            seats([m for m in memberships if m.project_id == p.id]),
            enterprise=p.enterprise,
            squad=squad_codes.get(p.squad_id),
        )
        for p in projects
    ]
    zone_wide = [m for m in memberships if m.squad_id is None and m.project_id is None]
    units.append(Unit("managers", seats=seats([m for m in zone_wide if m.role == Role.MANAGER])))
    units.append(Unit("admins", seats=seats([m for m in zone_wide if m.role == Role.ADMIN])))
    walk_ins = [m for m in zone_wide if m.role == Role.ENTERPRISE]
    units.append(Unit("walk_in", seats=seats(walk_ins)))
    return Roster(units)
