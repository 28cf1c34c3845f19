"""`may`, the one permission check: every act for every role in every relation to a ticket,
and the acts on the zone itself (invites, reloading, a group's chat id). The expectations
are written out as a table, not derived from the code under test."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, select

from models.org import Membership, Person, Role
from models.people import Actor, actor_for
from models.permissions import Act, FiguresScope, figures_scope, may, may_at_all
from models.ticket import Ticket
from tests.harness import zone_database

SQUAD, OTHER_SQUAD, PROJECT = 1, 2, 10
SUBMITTER, OWNER = 100, 101
NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def person(pid: int, *roles: tuple[str, int | None, int | None]) -> Actor:
    """An actor with the given (role, squad_id, project_id) memberships."""
    p = Person(id=pid, key=f"p{pid}", name=f"P{pid}")
    return Actor(
        person=p,
        memberships=[
            Membership(person_id=pid, role=role, squad_id=squad, project_id=project)
            for role, squad, project in roles
        ],
    )


ACTORS: dict[str, Actor | None] = {
    "nobody": None,
    "no_role": person(200),
    "submitter": person(SUBMITTER, (Role.ENTERPRISE, None, PROJECT)),
    "other_enterprise_same_project": person(102, (Role.ENTERPRISE, None, PROJECT)),
    "other_enterprise": person(103, (Role.ENTERPRISE, None, 11)),
    "owner": person(OWNER, (Role.MEMBER, SQUAD, None)),
    "squad_member": person(104, (Role.MEMBER, SQUAD, None)),
    "squad_lead": person(105, (Role.LEAD, SQUAD, None)),
    "other_squad_member": person(106, (Role.MEMBER, OTHER_SQUAD, None)),
    "other_squad_lead": person(107, (Role.LEAD, OTHER_SQUAD, None)),
    "manager": person(108, (Role.MANAGER, None, None)),
    "admin": person(109, (Role.ADMIN, None, None)),
    # the submitter's own id, but no longer an enterprise contact (e.g. moved to a squad)
    "submitter_without_enterprise_role": person(SUBMITTER, (Role.MEMBER, OTHER_SQUAD, None)),
}

SQUAD_WORK = {Act.VIEW, Act.CLAIM, Act.REPLY, Act.NOTE, Act.PLAN, Act.NEEDS_PLAN, Act.WAIT}
SQUAD_WORK |= {Act.EXTEND}
ENTERPRISE_WORK = {Act.VIEW, Act.CONFIRM, Act.RATE, Act.MESSAGE_SQUAD}
# Acts on the zone, not on a ticket.
ZONE_ACTS = (
    Act.FILE,
    Act.DECIDE_EXTENSION,
    Act.INVITE,
    Act.RELOAD_ZONE,
    Act.SHOW_CHAT_ID,
    Act.FIGURES,
)

# What each may do to a claimed ticket of squad SQUAD, filed by SUBMITTER, owned by OWNER.
ALLOWED: dict[str, set[Act]] = {
    "nobody": set(),
    "no_role": set(),
    "submitter": {Act.FILE} | ENTERPRISE_WORK,
    "other_enterprise_same_project": {Act.FILE},
    "other_enterprise": {Act.FILE},
    "owner": SQUAD_WORK | {Act.RESOLVE},
    "squad_member": set(SQUAD_WORK),
    "squad_lead": SQUAD_WORK | {Act.RESOLVE, Act.LEAD, Act.TRANSFER},
    "other_squad_member": set(),
    "other_squad_lead": set(),
    "manager": {
        Act.VIEW,
        Act.DECIDE_EXTENSION,
        Act.URGE,
        Act.LEAD,
        Act.TRANSFER,
        Act.SHOW_CHAT_ID,
        Act.FIGURES,
    },
    "admin": {Act.VIEW, Act.INVITE, Act.RELOAD_ZONE, Act.SHOW_CHAT_ID},
    "submitter_without_enterprise_role": set(),
}


def ticket(owner: int | None = OWNER) -> Ticket:
    return Ticket(
        id=1,
        number="YZ-2611-0001",
        project_id=PROJECT,
        squad_id=SQUAD,
        enterprise_id=SUBMITTER,
        category_code="water",
        description="工地停水",
        state="claimed" if owner else "open",
        owner_id=owner,
        created_at=NOW,
        updated_at=NOW,
    )


def test_the_table_covers_every_act_and_actor() -> None:
    assert set(ALLOWED) == set(ACTORS)
    assert set().union(*ALLOWED.values()) == set(Act)


@pytest.mark.parametrize("who", sorted(ACTORS))
@pytest.mark.parametrize("act", list(Act), ids=str)
def test_may_for_each_act_role_and_relation(who: str, act: Act) -> None:
    assert may(ACTORS[who], act, ticket()) is (act in ALLOWED[who])


@pytest.mark.parametrize("who", sorted(ACTORS))
@pytest.mark.parametrize("act", list(Act), ids=str)
def test_without_a_ticket_only_the_zone_acts_are_possible(who: str, act: Act) -> None:
    expected = act in ALLOWED[who] and act in ZONE_ACTS
    assert may(ACTORS[who], act, None) is expected


# Whether each could do the act to some ticket: what a command checks before the ticket.
AT_ALL: dict[str, set[Act]] = {
    **ALLOWED,
    "other_enterprise_same_project": {Act.FILE, Act.VIEW} | ENTERPRISE_WORK,
    "other_enterprise": {Act.FILE, Act.VIEW} | ENTERPRISE_WORK,
    "owner": SQUAD_WORK | {Act.RESOLVE},
    "squad_member": SQUAD_WORK | {Act.RESOLVE},
    "other_squad_member": SQUAD_WORK | {Act.RESOLVE},
    "squad_lead": SQUAD_WORK | {Act.RESOLVE, Act.LEAD, Act.TRANSFER, Act.FIGURES},
    "other_squad_lead": SQUAD_WORK | {Act.RESOLVE, Act.LEAD, Act.TRANSFER, Act.FIGURES},
    "admin": {Act.VIEW, Act.INVITE, Act.RELOAD_ZONE, Act.SHOW_CHAT_ID},
    "submitter_without_enterprise_role": SQUAD_WORK | {Act.RESOLVE},
}


# Whose figures each may read: the zone (managers), their own squad (its lead), or nobody's.
FIGURES: dict[str, FiguresScope | None] = {
    "nobody": None,
    "no_role": None,
    "submitter": None,
    "other_enterprise_same_project": None,
    "other_enterprise": None,
    "owner": None,
    "squad_member": None,
    "squad_lead": FiguresScope(frozenset({SQUAD})),
    "other_squad_member": None,
    "other_squad_lead": FiguresScope(frozenset({OTHER_SQUAD})),
    "manager": FiguresScope(None),
    "admin": None,
    "submitter_without_enterprise_role": None,
}


@pytest.mark.parametrize("who", sorted(ACTORS))
@pytest.mark.parametrize("act", list(Act), ids=str)
def test_may_at_all_for_each_act_and_role(who: str, act: Act) -> None:
    assert may_at_all(ACTORS[who], act) is (act in AT_ALL[who])
    if may(ACTORS[who], act, ticket()):  # the early check never refuses what may allows
        assert may_at_all(ACTORS[who], act)


def test_only_managers_urge_and_only_the_squads_lead_or_a_manager_leads_or_transfers() -> None:
    open_ticket = ticket(owner=None)
    for act in (Act.LEAD, Act.TRANSFER):
        assert may(ACTORS["squad_lead"], act, open_ticket)
        assert may(ACTORS["manager"], act, open_ticket)
        assert not may(ACTORS["other_squad_lead"], act, open_ticket)
        assert not may(ACTORS["owner"], act, open_ticket)
    assert may(ACTORS["manager"], Act.URGE, open_ticket)
    assert not may(ACTORS["squad_lead"], Act.URGE, open_ticket)


@pytest.mark.parametrize("who", sorted(ACTORS))
def test_figures_scope_for_each_role(who: str) -> None:
    assert figures_scope(ACTORS[who]) == FIGURES[who]


@pytest.mark.parametrize("who", sorted(ACTORS))
def test_figures_of_a_squad_for_each_role(who: str) -> None:
    expected = {"squad_lead", "manager"}
    assert may(ACTORS[who], Act.FIGURES, squad_id=SQUAD) is (who in expected)
    assert may(ACTORS[who], Act.FIGURES) is (who == "manager")


def test_a_lead_who_is_also_a_manager_reads_the_zone() -> None:
    both = person(111, (Role.LEAD, SQUAD, None), (Role.MANAGER, None, None))
    assert figures_scope(both) == FiguresScope(None)
    two = person(112, (Role.LEAD, SQUAD, None), (Role.LEAD, OTHER_SQUAD, None))
    assert figures_scope(two) == FiguresScope(frozenset({SQUAD, OTHER_SQUAD}))
    lead_and_member = person(113, (Role.LEAD, SQUAD, None), (Role.MEMBER, OTHER_SQUAD, None))
    assert figures_scope(lead_and_member) == FiguresScope(frozenset({SQUAD}))


def test_an_unclaimed_ticket_is_resolved_only_by_the_lead() -> None:
    open_ticket = ticket(owner=None)
    assert may(ACTORS["squad_lead"], Act.RESOLVE, open_ticket)
    assert not may(ACTORS["squad_member"], Act.RESOLVE, open_ticket)
    assert not may(ACTORS["owner"], Act.RESOLVE, open_ticket)
    assert may(ACTORS["squad_member"], Act.CLAIM, open_ticket)


def test_someone_in_two_squads_acts_for_both() -> None:
    both = person(110, (Role.MEMBER, OTHER_SQUAD, None), (Role.MEMBER, SQUAD, None))
    assert may(both, Act.CLAIM, ticket())
    elsewhere = ticket()
    elsewhere.squad_id = 3
    assert not may(both, Act.VIEW, elsewhere)


def test_a_member_removed_from_the_squad_loses_access(tmp_path: Path) -> None:
    """Only active memberships count: a member dropped from the zone file keeps nothing."""
    engine = zone_database(tmp_path)
    with Session(engine) as session:
        zhou = session.exec(select(Person).where(Person.key == "zhou.jun")).one()
        zhou.telegram_user_id = 4242
        session.add(zhou)
        session.commit()
        member = actor_for(session, 4242)
        assert member is not None and member.is_squad_member
        pv = next(iter(member.squad_ids))
        t = ticket()
        t.squad_id = pv
        t.owner_id = zhou.id
        assert may(member, Act.RESOLVE, t)
        for row in session.exec(select(Membership).where(Membership.person_id == zhou.id)):
            row.active = False
            session.add(row)
        session.commit()
        gone = actor_for(session, 4242)
        assert gone is not None and not gone.has_role
        assert not any(may(gone, act, t) for act in Act)
    engine.dispose()
