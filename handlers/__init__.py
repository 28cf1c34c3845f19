"""Telegram adapters: parse an update, check who is asking, call the domain, answer."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from handlers import (
    admin,
    buttons,
    figures,
    intake,
    interventions,
    lookup,
    messages,
    onboarding,
    squad,
)
from handlers.work import remember_error

Callback = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]

# New messages only: an edited message is never taken as a second report or reply.
NEW = filters.UpdateType.MESSAGE

COMMANDS: dict[str, Callback] = {
    "start": onboarding.start,
    "bind": onboarding.bind,
    "help": onboarding.show_help,
    "lang": onboarding.switch_language,
    "new": intake.new_ticket,
    "cancel": intake.cancel,
    "my": lookup.my_tickets,
    "ticket": lookup.show_ticket,
    "reply": squad.reply_command,
    "note": squad.note_command,
    "wait": squad.wait_command,
    "plan": squad.plan_command,
    "needplan": squad.needplan_command,
    "extend": squad.extend_command,
    "resolve": squad.resolve_command,
    "urge": interventions.urge_command,
    "lead": interventions.lead_command,
    "transfer": interventions.transfer_command,
    "invite": admin.invite,
    "reload": admin.reload_zone,
    "chatid": admin.chat_id,
    "stats": figures.stats_command,
    "ranking": figures.ranking_command,
    "overdue": figures.overdue_command,
    "export": figures.export_command,
}


def register(app: Application) -> None:  # type: ignore[type-arg]
    for name, callback in COMMANDS.items():
        app.add_handler(CommandHandler(name, callback, filters=NEW))
    app.add_handler(CallbackQueryHandler(buttons.pressed))
    app.add_handler(MessageHandler(NEW & filters.COMMAND, onboarding.unknown_command))
    content = filters.TEXT | filters.PHOTO | filters.Document.ALL | filters.LOCATION
    app.add_handler(MessageHandler(NEW & content, messages.on_message))
    app.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE, onboarding.edited))
    app.add_handler(MessageHandler(NEW & ~filters.StatusUpdate.ALL, onboarding.unsupported))
    app.add_error_handler(remember_error)
