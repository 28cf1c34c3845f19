"""Single-use, expiring invites: how a Telegram account comes to hold a role.

The zone file is where roles come from. An invite never grants one: it binds the account
that opens it to the person the file lists in that role (a squad's member or lead, a
project's contact, a manager, an admin). The one invite that names nobody is the walk-in
enterprise invite (一窗通办): no project and no person, it makes a new enterprise contact
whose tickets go to the intake squad. A group invite binds a squad's group chat.

`check_invite` holds the rules, and is run when an invite is made (the CLI, /invite in the
chat) and again when it is used, so an invite made for someone the file has dropped since
cannot bring them back. Zone staff (leads, members, managers, admins) and enterprise contacts
never mix: neither can be invited, or bound, as the other.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from models.errors import DeskError
from models.org import STAFF_ROLES, Membership, Person, Project, Role, Squad
from models.plumbing import Invite

INVITE_ROLES = ("enterprise", "member", "lead", "manager", "admin", "group")

# What an invite of each role names: what it needs, and what it may name besides.
NEEDS: dict[str, tuple[str, ...]] = {
    "enterprise": (),
    "member": ("squad", "person"),
    "lead": ("squad", "person"),
    "manager": ("person",),
    "admin": ("person",),
    "group": ("squad",),
}
TAKES: dict[str, tuple[str, ...]] = {**NEEDS, "enterprise": ("project", "person")}

_NOT_IN_ROLE = {
    "member": "invite.bad.not_member",
    "lead": "invite.bad.not_lead",
    "enterprise": "invite.bad.not_contact",
    "manager": "invite.bad.not_manager",
    "admin": "invite.bad.not_admin",
}


class InviteRefused(DeskError):
    """An invite that cannot be made as asked. `role` and `field` parameters are left raw
    ("member", "squad") for each front end to name in its own way (`--squad` on the command
    line, a word in the chat)."""


@dataclass(frozen=True)
class InviteTarget:
    """What a valid invite names, read from the zone as it is now."""

    role: str
    squad: Squad | None = None
    project: Project | None = None
    person: Person | None = None

    @property
    def walk_in(self) -> bool:
        return self.role == Role.ENTERPRISE and self.project is None


def invite_code() -> str:
    """16 URL-safe characters (about 96 bits) that never start with "-": an operator pastes
    codes into `squadbot invite revoke CODE`, where a leading dash reads as an option."""
    while True:
        code = secrets.token_urlsafe(12)
        if not code.startswith("-"):
            return code


def _active_roles(session: Session, person: Person) -> list[Membership]:
    return list(
        session.exec(
            select(Membership).where(Membership.person_id == person.id, col(Membership.active))
        ).all()
    )


def _holds(
    memberships: list[Membership], role: str, squad: Squad | None, project: Project | None
) -> bool:
    return any(
        m.role == role
        and m.squad_id == (squad.id if squad else None)
        and m.project_id == (project.id if project else None)
        for m in memberships
    )


def is_staff(memberships: list[Membership]) -> bool:
    return any(m.role in STAFF_ROLES for m in memberships)


def is_contact(memberships: list[Membership]) -> bool:
    return any(m.role == Role.ENTERPRISE for m in memberships)


def _squad(session: Session, code: str) -> Squad:
    squad = session.exec(select(Squad).where(Squad.code == code)).first()
    if squad is None or not squad.active:
        raise InviteRefused("invite.bad.unknown_squad", code=code)
    return squad


def _project(session: Session, code: str) -> Project:
    project = session.exec(select(Project).where(Project.code == code)).first()
    if project is None or not project.active:
        raise InviteRefused("invite.bad.unknown_project", code=code)
    return project


def _contacts(session: Session, project: Project) -> list[str]:
    rows = session.exec(
        select(Person.key)
        .join(Membership, col(Membership.person_id) == col(Person.id))
        .where(
            Membership.role == Role.ENTERPRISE,
            Membership.project_id == project.id,
            col(Membership.active),
        )
        .order_by(col(Person.key))
    ).all()
    return list(rows)


def check_invite(
    session: Session,
    *,
    role: str,
    squad_code: str | None = None,
    project_code: str | None = None,
    person_key: str | None = None,
) -> InviteTarget:
    """What the invite would name, or InviteRefused saying what is wrong with it."""
    if role not in INVITE_ROLES:
        raise InviteRefused("invite.bad.role", role=role)
    given = {"squad": squad_code, "project": project_code, "person": person_key}
    for name, value in given.items():
        if value and name not in TAKES[role]:
            raise InviteRefused("invite.bad.extra", role=role, field=name)
    for name in NEEDS[role]:
        if not given[name]:
            raise InviteRefused("invite.bad.missing", role=role, field=name)
    squad = _squad(session, squad_code) if squad_code else None
    project = _project(session, project_code) if project_code else None
    if role == Role.ENTERPRISE:
        if person_key and project is None:
            raise InviteRefused("invite.bad.project_needed", person=person_key)
        if project is not None and not person_key:
            contacts = _contacts(session, project)
            if not contacts:
                raise InviteRefused("invite.bad.no_contacts", project=project.code)
            raise InviteRefused(
                "invite.bad.contact_needed", project=project.code, contacts=", ".join(contacts)
            )
    if not person_key:
        return InviteTarget(role, squad, project)
    person = session.exec(select(Person).where(Person.key == person_key)).first()
    if person is None:
        raise InviteRefused("invite.bad.unknown_person", person=person_key)
    held = _active_roles(session, person)
    if role == Role.ENTERPRISE and is_staff(held):
        raise InviteRefused("invite.bad.staff_as_contact", person=person.key)
    if role in STAFF_ROLES and is_contact(held):
        raise InviteRefused("invite.bad.contact_as_staff", person=person.key)
    if not _holds(held, role, squad, project):
        raise InviteRefused(
            _NOT_IN_ROLE[role],
            person=person.key,
            squad=squad.code if squad else "",
            project=project.code if project else "",
        )
    return InviteTarget(role, squad, project, person)


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
    """A new invite, after `check_invite`; nothing is written when it refuses."""
    target = check_invite(
        session, role=role, squad_code=squad_code, project_code=project_code, person_key=person_key
    )
    invite = Invite(
        code=invite_code(),
        role=role,
        squad_id=target.squad.id if target.squad else None,
        project_id=target.project.id if target.project else None,
        person_key=target.person.key if target.person else None,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invite)
    session.flush()
    return invite


def _codes(session: Session, invite: Invite) -> tuple[str | None, str | None]:
    squad = session.get(Squad, invite.squad_id) if invite.squad_id is not None else None
    project = session.get(Project, invite.project_id) if invite.project_id is not None else None
    return (squad.code if squad else None), (project.code if project else None)


def recheck(session: Session, invite: Invite) -> InviteTarget:
    """The rules again, against the zone as it is now (InviteRefused if it fails them)."""
    squad, project = _codes(session, invite)
    if (invite.squad_id is not None and squad is None) or (
        invite.project_id is not None and project is None
    ):
        raise InviteRefused("invite.withdrawn")
    return check_invite(
        session,
        role=invite.role,
        squad_code=squad,
        project_code=project,
        person_key=invite.person_key,
    )


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
    """The account `telegram_user_id` opens the invite: it is bound to the invite's person,
    who must still hold the role in the zone; or, for a walk-in invite, becomes a new
    enterprise contact. No other membership is ever made or switched back on here."""
    invite = _usable(session, now, code)
    if invite.role == "group":
        raise DeskError("invite.group_code_in_private")
    account = session.exec(
        select(Person).where(Person.telegram_user_id == telegram_user_id)
    ).first()
    if invite.person_key:
        target = session.exec(select(Person).where(Person.key == invite.person_key)).first()
        if target is None:
            raise DeskError("invite.withdrawn")
        if account is not None and account.id != target.id:
            raise DeskError("invite.already_someone_else")
        if target.telegram_user_id not in (None, telegram_user_id):
            raise DeskError("invite.used")
    try:
        found = recheck(session, invite)
    except InviteRefused:
        raise DeskError("invite.withdrawn") from None
    if found.person is not None:
        person = found.person
        person.telegram_user_id = telegram_user_id
    elif found.walk_in:
        if account is not None and is_staff(_active_roles(session, account)):
            raise DeskError("invite.staff_not_enterprise")
        person = account or Person(
            key=f"tg{telegram_user_id}", name=name, telegram_user_id=telegram_user_id
        )
    else:  # made before invites named their person; the zone no longer allows it
        raise DeskError("invite.withdrawn")
    if person.language is None and language:
        person.language = language
    session.add(person)
    session.flush()
    if found.walk_in:
        _walk_in_membership(session, person)
    invite.used_at = now
    invite.used_by = telegram_user_id
    session.add(invite)
    return person, invite


def _walk_in_membership(session: Session, person: Person) -> None:
    existing = session.exec(
        select(Membership).where(
            Membership.person_id == person.id,
            Membership.role == Role.ENTERPRISE,
            col(Membership.squad_id).is_(None),
            col(Membership.project_id).is_(None),
        )
    ).first()
    if existing is None:
        existing = Membership(person_id=person.id or 0, role=Role.ENTERPRISE, source="invite")
    existing.active = True
    session.add(existing)


def bind_group(
    session: Session, now: datetime, code: str, *, chat_id: int, telegram_user_id: int
) -> Squad:
    """A squad's group is bound by its lead, in that group, with a group code."""
    invite = _usable(session, now, code)
    if invite.role != "group" or invite.squad_id is None:
        raise DeskError("invite.not_group_code")
    squad = session.get(Squad, invite.squad_id)
    if squad is None or not squad.active:
        raise DeskError("invite.withdrawn")
    person = session.exec(select(Person).where(Person.telegram_user_id == telegram_user_id)).first()
    is_lead = person is not None and _holds(_active_roles(session, person), Role.LEAD, squad, None)
    if not is_lead:
        raise DeskError("invite.bind_needs_lead")
    squad.group_chat_id = chat_id
    invite.used_at = now
    invite.used_by = telegram_user_id
    session.add(squad)
    session.add(invite)
    return squad


