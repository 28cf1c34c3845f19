"""Looking things up: /my lists the user's tickets, /ticket shows one ticket and its
history, each long list a page at a time (handlers.pages). The reading is models.queries';
here the command is parsed and the answer rendered."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import command_args
from handlers.pages import history_page, my_page
from handlers.work import work
from models import queries
from models.outbox import category_param, nested, time_param


async def my_tickets(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    if w.actor is None or not w.actor.has_role:
        w.say("start.no_role")
        return
    my_page(w)


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
            "led": nested("card.led_by", {"name": view.led_by}) if view.led_by else "",
        },
    )
    if view.history:
        history_page(w, view)
