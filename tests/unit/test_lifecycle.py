"""The ticket state machine: every allowed transition, the forbidden ones, `move` doing what
the table says and nothing else, and the domain never moving a ticket along an edge the table
does not have."""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlmodel import Session, col, select

from models import closure, filing, handling
from models.desk import Desk, DeskError
from models.lifecycle import (
    ACTIVE_STATES,
    TRANSITIONS,
    Action,
    IllegalMove,
    State,
    allowed,
    move,
    next_state,
)
from models.org import Person
from models.people import Actor, active_memberships
from models.ticket import Ticket, TicketEvent
from models.zone.config import read_zone
from tests.harness import zone_database

R = TypeVar("R")

EXPECTED = {
    ("claim", State.OPEN): State.CLAIMED,
    ("wait", State.CLAIMED): State.WAITING,
    ("resume", State.WAITING): State.CLAIMED,
    ("resolve", State.CLAIMED): State.RESOLVED,
    ("resolve", State.WAITING): State.RESOLVED,
    ("confirm", State.RESOLVED): State.CLOSED,
    ("reject", State.RESOLVED): State.CLAIMED,
    ("auto_close", State.RESOLVED): State.CLOSED,
    ("rework", State.CLOSED): State.CLAIMED,
    ("transfer", State.CLAIMED): State.OPEN,
    ("transfer", State.WAITING): State.OPEN,
}
ACTIONS = sorted({action for action, _ in EXPECTED})


def test_the_table_is_the_one_we_promise() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("action", "state"), sorted(EXPECTED))
def test_every_allowed_transition(action: str, state: State) -> None:
    assert allowed(action, state)
    assert allowed(action, str(state))
    assert next_state(action, state) is EXPECTED[(action, state)]


FORBIDDEN = sorted(
    (action, state)
    for action, state in itertools.product(ACTIONS, list(State))
    if (action, state) not in EXPECTED
)


@pytest.mark.parametrize(("action", "state"), FORBIDDEN)
def test_every_other_action_and_state_is_forbidden(action: str, state: State) -> None:
    assert not allowed(action, state)
    with pytest.raises(IllegalMove) as caught:
        next_state(action, state)
    assert caught.value.action == action and caught.value.state == state
    assert action in str(caught.value) and str(state) in str(caught.value)


@pytest.mark.parametrize(
    ("action", "state"),
    [
        ("claim", State.CLAIMED),  # a second claim
        ("claim", State.CLOSED),
        ("resolve", State.OPEN),  # nobody owns it yet
        ("resolve", State.RESOLVED),
        ("confirm", State.CLAIMED),
        ("auto_close", State.WAITING),
        ("rework", State.RESOLVED),
        ("wait", State.OPEN),
    ],
)
def test_a_sample_of_forbidden_transitions(action: str, state: State) -> None:
    assert not allowed(action, state)
    with pytest.raises(IllegalMove):
        next_state(action, state)


@pytest.mark.parametrize(("action", "state"), [("claim", "lost"), ("fly", "open"), ("", "")])
def test_unknown_actions_and_states_are_refused(action: str, state: str) -> None:
    assert not allowed(action, state)
    with pytest.raises(IllegalMove):
        next_state(action, state)


# --- move: the table decides, whatever the table says --------------------------------------
def ticket_in(state: State) -> Ticket:
    return Ticket(
        number="YZ-2611-0001",
        squad_id=1,
        enterprise_id=1,
        category_code="water",
        description="工地停水",
        state=state,
        created_at=datetime(2026, 11, 23, tzinfo=UTC),
        updated_at=datetime(2026, 11, 23, tzinfo=UTC),
    )


@pytest.mark.parametrize(("action", "state"), list(itertools.product(Action, State)), ids=str)
def test_move_follows_the_table_for_every_action_and_state(action: Action, state: State) -> None:
    """Derived from TRANSITIONS itself: a pair in the table lands where the table says, any
    other pair is refused as an IllegalMove (a refusal the user reads) and changes nothing."""
    ticket = ticket_in(state)
    if (action, state) in TRANSITIONS:
        assert allowed(action, state)
        assert move(ticket, action) is TRANSITIONS[(action, state)]
        assert ticket.state == TRANSITIONS[(action, state)]
        return
    assert not allowed(action, state)
    with pytest.raises(IllegalMove) as caught:
        move(ticket, action)
    assert ticket.state == state
    refusal = caught.value
    assert isinstance(refusal, DeskError) and refusal.key == "error.bad_state"
    assert refusal.params == {"number": ticket.number, "state": {"state": state}}
    assert (refusal.action, refusal.state) == (action, state)
    assert str(refusal) == f"cannot {action} a ticket in state {state}"


def test_every_action_has_a_move_and_every_move_is_an_action() -> None:
    assert {action for action, _ in TRANSITIONS} == set(Action)
    assert all(isinstance(a, Action) and isinstance(s, State) for a, s in TRANSITIONS)


