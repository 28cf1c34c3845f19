"""Looking things up: /my lists the user's tickets, /ticket shows one ticket's history."""

from __future__ import annotations

import json

from sqlmodel import col, select
from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import command_args
from handlers.work import work
from models.desk import ticket_by_reference
from models.lifecycle import ACTIVE_STATES, State
from models.outbox import category_param, time_param
from models.permissions import Act, may
from models.ticket import Ticket, TicketEvent

MY_LIMIT = 20
HISTORY_LIMIT = 30


async def my_tickets(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    actor = w.actor
    if actor is None or not actor.has_role:
        w.say("start.no_role")
        return
    query = select(Ticket)
    if actor.is_squad_member:
        query = query.where(
            col(Ticket.squad_id).in_(actor.squad_ids),
            col(Ticket.state).in_([*ACTIVE_STATES, State.RESOLVED]),
        )
    elif actor.is_enterprise:
        query = query.where(Ticket.enterprise_id == actor.id)
    elif actor.is_manager:
        query = query.where(col(Ticket.state).in_(ACTIVE_STATES))
    tickets = w.session.exec(query.order_by(col(Ticket.id).desc()).limit(MY_LIMIT)).all()
    if not tickets:
        w.say("my.none")
        return
    lines = []
    for ticket in tickets:
        due = ticket.plan_target or ticket.plan_due or ticket.handling_due
        lines.append(
            {
                "number": ticket.number,
                "category": category_param(ticket.category_code),
                "state": {"state": ticket.state},
                "response_due": time_param(
                    ticket.response_due if not ticket.first_response_at else None
                ),
                # while waiting on the enterprise the handling clock stands still: no due time
                "due": time_param(due if ticket.state in (State.OPEN, State.CLAIMED) else None),
            }
        )
    w.say("my.header", {"count": len(tickets)})
    for line in lines:
        w.say("my.line", line)


async def show_ticket(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    message = update.effective_message
    if w.actor is None or not w.actor.has_role:
        w.say("start.no_role")
        return
    reference = command_args(message)[0] if message else ""
    if not reference:
        w.say("usage.ticket")
        return
    ticket = ticket_by_reference(w.session, reference)
    if ticket is None or not may(w.actor, Act.VIEW, ticket):
        w.say("error.no_such_ticket")
        return
    w.say(
        "ticket.summary",
        {
            "number": ticket.number,
            "category": category_param(ticket.category_code),
            "state": {"state": ticket.state},
            "description": ticket.description,
            "handling_due": time_param(ticket.handling_due),
            "plan_target": time_param(ticket.plan_target),
            "rating": ticket.rating or "-",
        },
    )
    events = w.session.exec(
        select(TicketEvent)
        .where(TicketEvent.ticket_id == ticket.id)
        .order_by(col(TicketEvent.id))
        .limit(HISTORY_LIMIT)
    ).all()
    internal = w.actor.is_squad_member or w.actor.is_manager
    for event in events:
        if event.action == "noted" and not internal:
            continue
        actor = w.desk.person(event.actor_id)
        detail = json.loads(event.detail) if event.detail else {}
        text = detail.get("text") or detail.get("summary") or detail.get("steps") or ""
        w.say(
            "ticket.history_line",
            {
                "at": time_param(event.at),
                "who": actor.name if actor else {"key": "history.system"},
                "what": {"key": f"history.{event.action}"},
                "text": (text[:300] if text else ""),
            },
        )
