"""Single-use, expiring invites: the only way a Telegram account gets a role."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, select

from models.desk import DeskError
from models.org import Membership, Person, Project, Role, Squad
from models.plumbing import Invite

INVITE_ROLES = ("enterprise", "member", "lead", "manager", "admin", "group")


def create_invite(
    session: Session,
    now: datetime,
    *,
    role: str,
    ttl: timedelta,
    squad_code: str | None = None,
    project_code: str | None = None,
    person_key: str | None = None,
) -> Invite:
    if role not in INVITE_ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(INVITE_ROLES)}")
    squad = project = None
    if role in ("member", "lead", "group"):
        if not squad_code:
            raise ValueError(f"--squad is required for role {role}")
        squad = session.exec(select(Squad).where(Squad.code == squad_code)).first()
        if squad is None or not squad.active:
            raise ValueError(f"unknown squad {squad_code!r}")
    if project_code:
        project = session.exec(select(Project).where(Project.code == project_code)).first()
        if project is None or not project.active:
            raise ValueError(f"unknown project {project_code!r}")
    if role == "enterprise" and project is None and project_code:
        raise ValueError(f"unknown project {project_code!r}")
    if person_key and session.exec(select(Person).where(Person.key == person_key)).first() is None:
        raise ValueError(f"unknown person {person_key!r}")
    invite = Invite(
        code=secrets.token_urlsafe(12),
        role=role,
        squad_id=squad.id if squad else None,
        project_id=project.id if project else None,
        person_key=person_key,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invite)
    session.flush()
    return invite


def _usable(session: Session, now: datetime, code: str) -> Invite:
    invite = session.exec(select(Invite).where(Invite.code == code.strip())).first()
    if invite is None:
        raise DeskError("invite.unknown")
    if invite.used_at is not None:
        raise DeskError("invite.used")
    if invite.expires_at <= now:
        raise DeskError("invite.expired")
    return invite


def redeem(
    session: Session,
    now: datetime,
    code: str,
    *,
    telegram_user_id: int,
    name: str,
    language: str | None,
) -> tuple[Person, Invite]:
    invite = _usable(session, now, code)
    if invite.role == "group":
        raise DeskError("invite.group_code_in_private")
    person = session.exec(select(Person).where(Person.telegram_user_id == telegram_user_id)).first()
    if invite.person_key:
        target = session.exec(select(Person).where(Person.key == invite.person_key)).first()
        if target is None:
            raise DeskError("invite.unknown")
        if person is not None and person.id != target.id:
            raise DeskError("invite.already_someone_else")
        if target.telegram_user_id not in (None, telegram_user_id):
            raise DeskError("invite.used")
        person = target
        person.telegram_user_id = telegram_user_id
    elif person is None:
        person = Person(key=f"tg{telegram_user_id}", name=name, telegram_user_id=telegram_user_id)
    if person.language is None and language:
        person.language = language
    session.add(person)
    session.flush()
    existing = session.exec(
        select(Membership).where(
            Membership.person_id == person.id,
            Membership.role == invite.role,
            Membership.squad_id == invite.squad_id,
            Membership.project_id == invite.project_id,
        )
    ).first()
    if existing is None:
        session.add(
            Membership(
                person_id=person.id or 0,
                role=invite.role,
                squad_id=invite.squad_id,
                project_id=invite.project_id,
                source="invite",
            )
        )
    else:
        existing.active = True
        session.add(existing)
    invite.used_at = now
    invite.used_by = telegram_user_id
    session.add(invite)
    return person, invite


def bind_group(
    session: Session, now: datetime, code: str, *, chat_id: int, telegram_user_id: int
) -> Squad:
    """A squad's group is bound by its lead, in that group, with a group code."""
    invite = _usable(session, now, code)
    if invite.role != "group" or invite.squad_id is None:
        raise DeskError("invite.not_group_code")
    squad = session.get(Squad, invite.squad_id)
    person = session.exec(select(Person).where(Person.telegram_user_id == telegram_user_id)).first()
    is_lead = (
        person is not None
        and session.exec(
            select(Membership).where(
                Membership.person_id == person.id,
                Membership.role == Role.LEAD,
                Membership.squad_id == invite.squad_id,
                Membership.active == True,  # noqa: E712
            )
        ).first()
        is not None
    )
    if squad is None or not is_lead:
        raise DeskError("invite.bind_needs_lead")
    squad.group_chat_id = chat_id
    invite.used_at = now
    invite.used_by = telegram_user_id
    session.add(squad)
    session.add(invite)
    return squad
