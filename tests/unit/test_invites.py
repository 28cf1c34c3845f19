"""Invites, the only way a Telegram account gets a role: created with checks, redeemed once,
refused when unknown, used or expired, bound to a zone person when made for one, and a
squad's group bound only by that squad's lead."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.desk import DeskError
from models.invites import INVITE_ROLES, bind_group, create_invite, redeem
from models.org import Membership, Person, Project, Role, Squad
from models.people import actor_for
from models.plumbing import Invite
from tests.harness import zone_database

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
TTL = timedelta(days=7)
GROUP = -1001234567890


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = zone_database(tmp_path)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def invite(session: Session, role: str, **where: str | None) -> Invite:
    made = create_invite(session, NOW, role=role, ttl=TTL, **where)
    session.commit()
    return made


def use(
    session: Session, code: str, user: int, *, at: datetime = NOW, name: str = "微信名"
) -> tuple[Person, Invite]:
    result = redeem(session, at, code, telegram_user_id=user, name=name, language="zh-CN")
    session.commit()
    return result


def refusal(session: Session, code: str, user: int, *, at: datetime = NOW) -> str:
    with pytest.raises(DeskError) as caught:
        redeem(session, at, code, telegram_user_id=user, name="x", language=None)
    session.rollback()
    return caught.value.key


def squad_id(session: Session, code: str) -> int:
    squad = session.exec(select(Squad).where(Squad.code == code)).one()
    assert squad.id is not None
    return squad.id


# --- creating -------------------------------------------------------------------------------
def test_an_invite_is_random_single_use_and_expires_after_the_ttl(session: Session) -> None:
    codes = {invite(session, "enterprise", project_code="PV01").code for _ in range(20)}
    assert len(codes) == 20 and all(len(c) >= 16 for c in codes)
    made = invite(session, "member", squad_code="PV")
    assert made.expires_at == NOW + TTL and made.used_at is None
    assert made.squad_id == squad_id(session, "PV") and made.project_id is None


@pytest.mark.parametrize(
    ("role", "where", "complaint"),
    [
        ("emperor", {}, "unknown role"),
        ("member", {}, "--squad is required"),
        ("lead", {}, "--squad is required"),
        ("group", {}, "--squad is required"),
        ("member", {"squad_code": "NOPE"}, "unknown squad"),
        ("enterprise", {"project_code": "NOPE01"}, "unknown project"),
        ("member", {"squad_code": "PV", "person_key": "no.one"}, "unknown person"),
    ],
)
def test_a_bad_invite_is_not_created(
    session: Session, role: str, where: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        create_invite(session, NOW, role=role, ttl=TTL, **where)
    session.rollback()
    assert session.exec(select(Invite)).all() == []


def test_every_role_can_be_invited(session: Session) -> None:
    for role in INVITE_ROLES:
        squad = "PV" if role in ("member", "lead", "group") else None
        project = "PV01" if role == "enterprise" else None
        assert invite(session, role, squad_code=squad, project_code=project).role == role


# --- redeeming ------------------------------------------------------------------------------
def test_redeeming_gives_the_role_once(session: Session) -> None:
    code = invite(session, "enterprise", project_code="PV01").code
    person, used = use(session, f"  {code}\n", 7001)
    assert used.used_at == NOW and used.used_by == 7001
    assert person.telegram_user_id == 7001 and person.language == "zh-CN"
    actor = actor_for(session, 7001)
    project = session.exec(select(Project).where(Project.code == "PV01")).one()
    assert actor is not None and actor.is_enterprise and actor.project_id == project.id

    assert refusal(session, code, 7001) == "invite.used"
    assert refusal(session, code, 7002) == "invite.used"
    assert actor_for(session, 7002) is None


def test_unknown_and_expired_codes_are_refused(session: Session) -> None:
    assert refusal(session, "no-such-code", 7001) == "invite.unknown"
    assert refusal(session, "", 7001) == "invite.unknown"
    code = invite(session, "enterprise", project_code="PV01").code
    assert refusal(session, code, 7001, at=NOW + TTL) == "invite.expired"
    assert refusal(session, code, 7001, at=NOW + TTL + timedelta(days=30)) == "invite.expired"
    assert actor_for(session, 7001) is None
    # a second before it expires, it still works
    person, _ = use(session, code, 7001, at=NOW + TTL - timedelta(seconds=1))
    assert person.telegram_user_id == 7001


def test_a_group_code_is_not_for_a_private_chat(session: Session) -> None:
    code = invite(session, "group", squad_code="PV").code
    assert refusal(session, code, 7001) == "invite.group_code_in_private"
    assert session.exec(select(Invite).where(Invite.code == code)).one().used_at is None


def test_a_second_role_is_added_not_duplicated(session: Session) -> None:
    first = invite(session, "enterprise", project_code="PV01").code
    again = invite(session, "enterprise", project_code="PV01").code
    manager = invite(session, "manager").code
    person, _ = use(session, first, 7001)
    use(session, again, 7001)
    use(session, manager, 7001)
    roles = [
        m.role for m in session.exec(select(Membership).where(Membership.person_id == person.id))
    ]
    assert sorted(roles) == ["enterprise", "manager"]


# --- invites made for a person of the zone file ----------------------------------------------
def test_an_invite_for_a_person_binds_that_person(session: Session) -> None:
    code = invite(session, "member", squad_code="PV", person_key="zhou.jun").code
    person, _ = use(session, code, 7001, name="Zhou J (Telegram)")
    assert person.key == "zhou.jun" and person.name == "周军"  # the zone's name is kept
    actor = actor_for(session, 7001)
    assert actor is not None and actor.squad_ids == {squad_id(session, "PV")}
    memberships = session.exec(
        select(Membership).where(Membership.person_id == person.id, Membership.role == Role.MEMBER)
    ).all()
    assert len(memberships) == 1  # the file's membership, not a copy


def test_a_person_invite_cannot_be_taken_over(session: Session) -> None:
    first = invite(session, "member", squad_code="PV", person_key="zhou.jun").code
    second = invite(session, "member", squad_code="PV", person_key="zhou.jun").code
    use(session, first, 7001)
    # another account with a fresh code for the same person
    assert refusal(session, second, 7002) == "invite.used"
    assert actor_for(session, 7002) is None
    # an account that already is someone else cannot become zhou.jun
    other = invite(session, "member", squad_code="PV", person_key="xu.hui").code
    assert refusal(session, other, 7001) == "invite.already_someone_else"
    zhou = session.exec(select(Person).where(Person.key == "zhou.jun")).one()
    xu = session.exec(select(Person).where(Person.key == "xu.hui")).one()
    assert zhou.telegram_user_id == 7001 and xu.telegram_user_id is None
    # the owner of the account may use the second code again (a new phone, say)
    person, _ = use(session, second, 7001)
    assert person.key == "zhou.jun"


# --- binding a squad's group ----------------------------------------------------------------
def bound(session: Session, code: str) -> str | None:
    squad = session.exec(select(Squad).where(Squad.code == code)).one()
    session.refresh(squad)
    return None if squad.group_chat_id is None else str(squad.group_chat_id)


def bind_refusal(session: Session, code: str, user: int, *, at: datetime = NOW) -> str:
    with pytest.raises(DeskError) as caught:
        bind_group(session, at, code, chat_id=GROUP, telegram_user_id=user)
    session.rollback()
    return caught.value.key


def test_a_group_is_bound_by_the_lead_of_its_squad(session: Session) -> None:
    use(session, invite(session, "lead", squad_code="PV", person_key="liu.yang").code, 7001)
    use(session, invite(session, "member", squad_code="PV", person_key="zhou.jun").code, 7002)
    use(session, invite(session, "lead", squad_code="HV", person_key="ma.lin").code, 7003)
    code = invite(session, "group", squad_code="PV").code

    assert bind_refusal(session, code, 7002) == "invite.bind_needs_lead"  # a member
    assert bind_refusal(session, code, 7003) == "invite.bind_needs_lead"  # another squad's lead
    assert bind_refusal(session, code, 7999) == "invite.bind_needs_lead"  # nobody
    assert bound(session, "PV") is None
    assert session.exec(select(Invite).where(Invite.code == code)).one().used_at is None

    squad = bind_group(session, NOW, code, chat_id=GROUP, telegram_user_id=7001)
    session.commit()
    assert squad.code == "PV" and bound(session, "PV") == str(GROUP)
    assert bind_refusal(session, code, 7001) == "invite.used"


def test_binding_needs_a_live_group_code(session: Session) -> None:
    use(session, invite(session, "lead", squad_code="PV", person_key="liu.yang").code, 7001)
    assert bind_refusal(session, "nope", 7001) == "invite.unknown"
    member_code = invite(session, "member", squad_code="PV").code
    assert bind_refusal(session, member_code, 7001) == "invite.not_group_code"
    late = invite(session, "group", squad_code="PV").code
    assert bind_refusal(session, late, 7001, at=NOW + TTL) == "invite.expired"
    assert bound(session, "PV") is None


def test_a_lead_dropped_from_the_squad_cannot_bind(session: Session) -> None:
    use(session, invite(session, "lead", squad_code="PV", person_key="liu.yang").code, 7001)
    liu = session.exec(select(Person).where(Person.key == "liu.yang")).one()
    for row in session.exec(select(Membership).where(Membership.person_id == liu.id)):
        row.active = False
        session.add(row)
    session.commit()
    code = invite(session, "group", squad_code="PV").code
    assert bind_refusal(session, code, 7001) == "invite.bind_needs_lead"
