"""The squad's conversation: claiming, replying to the enterprise (a Telegram reply to the
ticket card, or /reply), internal notes, asking for documents, progress plans, extensions and
resolution. Commands name tickets by number: /reply YZ-2611-0042 text."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime, time, timedelta
from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

from handlers.attachments import attachment_of
from handlers.common import command_args
from handlers.work import Work, work
from models import extensions, handling
from models.desk import Desk, DeskError, ticket_by_reference, ticket_for_message
from models.people import Actor
from models.permissions import Act, may
from models.sla.durations import parse_duration
from models.ticket import Ticket


def _squad_only(w: Work) -> bool:
    if w.actor is None or not w.actor.has_role:
        w.say("start.no_role")
        return False
    if not w.actor.is_squad_member:
        w.say("error.not_squad")
        return False
    return True


Action = Callable[[Work, Ticket | None, str], None]
Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


def _run(usage: str, needs_text: bool = True) -> Callable[[Action], Handler]:
    """Wraps a '/cmd NUMBER text' command: role check, parsing, refusals rendered."""

    def wrap(action: Action) -> Handler:
        async def handler(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
            w = work()
            message = update.effective_message
            if message is None or not _squad_only(w):
                return
            reference, rest = command_args(message)
            if not reference or (needs_text and not rest.strip()):
                w.say(usage)
                return
            ticket = ticket_by_reference(w.session, reference)
            try:
                action(w, ticket, rest)
            except DeskError as refusal:
                w.refuse(refusal)

        return handler

    return wrap


def _acknowledged(act: Callable[[Desk, Actor, Ticket | None, str], Ticket], ack: str) -> Action:
    """A command that does one domain action and confirms it with the ticket's number."""

    def action(w: Work, ticket: Ticket | None, text: str) -> None:
        assert w.actor is not None
        done = act(w.desk, w.actor, ticket, text)
        w.say(ack, {"number": done.number})

    return action


reply_command = _run("usage.reply")(_acknowledged(handling.reply, "thread.sent_to_enterprise"))
note_command = _run("usage.note")(_acknowledged(handling.note, "thread.note_saved"))
wait_command = _run("usage.wait")(_acknowledged(handling.wait_for_enterprise, "thread.asked_ack"))
resolve_command = _run("usage.resolve")(_acknowledged(handling.resolve, "resolve.ack"))


@_run("usage.needplan", needs_text=False)
def needplan_command(w: Work, ticket: Ticket | None, _text: str) -> None:
    assert w.actor is not None
    t = handling.needs_plan(w.desk, w.actor, ticket)
    w.say(
        "plan.required_ack",
        {"number": t.number, "plan_due": {"time": (t.plan_due or w.desk.now).isoformat()}},
    )


def parse_target(text: str, w: Work) -> tuple[datetime, str]:
    """'2026-11-25 notes', '2026-11-25 14:00 notes' or '3d notes' -> (target, notes)."""
    first, _, rest = text.strip().partition(" ")
    tz = w.zone.tz
    try:
        return w.desk.now + parse_duration(first), rest
    except ValueError:
        pass
    except OverflowError:  # beyond the calendar
        raise DeskError("plan.target_too_far", days=handling.MAX_PLAN_AHEAD.days) from None
    try:
        day = datetime.strptime(first, "%Y-%m-%d").date()
    except ValueError:
        raise DeskError("usage.plan") from None
    at = time(18, 0)
    maybe_time, _, after = rest.partition(" ")
    try:
        at = datetime.strptime(maybe_time, "%H:%M").time()
        rest = after
    except ValueError:
        pass
    return datetime.combine(day, at, tzinfo=tz), rest


@_run("usage.plan")
def plan_command(w: Work, ticket: Ticket | None, text: str) -> None:
    assert w.actor is not None
    target, steps = parse_target(text, w)
    plan = handling.record_plan(w.desk, w.actor, ticket, steps, target)
    w.say("plan.recorded_ack", {"target": {"time": plan.target.isoformat()}})


@_run("usage.extend")
def extend_command(w: Work, ticket: Ticket | None, text: str) -> None:
    assert w.actor is not None
    amount, _, reason = text.strip().partition(" ")
    try:
        extra = parse_duration(amount)
    except ValueError:
        raise DeskError("usage.extend") from None
    if extra > timedelta(days=30):
        raise DeskError("usage.extend")
    extensions.request_extension(w.desk, w.actor, ticket, extra, reason)
    w.say("extension.requested_ack")


def on_claim(w: Work, ticket: Ticket | None) -> str:
    assert w.actor is not None
    t = handling.claim(w.desk, w.actor, ticket)
    return t.number


def member_reply(w: Work, update: Update) -> bool:
    """A member's Telegram reply to a ticket message (card or thread) goes to the enterprise.
    Returns False when the message is not about a ticket."""
    message = update.effective_message
    if message is None or message.reply_to_message is None or w.chat_id is None:
        return False
    ticket = ticket_for_message(w.session, w.chat_id, message.reply_to_message.message_id)
    if ticket is None or w.actor is None or not may(w.actor, Act.REPLY, ticket):
        return False
    attachment = attachment_of(message, w.desk.now)
    try:
        if attachment is not None and attachment.kind == "photo":
            handling.reply(w.desk, w.actor, ticket, message.caption, photo=attachment)
        else:
            handling.reply(w.desk, w.actor, ticket, message.text)
    except DeskError as refusal:
        w.refuse(refusal)
        return True
    if update.effective_chat is not None and update.effective_chat.type == "private":
        w.say("thread.sent_to_enterprise", {"number": ticket.number})
    return True
