"""Leadership's commands: /urge NUMBER TEXT (a manager's supervision notice, 督办),
/lead NUMBER (a lead or manager takes the ticket on personally, 领办) and
/transfer NUMBER SQUAD REASON (a misrouted ticket moves to another squad, 转办). Whether the
asker's role could ever do this is checked first, so a member is told who may rather than
that the ticket cannot be found; the ticket itself is checked by the domain."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import command_args
from handlers.work import Work, work
from models import interventions
from models.desk import DeskError, ticket_by_reference
from models.outbox import inline
from models.permissions import Act, may_at_all


def _allowed(w: Work, act: Act, refusal: str) -> bool:
    if w.actor is None or not w.actor.has_role:
        w.say("start.no_role")
        return False
    if not may_at_all(w.actor, act):
        w.say(refusal)
        return False
    return True


async def urge_command(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    message = update.effective_message
    if message is None or not _allowed(w, Act.URGE, "error.managers_only"):
        return
    reference, text = command_args(message)
    if not reference or not text.strip():
        w.say("usage.urge")
        return
    assert w.actor is not None
    ticket = ticket_by_reference(w.session, reference)
    try:
        told = interventions.urge(w.desk, w.actor, ticket, text)
    except DeskError as refusal:
        w.refuse(refusal)
        return
    assert ticket is not None
    w.say("urge.ack", {"number": ticket.number, "who": inline(told) if told else "-"})


async def lead_command(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    message = update.effective_message
    if message is None or not _allowed(w, Act.LEAD, "error.leads_only"):
        return
    reference, _ = command_args(message)
    if not reference:
        w.say("usage.lead")
        return
    assert w.actor is not None
    try:
        ticket = interventions.take_on(w.desk, w.actor, ticket_by_reference(w.session, reference))
    except DeskError as refusal:
        w.refuse(refusal)
        return
    w.say("lead.ack", {"number": ticket.number})


async def transfer_command(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    message = update.effective_message
    if message is None or not _allowed(w, Act.TRANSFER, "error.leads_only"):
        return
    reference, rest = command_args(message)
    squad_code, _, reason = rest.strip().partition(" ")
    if not reference or not squad_code or not reason.strip():
        w.say("usage.transfer")
        return
    assert w.actor is not None
    ticket = ticket_by_reference(w.session, reference)
    try:
        squad = interventions.transfer(w.desk, w.actor, ticket, squad_code, reason)
    except DeskError as refusal:
        w.refuse(refusal)
        return
    assert ticket is not None
    w.say("transfer.ack", {"number": ticket.number, "to": squad.name})