def test_only_move_sets_a_ticket_state() -> None:
    """No module of the domain assigns a ticket's state by hand: lifecycle.move does it."""
    models = Path(__file__).resolve().parent.parent / "models"
    found = []
    for path in sorted(models.glob("*.py")):
        if path.name == "lifecycle.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            stored = (
                isinstance(node, ast.Attribute)
                and node.attr == "state"
                and isinstance(node.ctx, ast.Store)
            )
            set_by_name = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "setattr"
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value == "state"
            )
            if stored or set_by_name:
                found.append(f"{path.name}:{getattr(node, 'lineno', '?')}")
    assert found == []


def test_shape_of_the_machine() -> None:
    assert set(ACTIVE_STATES) == {State.OPEN, State.CLAIMED, State.WAITING}
    # only a poor rating takes a closed ticket back
    assert [a for (a, source) in EXPECTED if source is State.CLOSED] == ["rework"]
    # only a transfer (to a squad the owner is not in) goes back to open; every state is
    # reached, and every state is left
    assert {a for (a, _), target in EXPECTED.items() if target is State.OPEN} == {"transfer"}
    assert set(EXPECTED.values()) == set(State)
    assert {source for _, source in EXPECTED} == set(State)


# --- the domain follows the table ------------------------------------------------------------
NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def actor(session: Session, key: str) -> Actor:
    person = session.exec(select(Person).where(Person.key == key)).one()
    assert person.id is not None
    return Actor(person=person, memberships=active_memberships(session, person.id))


def test_every_change_of_state_the_domain_makes_is_in_the_table(tmp_path: Path) -> None:
    """A ticket taken through claim, wait, resume, resolve, reject, resolve, confirm, a poor
    rating (rework), resolve and auto-close: each history row that changes the state names
    an edge of the table, and nothing else is possible on the way."""
    engine = zone_database(tmp_path)
    now = NOW

    def step(fn: Callable[..., R], *args: object) -> R:
        nonlocal now
        now += timedelta(minutes=5)
        with Session(engine, expire_on_commit=False) as session:
            desk = Desk(session, now, read_zone(session))
            result = fn(desk, session, *args)
            session.commit()
            return result

    def file(desk: Desk, session: Session) -> int:
        ent = actor(session, "qian.hao")
        filing.start_draft(desk, ent)
        filing.choose_category(desk, ent, "water")
        filing.describe(desk, ent, "工地停水")
        filing.choose_urgency(desk, ent, "normal")
        ticket = filing.submit(desk, ent)
        assert ticket.id is not None
        return ticket.id

    ticket_id = step(file)

    def by(key: str, fn: Callable[..., object], *args: object) -> None:
        def run(desk: Desk, session: Session) -> None:
            fn(desk, actor(session, key), session.get(Ticket, ticket_id), *args)

        step(run)

    def refused(key: str, fn: Callable[..., object], *args: object) -> None:
        with pytest.raises(DeskError):
            by(key, fn, *args)

    refused("zhou.jun", handling.resolve, "没人认领就办结")
    refused("zhou.jun", handling.wait_for_enterprise, "请补充")
    refused("qian.hao", closure.confirm, True)
    by("zhou.jun", handling.claim)
    refused("xu.hui", handling.claim)
    by("zhou.jun", handling.wait_for_enterprise, "请补充施工图")
    refused("zhou.jun", handling.wait_for_enterprise, "再补充")
    by("qian.hao", handling.enterprise_message, "施工图已上传")  # resumes
    by("zhou.jun", handling.resolve, "已恢复供水")
    refused("zhou.jun", handling.resolve, "再办结一次")
    by("qian.hao", closure.confirm, False)  # not fixed: reopened
    by("zhou.jun", handling.resolve, "更换了阀门")
    by("qian.hao", closure.confirm, True)
    refused("qian.hao", closure.confirm, True)
    by("qian.hao", closure.rate, 1)  # rework
    by("zhou.jun", handling.resolve, "彻底修好")

    def auto_close(desk: Desk, _session: Session) -> None:
        desk.now = desk.now + desk.zone.auto_close_after + timedelta(minutes=1)
        assert [t.id for t in closure.auto_close_due(desk)] == [ticket_id]

    step(auto_close)

    with Session(engine) as session:
        events = session.exec(
            select(TicketEvent)
            .where(TicketEvent.ticket_id == ticket_id)
            .order_by(col(TicketEvent.id))
        ).all()
    moves = [
        (e.action, e.from_state, e.to_state)
        for e in events
        if e.from_state is not None and e.from_state != e.to_state
    ]
    assert [m[0] for m in moves] == [
        "claimed",
        "asked_enterprise",
        "resumed",
        "resolved",
        "reopened",
        "resolved",
        "confirmed",
        "rework",
        "resolved",
        "auto_closed",
    ]
    edges = {(str(source), str(target)) for (_, source), target in TRANSITIONS.items()}
    for action, source, target in moves:
        assert (source, target) in edges, (action, source, target)
    assert events[-1].to_state == State.CLOSED
    engine.dispose()
