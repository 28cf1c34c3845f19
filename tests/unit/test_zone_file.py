"""The zone file: the example loads, applying is idempotent and never deletes, and a bad file
is refused as a whole with the line and field at fault.

Long because every field of the zone file has its own refusal to prove.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

import models  # noqa: F401  (registers every table)
from models.db import make_engine, transaction
from models.org import Category, Membership, Person, Project, SlaRule, Squad, ZoneSetting
from models.sla.calendar import RoundTheClock, WorkingHours
from models.sla.policy import DEFAULT_TARGETS, SlaTargets
from models.zone.config import describe_org, mask_phone, read_zone
from models.zone.load import load_and_apply
from models.zone.parse import load_zone_file, parse_zone
from models.zone.reader import ZoneFileError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "zone.yaml"
TABLES = (Squad, Project, Category, Person, Membership, SlaRule, ZoneSetting)

MINIMAL = """\
zone:
  code: YZ
  name: 测试园区
  timezone: Asia/Shanghai
  language: zh-CN
  intake_squad: WINDOW
  auto_close_after: 3d
  clock: round_the_clock
  working_hours: ["09:00-12:00", "13:30-17:30"]
  webhooks:
    - {kind: wecom, url: "https://example.invalid/hook?key=k", secret_env: SQUADBOT_WECOM}
deadlines:
  default: {response: 10m, handling: 2h, plan: 1d, warn_at: 80%}
  rules:
    - {category: water, urgency: urgent, response: 5m, handling: 1h}
categories:
  - {code: water, zh: 临时停水, en: Temporary water outage}
people:
  - {key: li.ming, name: 李明, phone: "13800138011"}
  - {key: zhang.wei, name: 张伟, telegram_id: 5001}
  - {key: qian.hao, name: 钱浩}
  - {key: wang.fang, name: 王芳}
managers:
  - {person: wang.fang, top: true}
squads:
  - {code: WINDOW, name: 一窗通办, lead: li.ming}
  - {code: PV, name: 光伏专班, lead: li.ming, members: [zhang.wei], projects: [PV01]}
projects:
  - {code: PV01, name: 光伏组件生产基地, enterprise: 晶曜新能源, contacts: [qian.hao]}
