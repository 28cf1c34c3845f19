"""Writing a validated zone document into the database.

Nothing is ever deleted except SLA rules (pure configuration): tickets, history and invites
point at squads, projects, people and memberships, and the history must keep meaning what
it meant. Whatever leaves the file is switched off (active=False) instead, so a person who
leaves a squad loses access at once while their tickets stay where they were.

Roles are the file's: a membership the file does not grant is switched off whatever made
it, so an invite can never keep someone in a squad the file has taken them out of. The one
role held outside the file is a walk-in enterprise contact (no project, 一窗通办). Zone staff
and enterprise contacts never mix, not even one after the other: a person the file moves
from one side to the other (a walk-in included) loses the old roles and their Telegram
binding, and joins again through an invite for the new role.

Every write is preceded by a comparison, so applying the same file again touches no row and
reports zeros: the admin can re-run the command at any time and read the report as "what
this file changed".
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from sqlmodel import Session, SQLModel, col, select

from models.org import (
    STAFF_ROLES,
    Category,
    Membership,
    Person,
    Project,
    Role,
    SlaRule,
    Squad,
    ZoneSetting,
)
from models.sla.policy import SlaTargets
from models.zone.schema import ZoneDocument

__all__ = ["ApplyReport", "apply_zone"]

FILE_SOURCE = "file"
# A role left behind when the file moved its person between zone staff and enterprise contact.
RETIRED_SOURCE = "retired"
_Key = tuple[int, str, int | None, int | None]


@dataclass
class ApplyReport:
    """Rows changed per table ("squad", "project", "category", "person", "membership",
    "sla_rule", "setting"). SLA rules dropped from the file are deleted, and counted as
    deactivated."""

    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    deactivated: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(+self.created or +self.updated or +self.deactivated)

    def lines(self) -> list[str]:
        tables = sorted(set(self.created) | set(self.updated) | set(self.deactivated))
        rows = [
            f"{t}: {self.created[t]} created, {self.updated[t]} updated, "
            f"{self.deactivated[t]} deactivated"
            for t in tables
        ]
        return (rows or ["nothing changed"]) + [f"warning: {w}" for w in self.warnings]


def _sync(row: SQLModel, values: dict[str, object]) -> bool:
    """Set only what differs, so an unchanged row stays clean and is not written."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _upsert(
    session: Session,
    report: ApplyReport,
    table: str,
    existing: dict[str, SQLModel],
    key: str,
    values: dict[str, object],
    factory: type[SQLModel],
    key_field: str = "code",
) -> SQLModel:
    row = existing.get(key)
    if row is None:
        row = factory(**{key_field: key, **values})
        session.add(row)
        existing[key] = row
        report.created[table] += 1
    elif _sync(row, values):
        report.updated[table] += 1
    return row


def _deactivate_missing(
    report: ApplyReport, table: str, existing: dict[str, SQLModel], keep: set[str]
) -> None:
    for code, row in existing.items():
        if code not in keep and _sync(row, {"active": False}):
            report.deactivated[table] += 1


def apply_zone(session: Session, zone: ZoneDocument) -> ApplyReport:
    """Make the database say what the file says. The caller owns the transaction."""
    report = ApplyReport()
    squads = _apply_squads(session, report, zone)
    projects = _apply_projects(session, report, zone, squads)
    _apply_categories(session, report, zone)
    people = _apply_people(session, report, zone)
    session.flush()
    _apply_memberships(session, report, zone, squads, projects, people)
    _apply_sla_rules(session, report, zone)
    _apply_settings(session, report, zone)
    session.flush()
    return report


def _apply_squads(session: Session, report: ApplyReport, zone: ZoneDocument) -> dict[str, Squad]:
    existing: dict[str, SQLModel] = {s.code: s for s in session.exec(select(Squad)).all()}
    for entry in zone.squads:
        values: dict[str, object] = {
            "name": entry.name,
            "is_intake": entry.code == zone.zone.intake_squad,
            "active": True,
        }
        if entry.group_chat_id is not None:  # null keeps a group bound later in the bot
            values["group_chat_id"] = entry.group_chat_id
        _upsert(session, report, "squad", existing, entry.code, values, Squad)
    _deactivate_missing(report, "squad", existing, {s.code for s in zone.squads})
    session.flush()
    return {code: row for code, row in existing.items() if isinstance(row, Squad)}


