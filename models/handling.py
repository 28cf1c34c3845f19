"""What a squad does with a ticket: claim it, talk with the enterprise, take notes, wait on
documents, record a progress plan, resolve it. Each function is one domain action inside the
caller's transaction: it changes the ticket, writes history, re-arms deadlines and queues
every message it causes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from models.desk import Desk, DeskError
from models.filing import card_params, claimable
from models.lifecycle import ACTIVE_STATES, Action, State, allowed, move
from models.outbox import time_param
from models.people import Actor
from models.permissions import Act, may
from models.promises import due_at_resolution
from models.sla.policy import due_after_resume, plan_deadline, remaining_at_pause
from models.ticket import Attachment, ProgressPlan, Ticket

MAX_TEXT = 3500
MAX_PLAN_AHEAD = timedelta(days=366)  # a plan is for this problem, not the whole project


def require(actor: Actor, act: Act, ticket: Ticket | None) -> Ticket:
    if ticket is None or not may(actor, Act.VIEW, ticket):
        raise DeskError("error.no_such_ticket")
    if not may(actor, act, ticket):
        raise DeskError("error.not_allowed")
    return ticket


INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


def checked_text(text: str | None) -> str:
    """Text that a person can actually read: invisible characters alone count as empty."""
    text = (text or "").strip()
    if not text.translate(INVISIBLE).strip():
        text = ""
    if not text:
        raise DeskError("error.empty_text")
    if len(text) > MAX_TEXT:
        raise DeskError("error.too_long", limit=MAX_TEXT, length=len(text))
    return text


def _first_response(desk: Desk, ticket: Ticket) -> None:
    if ticket.first_response_at is None:
        ticket.first_response_at = desk.now


def claim(desk: Desk, actor: Actor, ticket: Ticket | None) -> Ticket:
    ticket = require(actor, Act.CLAIM, ticket)
    if not allowed(Action.CLAIM, ticket.state) or ticket.owner_id is not None:
        owner = desk.person(ticket.owner_id)
        raise DeskError("claim.taken", number=ticket.number, owner=owner.name if owner else "-")
    if not desk.move(ticket, Action.CLAIM):
        owner = desk.person(ticket.owner_id)
        raise DeskError("claim.taken", number=ticket.number, owner=owner.name if owner else "-")
    ticket.owner_id = actor.id
    _first_response(desk, ticket)
    desk.record(ticket, "claimed", actor.me, from_state=State.OPEN)
    desk.rearm(ticket)
    enterprise = desk.person(ticket.enterprise_id)
    desk.notify.tell(
        enterprise,
        "ticket.claimed",
        {
            "number": ticket.number,
            "owner": actor.me.name,
            "phone": actor.me.phone or "-",
            "handling_due": time_param(ticket.handling_due),
        },
        ticket=ticket,
    )
    refresh_cards(desk, ticket)
    return ticket


def refresh_cards(desk: Desk, ticket: Ticket) -> None:
    """Every copy of the card shows the ticket as it is now: its owner, its leader, and a
    Claim button only while nobody owns it (the copy's own button, still valid)."""
    params = card_params(desk, ticket)
    for card in desk.notify.card_rows(ticket):
        if card.chat_id is None:
            continue
        desk.notify.tell_chat(
            card.chat_id,
            "ticket.card",
            params,
            ticket=ticket,
            buttons=json.loads(card.buttons) if claimable(ticket) and card.buttons else None,
            link_role=None,
            edit_of=card.id,
            locale=card.locale,  # the card is edited in the language its reader was sent it in
        )


def reply(
    desk: Desk,
    actor: Actor,
    ticket: Ticket | None,
    text: str | None,
    *,
    photo: Attachment | None = None,
) -> Ticket:
    """A squad member's words (or photo) for the enterprise; the first one is a response. The
    photo is kept with the ticket, as the enterprise's files are (`keep_attachment`)."""
    ticket = require(actor, Act.REPLY, ticket)
    if ticket.state == State.CLOSED:
        raise DeskError("error.ticket_closed", number=ticket.number)
    body = (text or "").strip() if photo is not None else checked_text(text)
    if photo is not None:
        keep_attachment(desk, actor, ticket, photo)
    _first_response(desk, ticket)
    desk.record(ticket, "replied", actor.me, detail={"text": body, "photo": photo is not None})
    desk.rearm(ticket)
    enterprise = desk.person(ticket.enterprise_id)
    params = {"number": ticket.number, "name": actor.me.name, "text": body}
    if photo is not None:
        desk.notify.tell(
            enterprise,
            "thread.photo_from_squad",
            params,
            ticket=ticket,
            kind="photo",
            file_id=photo.file_id,
        )
    else:
        desk.notify.tell(enterprise, "thread.from_squad", params, ticket=ticket)
    return ticket


def keep_attachment(desk: Desk, actor: Actor, ticket: Ticket, attachment: Attachment) -> None:
    """A file or place sent in a ticket's thread becomes part of the ticket's record (and is
    archived from there)."""
    attachment.ticket_id = ticket.id
    attachment.added_by = actor.id
    attachment.added_at = desk.now
    desk.session.add(attachment)


def enterprise_message(
    desk: Desk,
    actor: Actor,
    ticket: Ticket | None,
    text: str | None,
    *,
    attachment: Attachment | None = None,
) -> Ticket:
    """The enterprise's answer reaches the squad; if the squad was waiting on it, the
    handling clock runs again."""
    ticket = require(actor, Act.MESSAGE_SQUAD, ticket)
    if ticket.state == State.CLOSED:
        raise DeskError("error.ticket_closed", number=ticket.number)
    body = (text or "").strip() if attachment else checked_text(text)
    if attachment is not None:
        keep_attachment(desk, actor, ticket, attachment)
    desk.record(
        ticket,
        "enterprise_said",
        actor.me,
        detail={"text": body, "attachment": attachment.kind if attachment else None},
    )
    if ticket.state == State.WAITING:
        resume(desk, ticket, actor)
    params = {"number": ticket.number, "name": actor.me.name, "text": body}
    if attachment is not None and attachment.kind in ("photo", "document"):
        desk.notify.tell_squad(
            ticket,
            "thread.file_from_enterprise",
            params,
            kind=attachment.kind,
            file_id=attachment.file_id,
        )
    else:
        desk.notify.tell_squad(ticket, "thread.from_enterprise", params)
    desk.session.add(ticket)
    return ticket


def note(desk: Desk, actor: Actor, ticket: Ticket | None, text: str | None) -> Ticket:
    """Internal: kept in history and shown to the squad, never to the enterprise."""
    ticket = require(actor, Act.NOTE, ticket)
    body = checked_text(text)
    desk.record(ticket, "noted", actor.me, detail={"text": body})
    desk.notify.tell_squad(
        ticket,
        "thread.note",
        {"number": ticket.number, "name": actor.me.name, "text": body},
        exclude=actor.me,
    )
    return ticket


def wait_for_enterprise(
    desk: Desk, actor: Actor, ticket: Ticket | None, text: str | None
) -> Ticket:
    """Asking the enterprise for documents pauses the handling clock."""
    ticket = require(actor, Act.WAIT, ticket)
    body = checked_text(text)
    before = ticket.state
    move(ticket, Action.WAIT)
    if ticket.handling_due is not None:
        left = remaining_at_pause(desk.now, ticket.handling_due, desk.calendar(ticket))
        ticket.handling_remaining_s = int(left.total_seconds())
    ticket.paused_at = desk.now
    _first_response(desk, ticket)
    desk.record(ticket, "asked_enterprise", actor.me, from_state=before, detail={"text": body})
    desk.rearm(ticket)
    desk.notify.tell(
        desk.person(ticket.enterprise_id),
        "thread.asked",
        {"number": ticket.number, "name": actor.me.name, "text": body},
        ticket=ticket,
    )
    return ticket


def resume(desk: Desk, ticket: Ticket, actor: Actor) -> None:
    before = ticket.state
    move(ticket, Action.RESUME)
    restart_handling_clock(desk, ticket)
    desk.record(
        ticket,
        "resumed",
        actor.me,
        from_state=before,
        detail={"handling_due": ticket.handling_due},
    )
    desk.rearm(ticket)


def restart_handling_clock(desk: Desk, ticket: Ticket) -> None:
    """A ticket that stops waiting on the enterprise gets the handling time it had left."""
    # a plan asked for or recorded while waiting replaced the handling clock: keep it gone
    if ticket.handling_due is not None:
        remaining = timedelta(seconds=ticket.handling_remaining_s or 0)
        ticket.handling_due = due_after_resume(desk.now, remaining, desk.calendar(ticket))
        ticket.handling_started = desk.now
    ticket.paused_at = None
    ticket.handling_remaining_s = None


def needs_plan(desk: Desk, actor: Actor, ticket: Ticket | None) -> Ticket:
    """Complex cases get a progress plan, due within a day of filing (the published promise)."""
    ticket = require(actor, Act.NEEDS_PLAN, ticket)
    if ticket.state not in ACTIVE_STATES:
        raise DeskError("error.bad_state", number=ticket.number, state={"state": ticket.state})
    if ticket.plan_required:
        return ticket
    if ticket.handling_due is not None and desk.now >= ticket.handling_due:
        raise DeskError("plan.too_late", number=ticket.number)
    targets = desk.targets(ticket)
    ticket.plan_required = True
    ticket.plan_due = plan_deadline(ticket.created_at, targets, desk.calendar(ticket))
    ticket.handling_due = None
    desk.record(ticket, "plan_required", actor.me, detail={"plan_due": ticket.plan_due})
    desk.rearm(ticket)
    desk.notify.tell(
        desk.person(ticket.enterprise_id),
        "plan.required",
        {"number": ticket.number, "plan_due": time_param(ticket.plan_due)},
        ticket=ticket,
    )
    return ticket


def record_plan(
    desk: Desk, actor: Actor, ticket: Ticket | None, steps: str | None, target: datetime
) -> ProgressPlan:
    ticket = require(actor, Act.PLAN, ticket)
    body = checked_text(steps)
    if ticket.state not in ACTIVE_STATES:
        raise DeskError("error.bad_state", number=ticket.number, state={"state": ticket.state})
    if target <= desk.now:
        raise DeskError("plan.target_past")
    if target > desk.now + MAX_PLAN_AHEAD:
        raise DeskError("plan.target_too_far", days=MAX_PLAN_AHEAD.days)
    plan = ProgressPlan(
        ticket_id=ticket.id or 0,
        steps=body,
        target=target,
        recorded_by=actor.id,
        recorded_at=desk.now,
    )
    desk.session.add(plan)
    _first_response(desk, ticket)
    if ticket.plan_agreed_at is None:  # the promise is judged by the first plan agreed
        ticket.plan_agreed_at = desk.now
        ticket.plan_agreed_due = (
            ticket.plan_due
            if ticket.plan_required and ticket.plan_due is not None
            else plan_deadline(ticket.created_at, desk.targets(ticket), desk.calendar(ticket))
        )
    if not ticket.plan_required:
        ticket.plan_required = True
        ticket.handling_due = None
    ticket.plan_due = desk.now
    ticket.plan_target = target
    desk.record(ticket, "plan_recorded", actor.me, detail={"steps": body, "target": target})
    desk.rearm(ticket)
    params = {
        "number": ticket.number,
        "name": actor.me.name,
        "steps": body,
        "target": time_param(target),
    }
    desk.notify.tell(desk.person(ticket.enterprise_id), "plan.recorded", params, ticket=ticket)
    desk.notify.tell_squad(ticket, "plan.recorded", params, exclude=actor.me)
    return plan


def resolve(desk: Desk, actor: Actor, ticket: Ticket | None, summary: str | None) -> Ticket:
    ticket = require(actor, Act.RESOLVE, ticket)
    body = checked_text(summary)
    before = ticket.state
    due = due_at_resolution(ticket, desk.now, desk.calendar(ticket))
    move(ticket, Action.RESOLVE)
    ticket.resolved_at = desk.now
    ticket.resolve_due = due
    ticket.paused_at = None
    desk.record(ticket, "resolved", actor.me, from_state=before, detail={"summary": body})
    desk.rearm(ticket)
    enterprise = desk.person(ticket.enterprise_id)
    yes = desk.notify.button("confirm", ticket, arg="yes")
    no = desk.notify.button("confirm", ticket, arg="no")
    desk.notify.tell(
        enterprise,
        "resolve.ask_confirm",
        {
            "number": ticket.number,
            "name": actor.me.name,
            "summary": body,
            "auto_close": {"duration": int(desk.zone.auto_close_after.total_seconds())},
        },
        ticket=ticket,
        buttons=[[("button.fixed", yes), ("button.not_fixed", no)]],
    )
    return ticket
