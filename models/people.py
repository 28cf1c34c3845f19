"""Who is asking: a Telegram user resolved to a person and their active roles.

Every update starts by reading its sender, so the sender is read as plain rows (one query
through the connection, no objects for the session to track): most updates only read who
they are (their id, name, language, chat) and what roles they hold. The person as an ORM
object, to change, is loaded the first time `Actor.person` is asked for; from then on it
is what `Actor.me` answers with, so a change is read back at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import sqlalchemy as sa
from sqlalchemy import and_, bindparam
from sqlmodel import Session, col, select

from models.org import Membership, Person, Project, Role, Squad


class Someone(Protocol):
    """What telling a person and writing their history read of them: a `Person`, or the
    row an update's sender is read as."""

    @property
    def id(self) -> int | None: ...

    @property
    def name(self) -> str: ...

    @property
    def phone(self) -> str | None: ...

    @property
    def telegram_user_id(self) -> int | None: ...

    @property
    def language(self) -> str | None: ...


class PersonRow(NamedTuple):
    """A person as read (the person table's columns, in order)."""

    id: int
    key: str
    name: str
    phone: str | None
    telegram_user_id: int | None
    language: str | None
    from_file: bool


class Holding(NamedTuple):
    """An active role as read: what the checks of who may do what look at."""

    role: str
    squad_id: int | None
    project_id: int | None


class Actor:
    def __init__(
        self,
        person: Someone,
        memberships: Sequence[Membership | Holding] = (),
        *,
        session: Session | None = None,
    ) -> None:
        self._read = person
        self._person = person if isinstance(person, Person) else None
        self._session = session  # where the person object is loaded from when asked for
        self.memberships = list(memberships)

    @property
    def me(self) -> Someone:
        """The person, to read: as read, or the object once it was loaded (and changed)."""
        return self._person if self._person is not None else self._read

    @property
    def person(self) -> Person:
        """The person as the session's object, to change (loaded on first use)."""
        if self._person is None:
            assert self._read.id is not None and self._session is not None
            self._person = self._session.get(Person, self._read.id)
            assert self._person is not None, f"person {self._read.id} is gone"
        return self._person

    @property
    def id(self) -> int:
        found = self.me.id
        assert found is not None
        return found

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
_PEOPLE = Person.__table__  # type: ignore[attr-defined]
_HOLDS = Membership.__table__  # type: ignore[attr-defined]
_PERSON_COLUMNS = tuple(_PEOPLE.c[name] for name in PersonRow._fields)
_ACTOR = (
    sa.select(
        *_PERSON_COLUMNS,
        *(_HOLDS.c[name] for name in Holding._fields),
    )
    .select_from(
        _PEOPLE.outerjoin(_HOLDS, and_(_HOLDS.c.person_id == _PEOPLE.c.id, _HOLDS.c.active))
    )
    .where(_PEOPLE.c.telegram_user_id == bindparam("user"))
    .order_by(_HOLDS.c.id)
)
_WIDTH = len(PersonRow._fields)


def actor_for(session: Session, telegram_user_id: int) -> Actor | None:
    if session.new or session.dirty or session.deleted:
        session.flush()  # a person or role made in this unit of work is read as it is now
    rows = session.connection().execute(_ACTOR, {"user": telegram_user_id}).all()
    if not rows:
        return None
    person = PersonRow(*rows[0][:_WIDTH])
    holds = [Holding(*row[_WIDTH:]) for row in rows if row[_WIDTH] is not None]
    return Actor(person, holds, session=session)


_PERSON = sa.select(*_PERSON_COLUMNS).where(_PEOPLE.c.id == bindparam("person"))


def person_row(session: Session, person_id: int) -> PersonRow | None:
    """A person as stored, to read (to tell, to name)."""
    row = session.connection().execute(_PERSON, {"person": person_id}).first()
    return PersonRow(*row) if row is not None else None


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
