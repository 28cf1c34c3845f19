"""Invites bind a Telegram account to the role the zone file gives a person: made only for a
person the file lists in that role (or a walk-in enterprise), checked again when used,
redeemed once, refused when unknown, revoked, used, expired or no longer true of the zone;
zone staff and enterprise contacts never mix; a squad's group is bound only by its lead."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.desk import DeskError
from models.invites import (
    INVITE_ROLES,
    NEEDS,
    TAKES,
    InviteRefused,
    bind_group,
    create_invite,
    open_invites,
    redeem,
    revoke_invite,
)
from models.org import Membership, Person, Project, Role, Squad
from models.people import actor_for
from models.plumbing import Invite
from models.zone.load import load_and_apply
from tests.harness import zone_database, zone_variant

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
TTL = timedelta(days=7)
GROUP = -1001234567890

# A valid invite of each role in the example zone, as create_invite's keyword arguments.
VALID: dict[str, dict[str, str]] = {
    "enterprise": {"project_code": "PV01", "person_key": "qian.hao"},
    "member": {"squad_code": "PV", "person_key": "zhou.jun"},
    "lead": {"squad_code": "PV", "person_key": "liu.yang"},
    "manager": {"person_key": "wang.fang"},
    "admin": {"person_key": "qiu.ping"},
    "group": {"squad_code": "PV"},
}
ARG = {"squad": "squad_code", "project": "project_code", "person": "person_key"}
SOME = {"squad_code": "PV", "project_code": "PV01", "person_key": "zhou.jun"}


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


def refused(session: Session, role: str, **where: str | None) -> InviteRefused:
    with pytest.raises(InviteRefused) as caught:
        create_invite(session, NOW, role=role, ttl=TTL, **where)
    session.rollback()
    assert session.exec(select(Invite)).all() == []
    return caught.value


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


def person(session: Session, key: str) -> Person:
    return session.exec(select(Person).where(Person.key == key)).one()


# --- creating -------------------------------------------------------------------------------
def test_an_invite_is_random_single_use_and_expires_after_the_ttl(session: Session) -> None:
    codes = {invite(session, "enterprise").code for _ in range(20)}
    assert len(codes) == 20 and all(len(c) >= 16 for c in codes)
    made = invite(session, "member", squad_code="PV", person_key="zhou.jun")
    assert made.expires_at == NOW + TTL and made.used_at is None
    assert made.squad_id == squad_id(session, "PV") and made.project_id is None
    assert made.person_key == "zhou.jun"


@pytest.mark.parametrize("role", INVITE_ROLES)
def test_every_role_can_be_invited_for_whom_the_file_says(session: Session, role: str) -> None:
    made = invite(session, role, **VALID[role])
    assert made.role == role and made.person_key == VALID[role].get("person_key")


def test_a_walk_in_enterprise_invite_names_nobody(session: Session) -> None:
    made = invite(session, "enterprise")
    assert (made.project_id, made.squad_id, made.person_key) == (None, None, None)


def test_an_unknown_role_is_refused(session: Session) -> None:
    assert refused(session, "emperor").key == "invite.bad.role"


# every option a role does not take, added to a valid invite of that role
EXTRA = [(role, name) for role in INVITE_ROLES for name in ARG if name not in TAKES[role]]
# every option a role needs, left out of a valid invite of that role
MISSING = [(role, name) for role in INVITE_ROLES for name in NEEDS[role]]


@pytest.mark.parametrize(("role", "name"), EXTRA)
def test_an_option_that_does_not_belong_to_the_role_is_refused(
    session: Session, role: str, name: str
) -> None:
    where = {**VALID[role], ARG[name]: SOME[ARG[name]]}
    problem = refused(session, role, **where)
    assert (problem.key, problem.params) == ("invite.bad.extra", {"role": role, "field": name})


@pytest.mark.parametrize(("role", "name"), MISSING)
def test_an_option_the_role_needs_is_required(session: Session, role: str, name: str) -> None:
    where = {k: v for k, v in VALID[role].items() if k != ARG[name]}
    problem = refused(session, role, **where)
    assert (problem.key, problem.params) == ("invite.bad.missing", {"role": role, "field": name})


def test_the_tables_cover_every_role() -> None:
    assert set(NEEDS) == set(TAKES) == set(INVITE_ROLES) == set(VALID)
    assert len(EXTRA) == 9 and len(MISSING) == 7  # every combination is a case


@pytest.mark.parametrize(
    ("role", "where", "key", "params"),
    [
        # an enterprise invite names a contact of that project, or nobody at all (walk-in)
        (
            "enterprise",
            {"project_code": "PV01"},
            "invite.bad.contact_needed",
            {"project": "PV01", "contacts": "qian.hao, shi.lei"},
        ),
        ("enterprise", {"person_key": "qian.hao"}, "invite.bad.project_needed", {}),
        (
            "enterprise",
            {"project_code": "PV01", "person_key": "yang.fan"},  # a contact of HV01
            "invite.bad.not_contact",
            {"person": "yang.fan", "project": "PV01"},
        ),
        # a member or lead invite names a person in that squad in that role
        (
            "member",
            {"squad_code": "PV", "person_key": "liu.yang"},  # PV's lead
            "invite.bad.not_member",
            {"person": "liu.yang", "squad": "PV"},
        ),
        (
            "member",
            {"squad_code": "PV", "person_key": "hu.bin"},  # a member of HV
            "invite.bad.not_member",
            {"person": "hu.bin", "squad": "PV"},
        ),
        (
            "lead",
            {"squad_code": "PV", "person_key": "zhou.jun"},  # a member of PV
            "invite.bad.not_lead",
            {"person": "zhou.jun", "squad": "PV"},
        ),
        (
            "lead",
            {"squad_code": "HV", "person_key": "liu.yang"},  # PV's lead
            "invite.bad.not_lead",
            {"person": "liu.yang", "squad": "HV"},
        ),
        ("manager", {"person_key": "zhou.jun"}, "invite.bad.not_manager", {"person": "zhou.jun"}),
        ("admin", {"person_key": "wang.fang"}, "invite.bad.not_admin", {"person": "wang.fang"}),
        # zone staff and enterprise contacts never mix
        (
            "enterprise",
            {"project_code": "PV01", "person_key": "liu.yang"},
            "invite.bad.staff_as_contact",
            {"person": "liu.yang"},
        ),
        (
            "enterprise",
            {"project_code": "PV01", "person_key": "qiu.ping"},
            "invite.bad.staff_as_contact",
            {"person": "qiu.ping"},
        ),
        (
            "member",
            {"squad_code": "PV", "person_key": "qian.hao"},
            "invite.bad.contact_as_staff",
            {"person": "qian.hao"},
        ),
        (
            "lead",
            {"squad_code": "PV", "person_key": "qian.hao"},
            "invite.bad.contact_as_staff",
            {"person": "qian.hao"},
        ),
        (
            "manager",
            {"person_key": "qian.hao"},
            "invite.bad.contact_as_staff",
            {"person": "qian.hao"},
        ),
        (
            "admin",
            {"person_key": "qian.hao"},
            "invite.bad.contact_as_staff",
            {"person": "qian.hao"},
        ),
        # what does not exist
        (
            "member",
            {"squad_code": "NOPE", "person_key": "zhou.jun"},
            "invite.bad.unknown_squad",
            {},
        ),
        ("group", {"squad_code": "NOPE"}, "invite.bad.unknown_squad", {"code": "NOPE"}),
        (
            "enterprise",
            {"project_code": "NOPE01", "person_key": "qian.hao"},
            "invite.bad.unknown_project",
            {"code": "NOPE01"},
        ),
        (
            "member",
            {"squad_code": "PV", "person_key": "no.one"},
            "invite.bad.unknown_person",
            {"person": "no.one"},
        ),
        ("manager", {"person_key": "no.one"}, "invite.bad.unknown_person", {}),
    ],
)
def test_an_invite_must_say_what_the_zone_file_says(
    session: Session, role: str, where: dict[str, str], key: str, params: dict[str, str]
) -> None:
    problem = refused(session, role, **where)
    assert problem.key == key
    assert params.items() <= problem.params.items()


def test_a_switched_off_squad_or_project_is_unknown(session: Session) -> None:
    for row in (
        session.exec(select(Squad).where(Squad.code == "PV")).one(),
        session.exec(select(Project).where(Project.code == "HV01")).one(),
    ):
        row.active = False
        session.add(row)
    session.commit()
    assert refused(session, "group", squad_code="PV").key == "invite.bad.unknown_squad"
    where = {"project_code": "HV01", "person_key": "yang.fan"}
    assert refused(session, "enterprise", **where).key == "invite.bad.unknown_project"


def test_a_project_without_contacts_says_so(session: Session) -> None:
    session.add(Project(code="NEW01", name="新项目", enterprise="新企业", number_prefix="YZ"))
    session.commit()
    problem = refused(session, "enterprise", project_code="NEW01")
    assert (problem.key, problem.params) == ("invite.bad.no_contacts", {"project": "NEW01"})


# --- redeeming ------------------------------------------------------------------------------
def test_redeeming_binds_the_person_once(session: Session) -> None:
    code = invite(session, "enterprise", project_code="PV01", person_key="qian.hao").code
    bound, used = use(session, f"  {code}\n", 7001)
    assert used.used_at == NOW and used.used_by == 7001
    assert bound.key == "qian.hao" and bound.telegram_user_id == 7001
    actor = actor_for(session, 7001)
    project = session.exec(select(Project).where(Project.code == "PV01")).one()
    assert actor is not None and actor.is_enterprise and actor.project_id == project.id
    rows = session.exec(select(Membership).where(Membership.person_id == bound.id)).all()
    assert [(m.role, m.source) for m in rows] == [("enterprise", "file")]  # none added

    assert refusal(session, code, 7001) == "invite.used"
    assert refusal(session, code, 7002) == "invite.used"
    assert actor_for(session, 7002) is None


def test_unknown_and_expired_codes_are_refused(session: Session) -> None:
    assert refusal(session, "no-such-code", 7001) == "invite.unknown"
    assert refusal(session, "", 7001) == "invite.unknown"
    code = invite(session, "enterprise").code
    assert refusal(session, code, 7001, at=NOW + TTL) == "invite.expired"
    assert refusal(session, code, 7001, at=NOW + TTL + timedelta(days=30)) == "invite.expired"
    assert actor_for(session, 7001) is None
    # a second before it expires, it still works
    bound, _ = use(session, code, 7001, at=NOW + TTL - timedelta(seconds=1))
    assert bound.telegram_user_id == 7001


def test_a_group_code_is_not_for_a_private_chat(session: Session) -> None:
    code = invite(session, "group", squad_code="PV").code
    assert refusal(session, code, 7001) == "invite.group_code_in_private"
    assert session.exec(select(Invite).where(Invite.code == code)).one().used_at is None


def test_a_walk_in_becomes_an_enterprise_contact_without_a_project(session: Session) -> None:
    first, again = invite(session, "enterprise").code, invite(session, "enterprise").code
    newcomer, _ = use(session, first, 7001, name="赵总")
    assert newcomer.key == "tg7001" and newcomer.name == "赵总" and not newcomer.from_file
    use(session, again, 7001)
    rows = session.exec(select(Membership).where(Membership.person_id == newcomer.id)).all()
    assert [(m.role, m.squad_id, m.project_id, m.source) for m in rows] == [
        ("enterprise", None, None, "invite")
    ]
    actor = actor_for(session, 7001)
    assert actor is not None and actor.is_enterprise and actor.project_id is None


def test_an_invite_for_a_person_binds_that_person(session: Session) -> None:
    code = invite(session, "member", squad_code="PV", person_key="zhou.jun").code
    bound, _ = use(session, code, 7001, name="Zhou J (Telegram)")
    assert bound.key == "zhou.jun" and bound.name == "周军"  # the zone's name is kept
    actor = actor_for(session, 7001)
    assert actor is not None and actor.squad_ids == {squad_id(session, "PV")}
    memberships = session.exec(
        select(Membership).where(Membership.person_id == bound.id, Membership.role == Role.MEMBER)
    ).all()
    assert len(memberships) == 1  # the file's membership, not a copy


def test_a_person_invite_cannot_be_taken_over(session: Session) -> None:
    first = invite(session, "member", squad_code="PV", person_key="zhou.jun").code
    second = invite(session, "member", squad_code="PV", person_key="zhou.jun").code
    use(session, first, 7001)
    # another account with a fresh code for the same person
    assert refusal(session, second, 7002) == "invite.used"
    assert actor_for(session, 7002) is None
    # an account that already is someone else cannot become xu.hui
    other = invite(session, "member", squad_code="PV", person_key="xu.hui").code
    assert refusal(session, other, 7001) == "invite.already_someone_else"
    assert person(session, "zhou.jun").telegram_user_id == 7001
    assert person(session, "xu.hui").telegram_user_id is None
    # the owner of the account may use the second code again (a new phone, say)
    bound, _ = use(session, second, 7001)
    assert bound.key == "zhou.jun"


# --- staff and contacts never mix, whichever invite is opened by whom ------------------------
def test_a_contact_opening_a_staff_invite_gets_nothing(session: Session) -> None:
    use(session, invite(session, "enterprise", project_code="PV01", person_key="qian.hao").code, 1)
    for role in ("member", "lead", "manager", "admin"):
        code = invite(session, role, **VALID[role]).code
        assert refusal(session, code, 1) == "invite.already_someone_else"
    actor = actor_for(session, 1)
    assert actor is not None and actor.roles() == {"enterprise"}


def test_staff_cannot_open_a_walk_in_invite(session: Session) -> None:
    use(session, invite(session, "member", **VALID["member"]).code, 2)
    use(session, invite(session, "admin", **VALID["admin"]).code, 3)
    for user in (2, 3):
        code = invite(session, "enterprise").code
        assert refusal(session, code, user) == "invite.staff_not_enterprise"
        actor = actor_for(session, user)
        assert actor is not None and not actor.is_enterprise


def test_a_walk_in_opening_a_staff_invite_gets_nothing(session: Session) -> None:
    use(session, invite(session, "enterprise").code, 4)
    for role in ("member", "lead", "manager", "admin", "enterprise"):
        code = invite(session, role, **VALID[role]).code
        assert refusal(session, code, 4) == "invite.already_someone_else"
    actor = actor_for(session, 4)
    assert actor is not None and actor.roles() == {"enterprise"}


# --- the zone changed after the invite was made ---------------------------------------------
def test_a_person_removed_from_the_file_cannot_come_back_through_an_invite(
    engine: Engine, session: Session, tmp_path: Path
) -> None:
    old = invite(session, "member", squad_code="PV", person_key="zhou.jun").code
    fresh = invite(session, "member", squad_code="PV", person_key="wu.gang").code
    use(session, old, 7001)
    spare = invite(session, "member", squad_code="PV", person_key="zhou.jun").code

    without = zone_variant(
        tmp_path, **{"members: [zhou.jun, xu.hui, wu.gang]": "members: [xu.hui]"}
    )
    load_and_apply(engine, without)
    session.expire_all()

    # zhou.jun, bound before, has lost the role; his spare code does not switch it back on
    assert refusal(session, spare, 7001) == "invite.withdrawn"
    assert refusal(session, fresh, 7002) == "invite.withdrawn"  # wu.gang never joined
    zhou = actor_for(session, 7001)
    assert zhou is not None and not zhou.has_role
    assert actor_for(session, 7002) is None and person(session, "wu.gang").telegram_user_id is None
    assert session.exec(select(Invite).where(Invite.code == spare)).one().used_at is None

    # back in the file, the same invites work again
    load_and_apply(engine, Path(__file__).resolve().parents[2] / "examples" / "zone.yaml")
    session.expire_all()
    use(session, fresh, 7002)
    wu = actor_for(session, 7002)
    assert wu is not None and wu.squad_ids == {squad_id(session, "PV")}


def test_invites_made_before_they_named_their_person_are_withdrawn(session: Session) -> None:
    """Rows written by the older rules: a role with no person, a project with no contact."""
    pv, pv01 = squad_id(session, "PV"), session.exec(select(Project.id)).first()
    for code, role, squad, project in (
        ("old-member", "member", pv, None),
        ("old-lead", "lead", pv, None),
        ("old-manager", "manager", None, None),
        ("old-admin", "admin", None, None),
        ("old-contact", "enterprise", None, pv01),
    ):
        session.add(
            Invite(
                code=code,
                role=role,
                squad_id=squad,
                project_id=project,
                created_at=NOW,
                expires_at=NOW + TTL,
            )
        )
    session.commit()
    for code in ("old-member", "old-lead", "old-manager", "old-admin", "old-contact"):
        assert refusal(session, code, 7001) == "invite.withdrawn"
    assert actor_for(session, 7001) is None


# --- listing and revoking -------------------------------------------------------------------
def test_open_invites_are_listed_and_the_withdrawn_ones_flagged(
    engine: Engine, session: Session, tmp_path: Path
) -> None:
    walk_in = invite(session, "enterprise").code
    group = invite(session, "group", squad_code="PV").code
    wu = invite(session, "member", squad_code="PV", person_key="wu.gang").code
    used = invite(session, "manager", person_key="wang.fang").code
    use(session, used, 7001)
    late = create_invite(session, NOW - TTL, role="enterprise", ttl=TTL)  # expires NOW
    session.commit()
    load_and_apply(engine, zone_variant(tmp_path, **{", wu.gang]": "]"}))
    session.expire_all()

    found = {item.code: item for item in open_invites(session, NOW)}

    assert set(found) == {walk_in, group, wu} and late.code not in found
    assert (found[wu].role, found[wu].squad, found[wu].person) == ("member", "PV", "wu.gang")
    problem = found[wu].problem
    assert problem is not None and problem.key == "invite.bad.not_member"
    assert found[walk_in].problem is None and found[group].problem is None
    assert found[walk_in].expires_at == NOW + TTL


def test_a_revoked_code_is_unknown_from_then_on(session: Session) -> None:
    code = invite(session, "member", squad_code="PV", person_key="zhou.jun").code
    outcome, row = revoke_invite(session, NOW, f" {code} ")
    session.commit()
    assert outcome == "revoked" and row is not None and row.code == code
    assert refusal(session, code, 7001) == "invite.unknown"
    assert open_invites(session, NOW) == []
    assert revoke_invite(session, NOW, code) == ("unknown", None)


def test_used_and_expired_invites_are_not_revoked(session: Session) -> None:
    used = invite(session, "enterprise").code
    use(session, used, 7001)
    late = invite(session, "enterprise").code
    assert revoke_invite(session, NOW, used)[0] == "used"
    assert revoke_invite(session, NOW + TTL, late)[0] == "expired"
    session.commit()
    assert session.exec(select(Invite).where(Invite.code == late)).one() is not None


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
    member_code = invite(session, "member", squad_code="PV", person_key="zhou.jun").code
    assert bind_refusal(session, member_code, 7001) == "invite.not_group_code"
    late = invite(session, "group", squad_code="PV").code
    assert bind_refusal(session, late, 7001, at=NOW + TTL) == "invite.expired"
    assert bound(session, "PV") is None


def test_a_lead_dropped_from_the_squad_cannot_bind(session: Session) -> None:
    use(session, invite(session, "lead", squad_code="PV", person_key="liu.yang").code, 7001)
    liu = person(session, "liu.yang")
    for row in session.exec(select(Membership).where(Membership.person_id == liu.id)):
        row.active = False
        session.add(row)
    session.commit()
    code = invite(session, "group", squad_code="PV").code
    assert bind_refusal(session, code, 7001) == "invite.bind_needs_lead"
