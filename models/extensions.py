"""Extensions (延期): asked for before the deadline with a reason, decided by a manager with a
button; only an approved extension, approved before the deadline, moves it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import select

from models.desk import Desk, DeskError
from models.handling import checked_text, require
from models.lifecycle import ACTIVE_STATES, State
from models.outbox import text_key, time_param
from models.people import Actor, managers
from models.permissions import Act, may
from models.sla.policy import due_after_resume, extended
from models.ticket import Extension, Ticket


def _handling_paused(ticket: Ticket) -> bool:
    return ticket.state == State.WAITING and ticket.handling_remaining_s is not None


def running_deadline(desk: Desk, ticket: Ticket) -> tuple[str, datetime] | None:
    """The deadline an extension would move: the plan target, the plan, or handling. While
    the ticket waits on the enterprise the handling clock stands still, so its deadline is
    what resuming now would give: the time left, counted from now."""
    if ticket.plan_target is not None:
        return "plan_target", ticket.plan_target
    if ticket.plan_required and ticket.plan_due is not None:
        return "plan", ticket.plan_due
    if ticket.handling_due is not None and _handling_paused(ticket):
        left = timedelta(seconds=ticket.handling_remaining_s or 0)
        return "handling", due_after_resume(desk.now, left, desk.calendar(ticket))
    if ticket.handling_due is not None:
        return "handling", ticket.handling_due
    return None


def request_extension(
    desk: Desk, actor: Actor, ticket: Ticket | None, extra: timedelta, reason: str | None
) -> Extension:
    ticket = require(actor, Act.EXTEND, ticket)
    why = checked_text(reason)
    current = running_deadline(desk, ticket)
    if current is None or ticket.state not in ACTIVE_STATES:
        raise DeskError("extension.nothing_to_extend", number=ticket.number)
    deadline, due = current
    if desk.now >= due:
        raise DeskError("extension.too_late", number=ticket.number)
    pending = desk.session.exec(
        select(Extension).where(Extension.ticket_id == ticket.id, Extension.status == "pending")
    ).first()
    if pending is not None:
        raise DeskError("extension.already_pending", number=ticket.number)
    ext = Extension(
        ticket_id=ticket.id or 0,
        deadline=deadline,
        extra_s=int(extra.total_seconds()),
        reason=why,
        requested_by=actor.id,
        requested_at=desk.now,
    )
    desk.session.add(ext)
    desk.session.flush()
    desk.record(
        ticket,
        "extension_requested",
        actor.me,
        detail={"deadline": deadline, "extra_s": ext.extra_s, "reason": why},
    )
    params = {
        "number": ticket.number,
        "name": actor.me.name,
        "reason": why,
        "deadline": text_key(f"deadline.{deadline}"),
        "due": time_param(due),
        "extra": {"duration": ext.extra_s},
        "new_due": time_param(extended(due, extra, desk.calendar(ticket))),
    }
    for manager in managers(desk.session):
        yes = desk.notify.button("extension", ticket, arg=f"{ext.id}:approve")
        no = desk.notify.button("extension", ticket, arg=f"{ext.id}:refuse")
        desk.notify.tell(
            manager,
            "extension.asked",
            params,
            ticket=ticket,
            buttons=[[("button.approve", yes), ("button.refuse", no)]],
        )
    return ext


def decide_extension(desk: Desk, actor: Actor, ticket: Ticket | None, arg: str) -> Extension:
    if not may(actor, Act.DECIDE_EXTENSION) or ticket is None:
        raise DeskError("error.not_allowed")
    ext_id, _, verdict = arg.partition(":")
    ext = desk.session.get(Extension, int(ext_id)) if ext_id.isdigit() else None
    if ext is None or ext.ticket_id != ticket.id or verdict not in ("approve", "refuse"):
        raise DeskError("error.stale_button")
    if ext.status != "pending":
        raise DeskError(
            "extension.already_decided",
            number=ticket.number,
            status=text_key(f"extension.status.{ext.status}"),
        )
    current = running_deadline(desk, ticket)
    if verdict == "approve" and (
        current is None or current[0] != ext.deadline or desk.now >= current[1]
    ):
        verdict = "expired"
    ext.status = {"approve": "approved", "refuse": "refused", "expired": "expired"}[verdict]
    ext.decided_by = actor.id
    ext.decided_at = desk.now
    desk.session.add(ext)
    new_due = None
    if ext.status == "approved" and current is not None:
        new_due = extended(current[1], timedelta(seconds=ext.extra_s), desk.calendar(ticket))
        if ext.deadline == "handling" and _handling_paused(ticket):
            # resuming turns the time left into the deadline, so the extra time goes there
            ticket.handling_remaining_s = (ticket.handling_remaining_s or 0) + ext.extra_s
        setattr(
            ticket,
            {"plan_target": "plan_target", "plan": "plan_due", "handling": "handling_due"}[
                ext.deadline
            ],
            new_due,
        )
    desk.record(
        ticket,
        f"extension_{ext.status}",
        actor.me,
        detail={"deadline": ext.deadline, "new_due": new_due},
    )
    desk.rearm(ticket)
    params = {
        "number": ticket.number,
        "name": actor.me.name,
        "deadline": text_key(f"deadline.{ext.deadline}"),
        "new_due": time_param(new_due),
    }
    desk.notify.tell_squad(ticket, f"extension.{ext.status}", params)
    if ext.status == "approved":
        desk.notify.tell(
            desk.person(ticket.enterprise_id),
            "extension.approved_enterprise",
            params,
            ticket=ticket,
        )
    return ext