"""


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'zone.db'}")
    SQLModel.metadata.create_all(engine)
    yield engine
    engine.dispose()


def write(tmp_path: Path, text: str, name: str = "zone.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    with Session(engine) as session:
        return {
            table.__name__: sorted(
                (row.model_dump() for row in session.exec(select(table)).all()), key=repr
            )
            for table in TABLES
        }


def counts(engine: Engine) -> dict[str, int]:
    return {name: len(rows) for name, rows in snapshot(engine).items()}


def membership(session: Session, key: str, role: str, squad: str) -> Membership:
    person = session.exec(select(Person).where(Person.key == key)).one()
    squad_row = session.exec(select(Squad).where(Squad.code == squad)).one()
    return session.exec(
        select(Membership).where(
            Membership.person_id == person.id,
            Membership.role == role,
            Membership.squad_id == squad_row.id,
        )
    ).one()


# --- the example and idempotency ---------------------------------------------------------------


def test_example_loads_and_applies(engine: Engine) -> None:
    document = load_zone_file(EXAMPLE)
    assert document.zone.intake_squad == "WINDOW"
    assert len(document.projects) >= 6 and len(document.squads) >= 7
    assert {c.code for c in document.categories} >= {"water", "power_line", "land", "other"}

    report = load_and_apply(engine, EXAMPLE)

    assert report.created["squad"] == len(document.squads)
    assert report.created["project"] == len(document.projects)
    assert report.created["person"] == len(document.people)
    assert report.created["sla_rule"] == 3
    assert not report.updated and not report.deactivated and not report.warnings
    with Session(engine) as session:
        window = session.exec(select(Squad).where(Squad.code == "WINDOW")).one()
        assert window.is_intake
        pv01 = session.exec(select(Project).where(Project.code == "PV01")).one()
        pv = session.exec(select(Squad).where(Squad.code == "PV")).one()
        assert pv01.squad_id == pv.id and pv01.number_prefix == "YZ"
        sc01 = session.exec(select(Project).where(Project.code == "SC01")).one()
        assert sc01.number_prefix == "XZ"
        assert all(p.from_file for p in session.exec(select(Person)).all())
        top = session.exec(select(Membership).where(Membership.is_top)).all()
        assert len(top) == 1 and top[0].role == "manager"


def test_applying_twice_changes_nothing(engine: Engine) -> None:
    load_and_apply(engine, EXAMPLE)
    before = snapshot(engine)

    again = load_and_apply(engine, EXAMPLE)

    assert not again.changed, again.lines()
    assert again.lines() == ["nothing changed"]
    assert snapshot(engine) == before


def test_renaming_a_project_updates_only_that_row(engine: Engine, tmp_path: Path) -> None:
    load_and_apply(engine, EXAMPLE)
    before = counts(engine)
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "光伏组件生产基地", "光伏组件生产基地（一期）"
    )

    report = load_and_apply(engine, write(tmp_path, text))

    assert dict(report.updated) == {"project": 1}
    assert not report.created and not report.deactivated
    assert counts(engine) == before
    with Session(engine) as session:
        pv01 = session.exec(select(Project).where(Project.code == "PV01")).one()
        assert pv01.name == "光伏组件生产基地（一期）"


def test_removing_a_member_deactivates_the_membership_but_keeps_the_person(
    engine: Engine, tmp_path: Path
) -> None:
    load_and_apply(engine, EXAMPLE)
    before = counts(engine)
    text = EXAMPLE.read_text(encoding="utf-8")
    without = text.replace("members: [zhou.jun, xu.hui, wu.gang]", "members: [zhou.jun, xu.hui]")

    report = load_and_apply(engine, write(tmp_path, without))

    assert dict(report.deactivated) == {"membership": 1}
    assert counts(engine) == before
    with Session(engine) as session:
        assert not membership(session, "wu.gang", "member", "PV").active
        assert session.exec(select(Person).where(Person.key == "wu.gang")).one()

    back = load_and_apply(engine, write(tmp_path, text))
    assert dict(back.updated) == {"membership": 1}
    with Session(engine) as session:
        assert membership(session, "wu.gang", "member", "PV").active


def test_removed_squad_is_switched_off_with_its_people(engine: Engine, tmp_path: Path) -> None:
    load_and_apply(engine, write(tmp_path, MINIMAL))
    text = MINIMAL.replace(
        "  - {code: PV, name: 光伏专班, lead: li.ming, members: [zhang.wei], projects: [PV01]}\n",
        "",
    )
    report = load_and_apply(engine, write(tmp_path, text))

    assert report.deactivated["squad"] == 1
    assert report.deactivated["membership"] == 2  # li.ming's lead and zhang.wei's member of PV
    assert report.updated["project"] == 1  # PV01 lost its squad
    with Session(engine) as session:
        pv = session.exec(select(Squad).where(Squad.code == "PV")).one()
        assert not pv.active
        assert not membership(session, "zhang.wei", "member", "PV").active
        assert membership(session, "li.ming", "lead", "WINDOW").active
        pv01 = session.exec(select(Project).where(Project.code == "PV01")).one()
        assert pv01.squad_id is None


def add_roles(engine: Engine, key: str, *roles: tuple[str, str | None, str | None]) -> None:
    """Memberships made outside the file (as invites once could), for (role, squad, project)."""
    with transaction(engine) as session:
        person = session.exec(select(Person).where(Person.key == key)).first()
        if person is None:
            person = Person(key=key, name="来宾")
            session.add(person)
            session.flush()
        for role, squad, project in roles:
            squad_row = session.exec(select(Squad).where(Squad.code == squad)).first()
            project_row = session.exec(select(Project).where(Project.code == project)).first()
            session.add(
                Membership(
                    person_id=person.id or 0,
                    role=role,
                    squad_id=squad_row.id if squad_row else None,
                    project_id=project_row.id if project_row else None,
                    source="invite",
                )
            )


def active_roles(engine: Engine, key: str) -> set[tuple[str, int | None, int | None]]:
    with Session(engine) as session:
        person = session.exec(select(Person).where(Person.key == key)).one()
        rows = session.exec(select(Membership).where(Membership.person_id == person.id)).all()
        return {(m.role, m.squad_id, m.project_id) for m in rows if m.active}


def test_roles_the_file_does_not_grant_are_switched_off_whatever_made_them(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(tmp_path, MINIMAL)
    load_and_apply(engine, path)
    add_roles(
        engine,
        "guest",
        ("member", "PV", None),
        ("lead", "WINDOW", None),
        ("manager", None, None),
        ("admin", None, None),
        ("enterprise", None, "PV01"),
    )
    add_roles(engine, "walk.in", ("enterprise", None, None))

    report = load_and_apply(engine, path)

    assert dict(report.deactivated) == {"membership": 5}
    assert len(report.warnings) == 5 and all("'guest'" in w for w in report.warnings)
    assert "role member of squad PV is not in this file" in report.warnings[0]
    assert active_roles(engine, "guest") == set()
    # a walk-in enterprise contact (no project, 一窗通办) is the one role held outside the file
    assert active_roles(engine, "walk.in") == {("enterprise", None, None)}
    assert not load_and_apply(engine, path).changed


def test_a_walk_in_the_file_makes_staff_loses_the_enterprise_role(
    engine: Engine, tmp_path: Path
) -> None:
    load_and_apply(engine, write(tmp_path, MINIMAL))
    add_roles(engine, "walk.in", ("enterprise", None, None))
    text = MINIMAL.replace(
        "  - {key: wang.fang, name: 王芳}\n",
        "  - {key: wang.fang, name: 王芳}\n  - {key: walk.in, name: 来宾}\n",
    ).replace("lead: li.ming}", "lead: li.ming, members: [walk.in]}")

    with transaction(engine) as session:
        walker = session.exec(select(Person).where(Person.key == "walk.in")).one()
        walker.telegram_user_id = 6001

    report = load_and_apply(engine, write(tmp_path, text))

    assert report.warnings == [
        "person 'walk.in' (来宾) moves between enterprise contact and zone staff: their "
        "Telegram account is unbound; send them a new invite for the new role"
    ]
    with Session(engine) as session:
        window = session.exec(select(Squad).where(Squad.code == "WINDOW")).one()
        walker = session.exec(select(Person).where(Person.key == "walk.in")).one()
        assert walker.telegram_user_id is None
    assert active_roles(engine, "walk.in") == {("member", window.id, None)}


def bind(engine: Engine, key: str, user: int) -> None:
    with transaction(engine) as session:
        person = session.exec(select(Person).where(Person.key == key)).one()
        person.telegram_user_id = user


def bound_to(engine: Engine, key: str) -> int | None:
    with Session(engine) as session:
        return session.exec(select(Person).where(Person.key == key)).one().telegram_user_id


def test_a_contact_the_file_moves_to_a_squad_is_unbound(engine: Engine, tmp_path: Path) -> None:
    """The account bound as a contact must not become zone staff by an edit of the file."""
    load_and_apply(engine, write(tmp_path, MINIMAL))
    bind(engine, "qian.hao", 6002)
    moved = MINIMAL.replace("contacts: [qian.hao]}", "contacts: []}").replace(
        "members: [zhang.wei]", "members: [zhang.wei, qian.hao]"
    )

    report = load_and_apply(engine, write(tmp_path, moved))

    assert bound_to(engine, "qian.hao") is None
    assert any("'qian.hao' (钱浩) moves between" in w for w in report.warnings)
    assert report.updated["person"] == 1 and report.deactivated["membership"] == 1
    with Session(engine) as session:
        pv = session.exec(select(Squad).where(Squad.code == "PV")).one()
    assert active_roles(engine, "qian.hao") == {("member", pv.id, None)}
    assert not load_and_apply(engine, write(tmp_path, moved)).changed

    # joined again as staff, the next loads leave the account alone
    bind(engine, "qian.hao", 6002)
    assert not load_and_apply(engine, write(tmp_path, moved)).changed
    assert bound_to(engine, "qian.hao") == 6002


def test_a_contact_the_file_moves_keeps_the_account_the_file_names(
    engine: Engine, tmp_path: Path
) -> None:
    load_and_apply(engine, write(tmp_path, MINIMAL))
    moved = (
        MINIMAL.replace("contacts: [qian.hao]}", "contacts: []}")
        .replace("members: [zhang.wei]", "members: [zhang.wei, qian.hao]")
        .replace("{key: qian.hao, name: 钱浩}", "{key: qian.hao, name: 钱浩, telegram_id: 6004}")
    )
    report = load_and_apply(engine, write(tmp_path, moved))
    assert (
        "moves between enterprise contact and zone staff: the file binds Telegram id 6004"
        in (report.warnings[-1])
    )
    assert bound_to(engine, "qian.hao") == 6004
    assert not load_and_apply(engine, write(tmp_path, moved)).changed


def test_a_contact_removed_then_made_staff_is_unbound(engine: Engine, tmp_path: Path) -> None:
    load_and_apply(engine, write(tmp_path, MINIMAL))
    bind(engine, "qian.hao", 6003)
    removed = MINIMAL.replace("contacts: [qian.hao]}", "contacts: []}")
    assert load_and_apply(engine, write(tmp_path, removed)).deactivated["membership"] == 1
    assert bound_to(engine, "qian.hao") == 6003  # out of the file, but no other side yet

    staff = removed.replace("{person: wang.fang, top: true}", "{person: qian.hao, top: true}")
    report = load_and_apply(engine, write(tmp_path, staff))

    assert bound_to(engine, "qian.hao") is None
    assert any("'qian.hao' (钱浩) moves between" in w for w in report.warnings)
    assert active_roles(engine, "qian.hao") == {("manager", None, None)}


def test_admins_come_from_the_file(engine: Engine, tmp_path: Path) -> None:
    text = MINIMAL.replace("squads:\n", "admins: [li.ming]\nsquads:\n")
    report = load_and_apply(engine, write(tmp_path, text))
    assert report.created["membership"] == 6  # 2 leads, a member, a contact, a manager, an admin
    assert ("admin", None, None) in active_roles(engine, "li.ming")
    with Session(engine) as session:
        assert describe_org(session)["admins"] == ["li.ming"]

    load_and_apply(engine, write(tmp_path, MINIMAL))
    assert ("admin", None, None) not in active_roles(engine, "li.ming")


def test_telegram_id_binds_but_never_steals(engine: Engine, tmp_path: Path) -> None:
    with transaction(engine) as session:
        session.add(Person(key="someone.else", name="他人", telegram_user_id=5001))

    report = load_and_apply(engine, write(tmp_path, MINIMAL))

    assert any("5001" in w for w in report.warnings)
    with Session(engine) as session:
        zhang = session.exec(select(Person).where(Person.key == "zhang.wei")).one()
        assert zhang.telegram_user_id is None

    text = MINIMAL.replace("telegram_id: 5001", "telegram_id: 5002")
    rebound = load_and_apply(engine, write(tmp_path, text))
    assert dict(rebound.updated) == {"person": 1}
    with Session(engine) as session:
        zhang = session.exec(select(Person).where(Person.key == "zhang.wei")).one()
        assert zhang.telegram_user_id == 5002


def test_a_bound_group_survives_a_file_without_one(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    load_and_apply(engine, path)
    with transaction(engine) as session:
        squad = session.exec(select(Squad).where(Squad.code == "PV")).one()
        squad.group_chat_id = -100123

    assert not load_and_apply(engine, path).changed
    with Session(engine) as session:
        assert session.exec(select(Squad).where(Squad.code == "PV")).one().group_chat_id == -100123


# --- bad files ---------------------------------------------------------------------------------

BAD_CASES = [
    # (marker of the MINIMAL line to replace, replacement, field, message fragment); the
    # problem is expected on the replacement's last line
    ("intake_squad: WINDOW", "  intake_squad: NOPE", "zone.intake_squad", "unknown squad 'NOPE'"),
    ("timezone:", "  timezone: Asia/Beijing", "zone.timezone", "unknown time zone"),
    ("language:", "  language: fr", "zone.language", "'fr' is not one of"),
    (
        "auto_close_after:",
        "  auto_close_after: 3 days",
        "zone.auto_close_after",
        "invalid duration",
    ),
    ("auto_close_after:", "  auto_close_after: 1:30", "zone.auto_close_after", "invalid duration"),
    ("clock:", "  clock: office", "zone.clock", "'office' is not one of"),
    ("working_hours:", '  working_hours: ["9am-noon"]', "zone.working_hours[0]", "not a period"),
    (
        "working_hours:",
        '  working_hours: ["09:00-12:00", "11:00-13:00"]',
        "zone.working_hours",
        "overlaps",
    ),
    ("working_hours:", '  working_hours: ["12:00-09:00"]', "zone.working_hours", "ends before"),
    ("code: YZ", "  code: YZ-ZONE-2026", "zone.code", "not a valid code"),
    (
        "kind: wecom",
        '    - {kind: slack, url: "https://example.invalid/hook"}',
        "zone.webhooks[0].kind",
        "'slack' is not one of",
    ),
    (
        "kind: wecom",
        '    - {kind: json, url: "ftp://example.invalid/hook"}',
        "zone.webhooks[0].url",
        "https://",
    ),
    (
        "kind: wecom",
        '    - {kind: json, url: "https://x.invalid", secret: abc}',
        "zone.webhooks[0].secret",
        "unknown field",
    ),
    (
        "default:",
        "  default: {response: 10m, handling: 2h, plan: 1d, warn_at: 120%}",
        "deadlines.default.warn_at",
        "between 0% and 100%",
    ),
    (
        "default:",
        "  default: {response: 0m, handling: 2h, plan: 1d}",
        "deadlines.default.response",
        "greater than zero",
    ),
    (
        "category: water, urgency",
        "    - {category: water, urgency: asap, response: 5m}",
        "deadlines.rules[0].urgency",
        "'asap' is not one of",
    ),
    (
        "category: water, urgency",
        "    - {category: fire, urgency: urgent, response: 5m}",
        "deadlines.rules[0].category",
        "unknown category 'fire'",
    ),
    (
        "category: water, urgency",
        "    - {response: 5m}",
        "deadlines.rules[0]",
        "needs a category or an urgency",
    ),
    (
        "{code: water",
        "  - {code: water, zh: 临时停水}",
        "categories[0].en",
        "required field is missing",
    ),
    (
        "key: zhang.wei",
        "  - {key: li.ming, name: 张伟}",
        "people[1].key",
        "duplicate person 'li.ming'",
    ),
    (
        "key: zhang.wei",
        "  - {key: zhang.wei, name: 张伟, telegram_id: abc}",
        "people[1].telegram_id",
        "whole number",
    ),
    (
        "key: zhang.wei",
        "  - {key: zhang.wei, name: 张伟, phone: call me}",
        "people[1].phone",
        "not a valid phone",
    ),
    (
        "person: wang.fang",
        "  - {person: nobody, top: true}",
        "managers[0].person",
        "unknown person 'nobody'",
    ),
    (
        "person: wang.fang",
        "  - {person: wang.fang, top: yes please}",
        "managers[0].top",
        "true or false",
    ),
    (
        "code: WINDOW",
        "  - {code: WINDOW, name: 一窗通办, lead: x}",
        "squads[0].lead",
        "unknown person 'x'",
    ),
    (
        "code: WINDOW",
        "  - {code: WINDOW, name: 一窗通办, leader: li.ming}",
        "squads[0].leader",
        "unknown field",
    ),
    (
        "code: PV,",
        "  - {code: WINDOW, name: 光伏专班, lead: li.ming}",
        "squads[1].code",
        "duplicate squad 'WINDOW' (first at line 26)",
    ),
    (
        "code: PV,",
        "  - {code: PV, name: 光伏, lead: li.ming, projects: [PV01]}\n"
        "  - {code: PV2, name: 二期, lead: li.ming, projects: [PV01]}",
        "squads[2].projects[0]",
        "already served by squad 'PV'",
    ),
    (
        "code: PV,",
        "  - {code: PV, name: 光伏专班, lead: li.ming, projects: [PV09]}",
        "squads[1].projects[0]",
        "unknown project 'PV09'",
    ),
    (
        "code: PV,",
        "  - {code: PV, name: 光伏专班, lead: li.ming, members: [li.ming]}",
        "squads[1].members",
        "already the lead",
    ),
    (
        "code: PV,",
        "  - {code: PV, name: 光伏专班, lead: li.ming, members: [zhang.wei, zhang.wei]}",
        "squads[1].members[1]",
        "listed twice",
    ),
    (
        "code: PV01",
        "  - {code: PV01, enterprise: 晶曜新能源}",
        "projects[0].name",
        "required field is missing",
    ),
    (
        "code: PV01",
        "  - {code: PV01, name: 光伏, enterprise: 晶曜, contacts: [nobody]}",
        "projects[0].contacts[0]",
        "unknown person 'nobody'",
    ),
    (
        "code: PV01",
        "  - {code: PV01, name: 光伏, enterprise: 晶曜, contacts: [zhang.wei]}",
        "projects[0].contacts[0]",
        "zone staff",
    ),
    (
        "{person: wang.fang, top: true}",
        "  - {person: wang.fang, top: true}\nadmins: [no.one]",
        "admins[0]",
        "unknown person 'no.one'",
    ),
    (
        "code: PV01",
        "  - {code: PV01, name: 光伏, enterprise: 晶曜, prefix: 光伏}",
        "projects[0].prefix",
        "not a valid prefix",
    ),
    (
        "code: PV01",
        "  - {code: PV01, name: 光伏, enterprise: 晶曜, contacts: qian.hao}",
        "projects[0].contacts",
        "expected a list",
    ),
]


def _mutate(marker: str, replacement: str) -> tuple[str, int]:
    lines = MINIMAL.splitlines()
    index = next(i for i, line in enumerate(lines) if marker in line)
    lines[index] = replacement
    return "\n".join(lines) + "\n", index + 1 + replacement.count("\n")


@pytest.mark.parametrize(("marker", "replacement", "field", "message"), BAD_CASES)
def test_bad_file_is_refused_with_line_and_field(
    engine: Engine, tmp_path: Path, marker: str, replacement: str, field: str, message: str
) -> None:
    load_and_apply(engine, write(tmp_path, MINIMAL, "good.yaml"))
    before = snapshot(engine)
    text, line = _mutate(marker, replacement)
    path = write(tmp_path, text)

    with pytest.raises(ZoneFileError) as caught:
        load_and_apply(engine, path)

    assert f"{path}:{line}: {field}: " in str(caught.value)
    assert message in str(caught.value)
    assert snapshot(engine) == before


def test_an_admin_cannot_be_an_enterprise_contact() -> None:
    text = MINIMAL.replace("squads:\n", "admins: [qian.hao]\nsquads:\n")
    with pytest.raises(ZoneFileError) as caught:
        parse_zone(text, "zone.yaml")
    assert "projects[0].contacts[0]: 'qian.hao' is zone staff (lead, member, manager or admin)" in (
        str(caught.value)
    )


def test_every_problem_is_reported_at_once() -> None:
    text = MINIMAL.replace("language: zh-CN", "language: fr").replace("lead: li.ming}", "lead: x}")
    with pytest.raises(ZoneFileError) as caught:
        parse_zone(text, "zone.yaml")
    fields = [p.field for p in caught.value.problems]
    assert fields == ["zone.language", "squads[0].lead"]
    assert str(caught.value).splitlines()[1] == "zone.yaml:26: squads[0].lead: unknown person 'x'"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "zone.yaml:1: zone: the file is empty"),
        ("- just a list\n", "zone.yaml:1: expected a mapping"),
        ("categories: []\n", "zone.yaml:1: zone: required field is missing"),
        ("zone:\n  code: YZ\n  name: [unclosed\n", "zone.yaml:4: not valid YAML"),
        ("zone: {code: YZ, code: YZ}\n", "zone.yaml:1: zone.code: field given twice"),
    ],
)
def test_malformed_documents(text: str, expected: str) -> None:
    with pytest.raises(ZoneFileError) as caught:
        parse_zone(text, "zone.yaml")
    assert str(caught.value).startswith(expected), str(caught.value)


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ZoneFileError, match=r"missing\.yaml: cannot read"):
        load_zone_file(tmp_path / "missing.yaml")


def test_text_fields_keep_what_was_written() -> None:
    text = (
        MINIMAL.replace('phone: "13800138011"', "phone: 013800138011")
        .replace("code: PV01,", "code: 0123,")
        .replace("projects: [PV01]", "projects: ['0123']")
    )
    document = parse_zone(text)
    assert document.people[0].phone == "013800138011"
    assert document.projects[0].code == "0123"


# --- the schedule of the calendar jobs ------------------------------------------------------


def test_the_schedule_defaults_when_the_file_has_none(engine: Engine) -> None:
    assert "schedule" not in MINIMAL
    document = parse_zone(MINIMAL)
    assert (document.schedule.digest, document.schedule.monthly_ranking) == (
        time(8, 30),
        time(9, 0),
    )
    with Session(engine) as session:
        zone = read_zone(session)
    assert (zone.digest_at, zone.monthly_ranking_at) == (time(8, 30), time(9, 0))


@pytest.mark.parametrize(
    ("section", "digest", "ranking"),
    [
        ('schedule: {digest: "07:05", monthly_ranking: "10:00"}', time(7, 5), time(10, 0)),
        ("schedule: {digest: 07:05}", time(7, 5), time(9, 0)),  # not YAML 1.1's 425
        ("schedule: {digest: off, monthly_ranking: null}", None, time(9, 0)),
        ('schedule: {monthly_ranking: "off"}', time(8, 30), None),
        ("schedule: {}", time(8, 30), time(9, 0)),
    ],
)
def test_the_schedule_can_be_moved_or_switched_off(
    engine: Engine, tmp_path: Path, section: str, digest: time | None, ranking: time | None
) -> None:
    load_and_apply(engine, write(tmp_path, MINIMAL + section + "\n"))
    with Session(engine) as session:
        zone = read_zone(session)
        described = describe_org(session)
    assert (zone.digest_at, zone.monthly_ranking_at) == (digest, ranking)
    assert described["zone"]["schedule"]["digest"] == (
        digest.strftime("%H:%M") if digest else "off"
    )
    # taking the section out again restores the defaults
    load_and_apply(engine, write(tmp_path, MINIMAL, "plain.yaml"))
    with Session(engine) as session:
        zone = read_zone(session)
    assert (zone.digest_at, zone.monthly_ranking_at) == (time(8, 30), time(9, 0))


@pytest.mark.parametrize(
    ("section", "field", "message"),
    [
        ('schedule: {digest: "8.30"}', "schedule.digest", "not a time such as 08:30"),
        ('schedule: {digest: "25:00"}', "schedule.digest", "not a time such as 08:30"),
        ("schedule: {digest: never}", "schedule.digest", "not a time such as 08:30"),
        ("schedule: {digest: [08:30]}", "schedule.digest", "not a list or mapping"),
        ('schedule: {ranking: "09:00"}', "schedule.ranking", "unknown field"),
    ],
)
def test_a_bad_schedule_is_refused_with_its_line(section: str, field: str, message: str) -> None:
    with pytest.raises(ZoneFileError) as caught:
        parse_zone(MINIMAL + section + "\n", "zone.yaml")
    line = MINIMAL.count("\n") + 1
    assert f"zone.yaml:{line}: {field}: " in str(caught.value)
    assert message in str(caught.value)


# --- the runtime view --------------------------------------------------------------------------


def test_read_zone_defaults_before_any_file(engine: Engine) -> None:
    with Session(engine) as session:
        zone = read_zone(session)
    assert zone.targets("water", "urgent") == DEFAULT_TARGETS
    assert DEFAULT_TARGETS.response == timedelta(minutes=10)
    assert zone.tz.key == "Asia/Shanghai" and zone.language == "zh-CN"
    assert zone.auto_close_after == timedelta(days=3) and zone.invite_ttl == timedelta(days=7)
    assert isinstance(zone.calendar, RoundTheClock)
    assert zone.intake_squad_code == "WINDOW"


def test_read_zone_after_loading_the_example(engine: Engine) -> None:
    load_and_apply(engine, EXAMPLE)
    with Session(engine) as session:
        zone = read_zone(session)
    assert zone.code == "YZ" and zone.name == "扬中经济开发区"
    assert zone.targets("water", "urgent") == SlaTargets(
        response=timedelta(minutes=5), handling=timedelta(hours=1), plan=timedelta(days=1)
    )
    assert zone.targets("power_line", "urgent").handling == timedelta(hours=1, minutes=30)
    assert zone.targets("water", "normal") == DEFAULT_TARGETS
    assert zone.targets("land", "urgent") == DEFAULT_TARGETS
    assert isinstance(zone.calendar, RoundTheClock)


def test_read_zone_working_hours_and_webhooks(engine: Engine, tmp_path: Path) -> None:
    text = MINIMAL.replace("clock: round_the_clock", "clock: working_hours").replace(
        "warn_at: 80%", "warn_at: 0.5, supervision_after: 30m"
    )
    load_and_apply(engine, write(tmp_path, text))
    with Session(engine) as session:
        zone = read_zone(session)
    assert isinstance(zone.calendar, WorkingHours)
    assert zone.targets("other", "normal").warn_ratio == 0.5
    assert zone.targets("other", "normal").supervision_after == timedelta(minutes=30)
    assert zone.webhooks == [
        {
            "kind": "wecom",
            "url": "https://example.invalid/hook?key=k",
            "secret_env": "SQUADBOT_WECOM",
        }
    ]


def test_describe_org_is_json_and_masks_phones(engine: Engine) -> None:
    load_and_apply(engine, EXAMPLE)
    with Session(engine) as session:
        described = describe_org(session)
    dumped = json.dumps(described, ensure_ascii=False)
    for person in load_zone_file(EXAMPLE).people:
        assert person.phone is None or person.phone not in dumped
    li = next(p for p in described["people"] if p["key"] == "li.ming")
    assert li["phone"] == "138****8011"
    assert li["roles"] == ["lead:WINDOW"] and li["telegram_bound"] is False
    pv = next(s for s in described["squads"] if s["code"] == "PV")
    assert pv["lead"] == ["liu.yang"] and pv["projects"] == ["PV01"]
    assert pv["members"] == ["wu.gang", "xu.hui", "zhou.jun"] and pv["group_bound"] is False
    assert [m["person"] for m in described["managers"] if m["top"]] == ["wang.fang"]
    assert len(described["categories"]) == 10
    rules = {(r["category"], r["urgency"]): r for r in described["deadlines"]}
    assert rules[("water", "urgent")]["response"] == "5m"
    assert rules[(None, None)]["warn_at"] == "80%"


def test_describe_org_hides_webhook_keys(engine: Engine, tmp_path: Path) -> None:
    load_and_apply(engine, write(tmp_path, MINIMAL))
    with Session(engine) as session:
        hooks = describe_org(session)["zone"]["webhooks"]
    assert hooks == [
        {"kind": "wecom", "url": "https://example.invalid/hook?…", "secret_env": "SQUADBOT_WECOM"}
    ]


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13800138011", "138****8011"),
        ("+85291234567", "+85*****4567"),
        ("5551234", "55***34"),
        (None, None),
    ],
)
def test_mask_phone(phone: str | None, masked: str | None) -> None:
    assert mask_phone(phone) == masked


# --- alert storms ---------------------------------------------------------------------------


def test_alert_storms_default_when_the_file_has_none() -> None:
    assert "alerts" not in MINIMAL
    alerts = parse_zone(MINIMAL, "zone.yaml").alerts
    assert (alerts.storm_threshold, alerts.storm_window) == (20, timedelta(seconds=60))


def test_alert_storms_are_read_from_the_file() -> None:
    text = MINIMAL + "alerts: {storm_threshold: 5, storm_window: 10m}\n"
    alerts = parse_zone(text, "zone.yaml").alerts
    assert (alerts.storm_threshold, alerts.storm_window) == (5, timedelta(minutes=10))


@pytest.mark.parametrize(
    ("section", "field", "message"),
    [
        ("alerts: {storm_threshold: 0}", "alerts.storm_threshold", "must be 1 or more"),
        ("alerts: {storm_threshold: many}", "alerts.storm_threshold", "whole number"),
        ("alerts: {storm_window: 0s}", "alerts.storm_window", "greater than zero"),
        ("alerts: {storm_window: soon}", "alerts.storm_window", ""),
        ("alerts: {threshold: 5}", "alerts.threshold", "unknown field"),
    ],
)
def test_bad_alert_storm_settings_are_refused_with_their_line(
    section: str, field: str, message: str
) -> None:
    with pytest.raises(ZoneFileError) as caught:
        parse_zone(MINIMAL + section + "\n", "zone.yaml")
    line = MINIMAL.count("\n") + 1
    assert f"zone.yaml:{line}: {field}: " in str(caught.value)
    assert message in str(caught.value)
