"""The ticket state machine: the one table that says what a state may become."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    OPEN = "open"  # filed, nobody owns it yet
    CLAIMED = "claimed"  # a squad member owns and handles it
    WAITING = "waiting"  # waiting on the enterprise; the handling clock is paused
    RESOLVED = "resolved"  # the owner says it is fixed; the enterprise has to confirm
    CLOSED = "closed"


ACTIVE_STATES = (State.OPEN, State.CLAIMED, State.WAITING)

TRANSITIONS: dict[tuple[str, State], State] = {
    ("claim", State.OPEN): State.CLAIMED,
    ("wait", State.CLAIMED): State.WAITING,
    ("resume", State.WAITING): State.CLAIMED,
    ("resolve", State.CLAIMED): State.RESOLVED,
    ("resolve", State.WAITING): State.RESOLVED,
    ("confirm", State.RESOLVED): State.CLOSED,
    ("reject", State.RESOLVED): State.CLAIMED,
    ("auto_close", State.RESOLVED): State.CLOSED,
    ("rework", State.CLOSED): State.CLAIMED,
}


class TransitionError(Exception):
    def __init__(self, action: str, state: str) -> None:
        super().__init__(f"cannot {action} a ticket in state {state}")
        self.action = action
        self.state = state


def next_state(action: str, state: str) -> State:
    try:
        return TRANSITIONS[(action, State(state))]
    except (KeyError, ValueError):
        raise TransitionError(action, state) from None


def allowed(action: str, state: str) -> bool:
    try:
        return (action, State(state)) in TRANSITIONS
    except ValueError:
        return False