# --- the admin's view: open invites, revoking one ------------------------------------------
@dataclass(frozen=True)
class OpenInvite:
    code: str
    role: str
    squad: str | None
    project: str | None
    person: str | None
    expires_at: datetime
    problem: InviteRefused | None  # why it would be refused if used now


def open_invites(session: Session, now: datetime) -> list[OpenInvite]:
    """Unused, unexpired invites, soonest to expire first, each checked against the zone."""
    rows = session.exec(
        select(Invite)
        .where(col(Invite.used_at).is_(None), col(Invite.expires_at) > now)
        .order_by(col(Invite.expires_at), col(Invite.id))
    ).all()
    found: list[OpenInvite] = []
    for invite in rows:
        squad, project = _codes(session, invite)
        problem: InviteRefused | None = None
        try:
            recheck(session, invite)
        except InviteRefused as refused:
            problem = refused
        found.append(
            OpenInvite(
                invite.code,
                invite.role,
                squad,
                project,
                invite.person_key,
                invite.expires_at,
                problem,
            )
        )
    return found


def revoke_invite(session: Session, now: datetime, code: str) -> tuple[str, Invite | None]:
    """("revoked", row) when an open invite is withdrawn: the row is deleted, so the code
    answers as unknown from then on. Else ("unknown" | "used" | "expired", row): nothing is
    changed; a used invite's role is taken away in the zone file, not here."""
    invite = session.exec(select(Invite).where(Invite.code == code.strip())).first()
    if invite is None:
        return "unknown", None
    if invite.used_at is not None:
        return "used", invite
    if invite.expires_at <= now:
        return "expired", invite
    session.delete(invite)
    session.flush()
    return "revoked", invite