def _apply_projects(
    session: Session, report: ApplyReport, zone: ZoneDocument, squads: dict[str, Squad]
) -> dict[str, Project]:
    served_by = {project: squad.code for squad in zone.squads for project in squad.projects}
    existing: dict[str, SQLModel] = {p.code: p for p in session.exec(select(Project)).all()}
    for entry in zone.projects:
        squad_code = served_by.get(entry.code)
        values: dict[str, object] = {
            "name": entry.name,
            "enterprise": entry.enterprise,
            "number_prefix": entry.prefix,
            "squad_id": squads[squad_code].id if squad_code else None,
            "active": True,
        }
        _upsert(session, report, "project", existing, entry.code, values, Project)
    _deactivate_missing(report, "project", existing, {p.code for p in zone.projects})
    session.flush()
    return {code: row for code, row in existing.items() if isinstance(row, Project)}


def _apply_categories(session: Session, report: ApplyReport, zone: ZoneDocument) -> None:
    existing: dict[str, SQLModel] = {c.code: c for c in session.exec(select(Category)).all()}
    for position, entry in enumerate(zone.categories):
        values: dict[str, object] = {
            "name_zh": entry.zh,
            "name_en": entry.en,
            "position": position,
            "active": True,
        }
        _upsert(session, report, "category", existing, entry.code, values, Category)
    _deactivate_missing(report, "category", existing, {c.code for c in zone.categories})


def _apply_people(session: Session, report: ApplyReport, zone: ZoneDocument) -> dict[str, Person]:
    """People are never switched off here: without memberships they can do nothing, and
    their name must stay on the tickets they filed or handled."""
    existing: dict[str, SQLModel] = {p.key: p for p in session.exec(select(Person)).all()}
    for entry in zone.people:
        values: dict[str, object] = {
            "name": entry.name,
            "phone": entry.phone,
            "from_file": True,
        }
        if entry.language is not None:  # else keep the language the person chose in the bot
            values["language"] = entry.language
        is_new = entry.key not in existing
        updates_before = report.updated["person"]
        person = _upsert(session, report, "person", existing, entry.key, values, Person, "key")
        assert isinstance(person, Person)
        if entry.telegram_id is not None and person.telegram_user_id != entry.telegram_id:
            bound = _bind_telegram(session, report, person, entry.telegram_id)
            if bound and not is_new and report.updated["person"] == updates_before:
                report.updated["person"] += 1
    return {key: row for key, row in existing.items() if isinstance(row, Person)}


def _bind_telegram(session: Session, report: ApplyReport, person: Person, telegram_id: int) -> bool:
    """The file may bind an id nobody holds; it never steals one bound to someone else."""
    holder = session.exec(select(Person).where(Person.telegram_user_id == telegram_id)).first()
    if holder is not None and holder is not person:
        report.warnings.append(
            f"person {person.key!r}: Telegram id {telegram_id} is already bound to "
            f"{holder.key!r}; left unchanged"
        )
        return False
    person.telegram_user_id = telegram_id
    return True


def _wanted_memberships(
    zone: ZoneDocument,
    squads: dict[str, Squad],
    projects: dict[str, Project],
    people: dict[str, Person],
) -> dict[_Key, bool]:
    """Every (person, role, squad, project) the file grants, with its is_top flag."""

    def pid(key: str) -> int:
        person_id = people[key].id
        assert person_id is not None
        return person_id

    wanted: dict[_Key, bool] = {}
    for squad in zone.squads:
        squad_id = squads[squad.code].id
        assert squad_id is not None
        wanted[(pid(squad.lead), Role.LEAD.value, squad_id, None)] = False
        for member in squad.members:
            wanted[(pid(member), Role.MEMBER.value, squad_id, None)] = False
    for manager in zone.managers:
        wanted[(pid(manager.person), Role.MANAGER.value, None, None)] = manager.top
    for admin in zone.admins:
        wanted[(pid(admin), Role.ADMIN.value, None, None)] = False
    for project in zone.projects:
        for contact in project.contacts:
            wanted[(pid(contact), Role.ENTERPRISE.value, None, projects[project.code].id)] = False
    return wanted


