"""Telegram adapters: parse an update, check who is asking, call the domain, answer."""

from __future__ import annotations

from telegram.ext import Application, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from handlers import buttons, intake, lookup, messages, onboarding, squad

COMMANDS = (
    "start",
    "help",
    "lang",
    "new",
    "cancel",
    "my",
    "ticket",
    "reply",
    "note",
    "wait",
    "plan",
    "needplan",
    "extend",
    "resolve",
    "bind",
)


def register(app: Application) -> None:  # type: ignore[type-arg]
    add = app.add_handler
    add(CommandHandler("start", onboarding.start))
    add(CommandHandler("bind", onboarding.bind))
    add(CommandHandler("help", onboarding.show_help))
    add(CommandHandler("lang", onboarding.switch_language))
    add(CommandHandler("new", intake.new_ticket))
    add(CommandHandler("cancel", intake.cancel))
    add(CommandHandler("my", lookup.my_tickets))
    add(CommandHandler("ticket", lookup.show_ticket))
    add(CommandHandler("reply", squad.reply_command))
    add(CommandHandler("note", squad.note_command))
    add(CommandHandler("wait", squad.wait_command))
    add(CommandHandler("plan", squad.plan_command))
    add(CommandHandler("needplan", squad.needplan_command))
    add(CommandHandler("extend", squad.extend_command))
    add(CommandHandler("resolve", squad.resolve_command))
    add(CallbackQueryHandler(buttons.pressed))
    add(MessageHandler(filters.COMMAND, onboarding.unknown_command))
    add(
        MessageHandler(
            filters.TEXT | filters.PHOTO | filters.Document.ALL | filters.LOCATION,
            messages.on_message,
        )
    )
    add(MessageHandler(filters.ALL & ~filters.StatusUpdate.ALL, onboarding.unsupported))
