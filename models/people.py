"""Who is asking: a Telegram user resolved to a person and their active roles."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, bindparam
from sqlmodel import Session, col, select

from models.org import Membership, Person, Project, Role, Squad


@dataclass
class Actor:
    person: Person
    memberships: list[Membership] = field(default_factory=list)

    @property
    def id(self) -> int:
        assert self.person.id is not None
        return self.person.id

    def roles(self) -> set[str]:
        return {m.role for m in self.memberships}

    @property
    def is_enterprise(self) -> bool:
        return Role.ENTERPRISE in self.roles()

    @property
    def project_id(self) -> int | None:
        for m in self.memberships:
            if m.role == Role.ENTERPRISE and m.project_id is not None:
                return m.project_id
        return None

    @property
    def squad_ids(self) -> set[int]:
        return {
            m.squad_id
            for m in self.memberships
            if m.role in (Role.MEMBER, Role.LEAD) and m.squad_id is not None
        }

    @property
    def lead_squad_ids(self) -> set[int]:
        return {m.squad_id for m in self.memberships if m.role == Role.LEAD and m.squad_id}

    @property
    def is_squad_member(self) -> bool:
        return bool(self.squad_ids)

    @property
    def is_manager(self) -> bool:
        return Role.MANAGER in self.roles()

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles()

    @property
    def has_role(self) -> bool:
        return bool(self.memberships)


def active_memberships(session: Session, person_id: int) -> list[Membership]:
    rows = session.exec(
        select(Membership).where(Membership.person_id == person_id, col(Membership.active))
    ).all()
    return list(rows)


# a person and their active memberships in one query (each update starts with it): built
# once, the Telegram user bound at each use
_ACTOR = (
    select(Person, Membership)
    .outerjoin(
        Membership,
        and_(col(Membership.person_id) == col(Person.id), col(Membership.active)),
    )
    .where(Person.telegram_user_id == bindparam("user"))
    .order_by(col(Membership.id))
)


def actor_for(session: Session, telegram_user_id: int) -> Actor | None:
    rows = session.exec(_ACTOR, params={"user": telegram_user_id}).all()
    if not rows or rows[0][0].id is None:
        return None
    person = rows[0][0]
    return Actor(person=person, memberships=[m for p, m in rows if m is not None and p is person])


def squad_people(session: Session, squad_id: int, roles: tuple[str, ...]) -> list[Person]:
    rows = session.exec(
        select(Person)
        .join(Membership, col(Membership.person_id) == col(Person.id))
        .where(
            Membership.squad_id == squad_id,
            col(Membership.role).in_(roles),
            col(Membership.active),
        )
        .order_by(col(Person.id))
    ).all()
    unique: dict[int | None, Person] = {p.id: p for p in rows}
    return list(unique.values())


def managers(session: Session, *, top_only: bool = False) -> list[Person]:
    query = (
        select(Person)
        .join(Membership, col(Membership.person_id) == col(Person.id))
        .where(Membership.role == Role.MANAGER, col(Membership.active))
    )
    if top_only:
        query = query.where(col(Membership.is_top))
    unique: dict[int | None, Person] = {p.id: p for p in session.exec(query).all()}
    return list(unique.values())


def squad_for_project(session: Session, project_id: int | None, intake_code: str) -> Squad | None:
    """The project's own squad, or the zone's intake squad (one-window service)."""
    if project_id is not None:
        project = session.get(Project, project_id)
        if project is not None and project.squad_id is not None:
            squad = session.get(Squad, project.squad_id)
            if squad is not None and squad.active:
                return squad
    return session.exec(select(Squad).where(Squad.code == intake_code)).first()
