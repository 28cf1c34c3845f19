"""Looking things up: /my lists the user's tickets, /ticket shows one ticket's history. The
reading is models.queries'; here the command is parsed and the answer rendered."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import command_args
from handlers.work import work
from models import queries
from models.outbox import category_param, time_param

HISTORY_TEXT = 300  # characters of what was said, per history line


async def my_tickets(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    actor = w.actor
    if actor is None or not actor.has_role:
        w.say("start.no_role")
        return
    lines = queries.my_tickets(w.session, actor)
    if not lines:
        w.say("my.none")
        return
    w.say("my.header", {"count": len(lines)})
    for line in lines:
        w.say(
            "my.line",
            {
                "number": line.number,
                "category": category_param(line.category_code),
                "state": {"state": line.state},
                "response_due": time_param(line.response_due),
                "due": time_param(line.due),
            },
        )


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
    view = queries.ticket_view(w.session, w.actor, reference)
    if view is None:
        w.say("error.no_such_ticket")
        return
    w.say(
        "ticket.summary",
        {
            "number": view.number,
            "category": category_param(view.category_code),
            "state": {"state": view.state},
            "description": view.description,
            "handling_due": time_param(view.handling_due),
            "plan_target": time_param(view.plan_target),
            "rating": view.rating or "-",
        },
    )
    for line in view.history:
        w.say(
            "ticket.history_line",
            {
                "at": time_param(line.at),
                "who": line.who if line.who is not None else {"key": "history.system"},
                "what": {"key": f"history.{line.action}"},
                "text": line.text[:HISTORY_TEXT],
            },
        )
