"""Every inline-button press. callback_data is an opaque token; the press is looked up and
re-checked (who presses, which ticket, which state) each time. A forged or stale press is
refused and logged, never trusted."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ContextTypes

from handlers import intake, pages, squad
from handlers.work import Work, work
from models import closure, extensions
from models.desk import DeskError
from models.notify import Press, press_of
from models.ticket import Ticket

log = logging.getLogger(__name__)

# refusals that mean the press was forged, replayed by someone else, or aimed at a ticket the
# presser may not see
SUSPICIOUS = ("error.stale_button", "error.not_allowed", "error.no_such_ticket")


async def pressed(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    query = update.callback_query
    if query is None:
        return
    action = press_of(w.session, query.data) if query.data else None
    if action is None:
        log.warning("refused forged button %r from user %s", query.data, w.user_id)
        w.answer(query.id, "error.stale_button", alert=True)
        return
    if w.actor is None or not w.actor.has_role:
        log.warning("refused button from user %s with no role", w.user_id)
        w.answer(query.id, "start.no_role_short", alert=True)
        return
    if action.person_id is not None and action.person_id != w.actor.id:
        log.warning(
            "refused button %s of person %s pressed by %s",
            action.token,
            action.person_id,
            w.actor.id,
        )
        w.answer(query.id, "error.not_your_button", alert=True)
        return
    ticket = w.session.get(Ticket, action.ticket_id) if action.ticket_id else None
    try:
        reply = dispatch(w, action, ticket)
    except DeskError as refusal:
        # every refusal is written down; the ones no honest client produces as a warning,
        # the rest (a ticket claimed a moment before, say) as information
        suspicious = refusal.key in SUSPICIOUS
        log.log(
            logging.WARNING if suspicious else logging.INFO,
            "refused button %s (%s) for %s: %s",
            action.token,
            action.action,
            w.actor.id,
            refusal.key,
        )
        w.answer(query.id, refusal.key, alert=True, **refusal.params)
        return
    w.answer(query.id, reply[0], **reply[1])


def dispatch(w: Work, action: Press, ticket: Ticket | None) -> tuple[str | None, dict]:  # type: ignore[type-arg]
    arg = action.arg or ""
    if action.action == "category":
        intake.on_category(w, arg)
        return None, {}
    if action.action == "urgency":
        intake.on_urgency(w, arg)
        return None, {}
    if action.action == "submit":
        intake.on_submit(w)
        return "new.submitted_short", {}
    if action.action == "cancel":
        intake.on_cancel(w)
        return None, {}
    assert w.actor is not None
    if action.action == "claim":
        number = squad.on_claim(w, ticket)
        return "claim.done", {"number": number}
    if action.action == "confirm":
        closure.confirm(w.desk, w.actor, ticket, fixed=arg == "yes")
        return ("confirm.thanks" if arg == "yes" else "confirm.reopened"), {}
    if action.action == "rate":
        closure.rate(w.desk, w.actor, ticket, int(arg) if arg.isdigit() else 0)
        return "rate.recorded_short", {}
    if action.action == "extension":
        ext = extensions.decide_extension(w.desk, w.actor, ticket, arg)
        return f"extension.decided.{ext.status}", {}
    if action.action == pages.PAGE:
        pages.on_page(w, action, ticket)
        return None, {}
    raise DeskError("error.stale_button")
