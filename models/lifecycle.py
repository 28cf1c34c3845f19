"""The ticket state machine: the one table that says what a state may become, and `move`,
the one way a ticket's state changes."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from models.errors import DeskError

if TYPE_CHECKING:
    from models.ticket import Ticket


class State(StrEnum):
    OPEN = "open"  # filed, nobody owns it yet
    CLAIMED = "claimed"  # a squad member owns and handles it
    WAITING = "waiting"  # waiting on the enterprise; the handling clock is paused
    RESOLVED = "resolved"  # the owner says it is fixed; the enterprise has to confirm
    CLOSED = "closed"


class Action(StrEnum):
    CLAIM = "claim"  # a squad member takes an open ticket
    WAIT = "wait"  # the squad asks the enterprise for something
    RESUME = "resume"  # the enterprise answered
    RESOLVE = "resolve"  # the squad says it is fixed
    CONFIRM = "confirm"  # the enterprise agrees
    REJECT = "reject"  # the enterprise says it is not fixed
    AUTO_CLOSE = "auto_close"  # nobody confirmed within the grace period
    REWORK = "rework"  # a poor rating sends it back (重办)
    TRANSFER = "transfer"  # moved to another squad its owner is not in: unclaimed again (转办)


ACTIVE_STATES = (State.OPEN, State.CLAIMED, State.WAITING)

TRANSITIONS: dict[tuple[Action, State], State] = {
    (Action.CLAIM, State.OPEN): State.CLAIMED,
    (Action.WAIT, State.CLAIMED): State.WAITING,
    (Action.RESUME, State.WAITING): State.CLAIMED,
    (Action.RESOLVE, State.CLAIMED): State.RESOLVED,
    (Action.RESOLVE, State.WAITING): State.RESOLVED,
    (Action.CONFIRM, State.RESOLVED): State.CLOSED,
    (Action.REJECT, State.RESOLVED): State.CLAIMED,
    (Action.AUTO_CLOSE, State.RESOLVED): State.CLOSED,
    (Action.REWORK, State.CLOSED): State.CLAIMED,
    (Action.TRANSFER, State.CLAIMED): State.OPEN,
    (Action.TRANSFER, State.WAITING): State.OPEN,
}


class IllegalMove(DeskError):
    """A move the table does not have. A refusal like any other (`error.bad_state`), so a
    handler that catches DeskError tells the user that the ticket's state forbids it."""

    def __init__(self, action: str, state: str, number: str | None = None) -> None:
        super().__init__("error.bad_state", number=number or "-", state={"state": state})
        self.action = action
        self.state = state

    def __str__(self) -> str:
        return f"cannot {self.action} a ticket in state {self.state}"


def next_state(action: str, state: str) -> State:
    """Where this action takes a ticket in this state, by the table; IllegalMove if nowhere
    (an unknown action or state included)."""
    try:
        return TRANSITIONS[(Action(action), State(state))]
    except (KeyError, ValueError):
        raise IllegalMove(action, state) from None


def allowed(action: str, state: str) -> bool:
    try:
        return (Action(action), State(state)) in TRANSITIONS
    except ValueError:
        return False


def move(ticket: Ticket, action: Action) -> State:
    """The one way a ticket's state changes: the table is looked up for the ticket's state
    and this action, and the ticket takes the state it names. An illegal move raises
    IllegalMove (naming the ticket) and leaves the ticket as it was. Returns the new state."""
    if not allowed(action, ticket.state):
        raise IllegalMove(action, ticket.state, ticket.number)
    target = next_state(action, ticket.state)
    ticket.state = target
    return target