def _apply_memberships(
    session: Session,
    report: ApplyReport,
    zone: ZoneDocument,
    squads: dict[str, Squad],
    projects: dict[str, Project],
    people: dict[str, Person],
) -> None:
    wanted = _wanted_memberships(zone, squads, projects, people)
    staff = {person_id for person_id, role, _, _ in wanted if role in STAFF_ROLES}
    contacts = {person_id for person_id, role, _, _ in wanted if role == Role.ENTERPRISE}
    crossed: set[int] = set()
    seen: set[_Key] = set()
    rows = session.exec(select(Membership).order_by(col(Membership.id))).all()
    for row in rows:
        key: _Key = (row.person_id, row.role, row.squad_id, row.project_id)
        if key in wanted and key not in seen:
            # A role made outside the file that the file now lists is adopted.
            values = {"active": True, "is_top": wanted[key], "source": FILE_SOURCE}
            if _sync(row, values):
                report.updated["membership"] += 1
            seen.add(key)
            continue
        other_side = contacts if row.role in STAFF_ROLES else staff
        crossing = row.person_id in other_side and row.source != RETIRED_SOURCE
        walk_in = row.role == Role.ENTERPRISE and row.project_id is None and row.squad_id is None
        if walk_in and not crossing:
            continue
        if _sync(row, {"active": False}):
            report.deactivated["membership"] += 1
            if row.source != FILE_SOURCE and not crossing:
                report.warnings.append(_switched_off(session, row, squads, projects))
        if crossing:
            row.source = RETIRED_SOURCE  # counted once: the move is done
            crossed.add(row.person_id)
    pinned = {entry.key for entry in zone.people if entry.telegram_id is not None}
    for person_id in sorted(crossed):
        _unbind_crossed(session, report, person_id, pinned)
    for key, is_top in wanted.items():
        if key not in seen:
            person_id, role, squad_id, project_id = key
            session.add(
                Membership(
                    person_id=person_id,
                    role=role,
                    squad_id=squad_id,
                    project_id=project_id,
                    is_top=is_top,
                    source=FILE_SOURCE,
                )
            )
            report.created["membership"] += 1


def _who(session: Session, person_id: int) -> str:
    person = session.get(Person, person_id)
    return f"person {person.key!r} ({person.name})" if person else f"person #{person_id}"


def _switched_off(
    session: Session, row: Membership, squads: dict[str, Squad], projects: dict[str, Project]
) -> str:
    where = next((f" of squad {c}" for c, s in squads.items() if s.id == row.squad_id), "")
    where = where or next(
        (f" of project {c}" for c, p in projects.items() if p.id == row.project_id), ""
    )
    return (
        f"{_who(session, row.person_id)}: role {row.role}{where} is not in this file; switched off"
    )


def _unbind_crossed(
    session: Session, report: ApplyReport, person_id: int, pinned: set[str]
) -> None:
    """Zone staff and enterprise contacts never mix, not even one after the other: a person
    the file moves from one to the other keeps no Telegram account bound in the old role,
    unless the file itself names the account (`telegram_id`)."""
    person = session.get(Person, person_id)
    if person is None:
        return
    moved = f"{_who(session, person_id)} moves between enterprise contact and zone staff"
    if person.telegram_user_id is None:
        report.warnings.append(f"{moved}: they join through a new invite")
        return
    if person.key in pinned:
        report.warnings.append(f"{moved}: the file binds Telegram id {person.telegram_user_id}")
        return
    if not session.is_modified(person):
        report.updated["person"] += 1
    person.telegram_user_id = None
    report.warnings.append(
        f"{moved}: their Telegram account is unbound; send them a new invite for the new role"
    )


def _rule_values(targets: SlaTargets) -> dict[str, object]:
    return {
        "response_s": int(targets.response.total_seconds()),
        "handling_s": int(targets.handling.total_seconds()),
        "plan_s": int(targets.plan.total_seconds()),
        "warn_ratio": targets.warn_ratio,
        "supervision_s": int(targets.supervision_after.total_seconds()),
        "clock": targets.clock,
    }


def _apply_sla_rules(session: Session, report: ApplyReport, zone: ZoneDocument) -> None:
    wanted: dict[tuple[str | None, str | None], SlaTargets] = {(None, None): zone.default_targets}
    for rule in zone.rules:
        wanted[(rule.category, rule.urgency)] = rule.targets
    existing = {(r.category_code, r.urgency): r for r in session.exec(select(SlaRule)).all()}
    for key, row in existing.items():
        if key not in wanted:
            session.delete(row)
            report.deactivated["sla_rule"] += 1
    session.flush()  # free the unique (category, urgency) before re-inserting a key
    for key, targets in wanted.items():
        values = _rule_values(targets)
        found = existing.get(key)
        if found is None:
            row = SlaRule(
                category_code=key[0], urgency=key[1], response_s=0, handling_s=0, plan_s=0
            )
            _sync(row, values)
            session.add(row)
            report.created["sla_rule"] += 1
        elif _sync(found, values):
            report.updated["sla_rule"] += 1


def _apply_settings(session: Session, report: ApplyReport, zone: ZoneDocument) -> None:
    existing = {s.key: s for s in session.exec(select(ZoneSetting)).all()}
    values = {
        **zone.zone.settings(),
        **zone.schedule.settings(),
        **zone.alerts.settings(),
        "ranking": zone.ranking.settings(),
    }
    for key, value in values.items():
        encoded = json.dumps(value, ensure_ascii=False, sort_keys=True)
        found = existing.get(key)
        if found is None:
            session.add(ZoneSetting(key=key, value=encoded))
            report.created["setting"] += 1
        elif found.value != encoded:
            found.value = encoded
            report.updated["setting"] += 1
