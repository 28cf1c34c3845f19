"""Joining and finding one's way: /start with an invite code, /bind for a squad's group,
/help by role, /lang, and clear answers for people with no role, unknown commands and
content the bot cannot read."""

from __future__ import annotations

import math

from telegram import Update
from telegram.ext import ContextTypes

from bot.i18n import normalise
from handlers.common import command_args, display_name
from handlers.work import Work, work
from models.desk import DeskError
from models.invites import bind_group, redeem


async def start(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    message = update.effective_message
    if message is None or update.effective_user is None:
        return
    if update.effective_chat is None or update.effective_chat.type != "private":
        w.say("group.use_private")
        return
    code, _ = command_args(message)
    if not code:
        if w.actor is None or not w.actor.has_role:
            w.say("start.no_role")
        else:
            w.say("start.welcome_back", {"name": w.actor.me.name})
            for key in help_keys():
                w.say(key)
        return
    if _shut_out(w, update.effective_user.id):
        return
    try:
        person, invite = redeem(
            w.session,
            w.desk.now,
            code,
            telegram_user_id=update.effective_user.id,
            name=display_name(update),
            language=normalise(update.effective_user.language_code)
            if update.effective_user.language_code
            else None,
        )
    except DeskError as refusal:
        _count_wrong(w, update.effective_user.id, refusal)
        w.refuse(refusal)
        return
    w.refresh_actor()
    w.say(f"start.bound.{invite.role}", {"name": person.name})
    for key in help_keys():
        w.say(key)


async def bind(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    message = update.effective_message
    chat = update.effective_chat
    if message is None or chat is None or update.effective_user is None:
        return
    if chat.type not in ("group", "supergroup"):
        w.say("bind.only_in_group")
        return
    code, _ = command_args(message)
    if not code:
        w.say("bind.usage")
        return
    if _shut_out(w, update.effective_user.id):
        return
    try:
        squad = bind_group(
            w.session, w.desk.now, code, chat_id=chat.id, telegram_user_id=update.effective_user.id
        )
    except DeskError as refusal:
        _count_wrong(w, update.effective_user.id, refusal)
        w.refuse(refusal)
        return
    w.say("bind.done", {"squad": squad.name})


def _shut_out(w: Work, user_id: int) -> bool:
    """Too many wrong codes from this account lately: refused, whatever the code, and said
    once (in the chat the code came from) until the window lets it try again."""
    if w.guesses is None:
        return False
    until = w.guesses.blocked_until(user_id, w.desk.now)
    if until is None:
        return False
    if w.guesses.tell(user_id, until):
        minutes = max(1, math.ceil((until - w.desk.now).total_seconds() / 60))
        w.say("invite.too_many_wrong", {"minutes": minutes})
    return True


def _count_wrong(w: Work, user_id: int, refusal: DeskError) -> None:
    """A code that names no invite is a guess; a used or expired one is a real code."""
    if w.guesses is not None and refusal.key == "invite.unknown":
        w.guesses.wrong(user_id, w.desk.now)


def help_keys() -> list[str]:
    """The help for the person's role, and an admin's commands after it."""
    actor = work().actor
    if actor is None or not actor.has_role:
        return ["help.no_role"]
    found = []
    if actor.is_manager:
        found.append("help.manager")
    elif actor.is_squad_member:
        found.append("help.squad")
    elif actor.is_enterprise:
        found.append("help.enterprise")
    if actor.is_admin:
        found.append("help.admin")
    return found or ["help.no_role"]


async def show_help(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    for key in help_keys():
        w.say(key)


async def switch_language(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    if w.actor is None:
        w.say("start.no_role")
        return
    message = update.effective_message
    wanted = command_args(message)[0] if message else ""
    current = w.locale
    new = normalise(wanted) if wanted else ("en" if current == "zh-CN" else "zh-CN")
    w.actor.person.language = new
    w.session.add(w.actor.person)
    w.say("lang.switched")


async def unknown_command(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    if update.effective_chat is not None and update.effective_chat.type != "private":
        return
    w.say("error.unknown_command" if w.actor and w.actor.has_role else "start.no_role")


async def unsupported(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stickers, voice, polls...: said plainly, nothing stored as if it were understood."""
    w = work()
    if update.effective_chat is not None and update.effective_chat.type != "private":
        return
    w.say("error.unsupported_content" if w.actor and w.actor.has_role else "start.no_role")


async def edited(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    """Edits are not applied after the fact: what was sent was already acted on."""
    w = work()
    if update.effective_chat is None or update.effective_chat.type != "private":
        return
    w.say("error.edit_ignored" if w.actor and w.actor.has_role else "start.no_role")
