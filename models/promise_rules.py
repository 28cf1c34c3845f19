"""The three promises as rules over a ticket row's own columns (README, "On time"): what is
done, and the deadline in force, which already carries what the squad may count on (time
spent waiting on the enterprise, approved extensions, an agreed plan's target).

    reply     first_response_at   response_due
    handling  resolved_at         the handling deadline in force, or the plan's target
                                  when a plan replaced it (`resolve_due` once resolved)
    plan      plan_agreed_at      the plan deadline in force (`plan_agreed_due` once agreed)

A promise is kept when the thing promised happened no later than the deadline in force at
that moment; a deadline that passed with the thing still undone is missed; a deadline still
running, or a promise that does not apply, counts neither way. So each promise splits in
two facts of the row alone, which the database keeps as columns of the ticket
(models/ticket.py), worked out afresh whenever the row changes, whoever changes it:

    <promise>_kept         once done: 1 kept, 0 missed (NULL: no deadline applied)
    <promise>_pending_due  while not done: the deadline in force (NULL: none, or done)

and the verdict at a moment is the first, or "missed" once the second has passed
(models/promises.py). These rules are written over bare column names, for the columns'
definitions; they import nothing of the ticket table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, column, null
from sqlalchemy.sql.elements import ColumnElement

from models.lifecycle import State

KEPT = 1
MISSED = 0

PROMISES = ("reply", "handling", "plan")

Branch = tuple[ColumnElement[bool], Any]  # (when this holds, this is the deadline in force)


@dataclass(frozen=True)
class Promise:
    """What is done, and the deadline in force: the first branch whose condition holds,
    or `otherwise` (None: no deadline)."""

    name: str
    done: Any
    branches: tuple[Branch, ...]
    otherwise: Any

    def _cases(self) -> list[tuple[Any, Any]]:
        return [*self.branches, (None, self.otherwise)]

    def kept(self) -> ColumnElement[int]:
        """Once done: 1 if done by the deadline in force, 0 if after it, NULL if there was
        none; NULL while not done."""

        def judged(due: Any) -> Any:
            if due is None:
                return null()
            return case((self.done <= due, KEPT), (due.is_not(None), MISSED), else_=null())

        whens = [(self.done.is_(None), null())]
        whens += [(when, judged(due)) for when, due in self.branches]
        return case(*whens, else_=judged(self.otherwise))

    def pending_due(self) -> ColumnElement[Any]:
        """While not done: the deadline in force (NULL when none applies); NULL once done."""

        def due(value: Any) -> Any:
            return null() if value is None else value

        whens = [(self.done.is_not(None), null())]
        whens += [(when, due(value)) for when, value in self.branches]
        return case(*whens, else_=due(self.otherwise))


def promises() -> list[Promise]:
    c = column
    reply = Promise("reply", c("first_response_at"), (), c("response_due"))
    handling = Promise(
        "handling",
        c("resolved_at"),
        (
            (c("resolved_at").is_not(None), c("resolve_due")),
            (c("plan_target").is_not(None), c("plan_target")),
            # a plan is being agreed: its target will be the deadline; the plan's clock runs
            (c("plan_required").is_(True), None),
            # waiting on the enterprise with time left: the clock stands still
            ((c("state") == State.WAITING.value) & (c("handling_remaining_s") > 0), None),
        ),
        c("handling_due"),
    )
    plan = Promise(
        "plan",
        c("plan_agreed_at"),
        (
            (c("plan_agreed_at").is_not(None), c("plan_agreed_due")),
            (c("plan_required").is_(True), c("plan_due")),
        ),
        None,
    )
    return [reply, handling, plan]


__all__ = ["KEPT", "MISSED", "PROMISES", "Promise", "promises"]
