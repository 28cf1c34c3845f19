"""Closing the loop: the enterprise confirms the fix (or says it is not fixed), rates it, and
a poor rating sends the ticket back for rework (重办). Silent enterprises are closed after a
configured time."""

from __future__ import annotations

from sqlmodel import col, select

from models.desk import Desk, DeskError
from models.handling import require
from models.lifecycle import Action, State, allowed
from models.outbox import time_param
from models.people import Actor
from models.permissions import Act
from models.sla.policy import initial_deadlines
from models.ticket import Ticket

REWORK_AT_OR_BELOW = 2


def confirm(desk: Desk, actor: Actor, ticket: Ticket | None, fixed: bool) -> Ticket:
    ticket = require(actor, Act.CONFIRM, ticket)
    if not allowed(Action.CONFIRM if fixed else Action.REJECT, ticket.state):
        raise DeskError("error.stale_button")
    if fixed:
        if not desk.move(ticket, Action.CONFIRM):
            raise DeskError("error.stale_button")
        ticket.closed_at = desk.now
        desk.record(ticket, "confirmed", actor.me, from_state=State.RESOLVED)
        desk.rearm(ticket)
        rows = [[(f"=★{n}", desk.notify.button("rate", ticket, arg=str(n))) for n in range(1, 6)]]
        desk.notify.tell(
            actor.me, "rate.ask", {"number": ticket.number}, ticket=ticket, buttons=rows
        )
        return ticket
    reopen(desk, actor, ticket, Action.REJECT)
    return ticket


def rate(desk: Desk, actor: Actor, ticket: Ticket | None, stars: int) -> Ticket:
    ticket = require(actor, Act.RATE, ticket)
    if ticket.state != State.CLOSED or ticket.rating is not None or not 1 <= stars <= 5:
        raise DeskError("error.stale_button")
    ticket.rating = stars
    desk.record(ticket, "rated", actor.me, detail={"rating": stars})
    if stars <= REWORK_AT_OR_BELOW:
        reopen(desk, actor, ticket, Action.REWORK)
        desk.notify.tell(
            actor.me, "rate.rework", {"number": ticket.number, "rating": stars}, ticket=ticket
        )
    else:
        desk.notify.tell(
            actor.me, "rate.thanks", {"number": ticket.number, "rating": stars}, ticket=ticket
        )
        desk.notify.tell_squad(ticket, "rate.to_squad", {"number": ticket.number, "rating": stars})
    desk.session.add(ticket)
    return ticket


# how a ticket goes back to its owner -> its name in history and in the squad's messages
REOPENINGS = {Action.REJECT: "reopened", Action.REWORK: "rework"}


def reopen(desk: Desk, actor: Actor, ticket: Ticket, how: Action) -> None:
    """Back to the owner with fresh handling time, in a new alert cycle."""
    action = REOPENINGS[how]
    before = ticket.state
    if not desk.move(ticket, how):
        raise DeskError("error.stale_button")
    targets = desk.targets(ticket)
    due = initial_deadlines(desk.now, targets, desk.calendar(ticket))
    ticket.cycle += 1
    ticket.handling_due = due.handling_due
    ticket.handling_started = desk.now
    ticket.resolved_at = None
    ticket.resolve_due = None
    ticket.closed_at = None
    ticket.rating = None if action == "reopened" else ticket.rating
    ticket.plan_required = False
    ticket.plan_due = None
    ticket.plan_target = None
    ticket.plan_agreed_at = None
    ticket.plan_agreed_due = None
    desk.record(
        ticket,
        action,
        actor.me,
        from_state=before,
        detail={"handling_due": ticket.handling_due},
    )
    desk.rearm(ticket)
    params = {
        "number": ticket.number,
        "name": actor.me.name,
        "handling_due": time_param(ticket.handling_due),
    }
    desk.notify.tell_squad(ticket, f"ticket.{action}", params)
    if action == "reopened":
        desk.notify.tell(actor.me, "ticket.reopened_ack", params, ticket=ticket)


def auto_close_due(desk: Desk) -> list[Ticket]:
    """Resolutions nobody confirmed within the zone's grace period close themselves."""
    cutoff = desk.now - desk.zone.auto_close_after
    stale = desk.session.exec(
        select(Ticket).where(Ticket.state == State.RESOLVED, col(Ticket.resolved_at) <= cutoff)
    ).all()
    return [ticket for ticket in stale if close_unconfirmed(desk, ticket)]


def close_unconfirmed(desk: Desk, ticket: Ticket) -> bool:
    """False when someone else moved the ticket first (confirmed, rejected, closed it)."""
    if not allowed(Action.AUTO_CLOSE, ticket.state) or not desk.move(ticket, Action.AUTO_CLOSE):
        return False
    ticket.closed_at = desk.now
    desk.record(ticket, "auto_closed", None, from_state=State.RESOLVED)
    desk.notify.tell(
        desk.person(ticket.enterprise_id),
        "ticket.auto_closed",
        {"number": ticket.number},
        ticket=ticket,
    )
    return True
