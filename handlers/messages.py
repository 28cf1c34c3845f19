"""Plain messages (text, photos, documents, locations) that are not commands: routed to the
draft being filed, to a ticket's thread, or answered with what to do instead."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers import intake, squad
from handlers.work import work
from models.desk import DeskError


async def on_message(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    chat = update.effective_chat
    message = update.effective_message
    if chat is None or message is None:
        return
    if chat.type != "private":
        if w.actor is not None and w.actor.is_squad_member:
            squad.member_reply(w, update)
        return
    if w.actor is None or not w.actor.has_role:
        w.say("start.no_role")
        return
    has_content = (
        bool(message.text)
        or bool(message.photo)
        or message.document is not None
        or message.location is not None
    )
    if not has_content:
        w.say("error.unsupported_content")
        return
    try:
        if w.actor.is_enterprise:
            handled = (
                intake.private_attachment(w, update)
                if not message.text
                else intake.private_text(w, update)
            )
            if handled:
                return
        if squad.member_reply(w, update):
            return
    except DeskError as refusal:
        w.refuse(refusal)
        return
    w.say("hint.enterprise" if w.actor.is_enterprise else "hint.squad")
