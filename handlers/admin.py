"""Running the zone from the chat: /invite makes an invite link (admins, in a private chat),
/reload reloads the zone file named by SQUADBOT_ZONE_FILE (admins), /chatid tells managers
and admins a group's chat id, for `managers_chat` in the zone file. Who may is `may`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import select
from telegram import Update
from telegram.ext import Application, ContextTypes

from bot.i18n import t
from handlers.work import Work, work
from models.invites import INVITE_ROLES, InviteRefused, create_invite
from models.org import Person
from models.outbox import text_key, time_param
from models.permissions import Act, may
from models.zone.apply import ApplyReport, apply_zone
from models.zone.parse import load_zone_file
from models.zone.reader import ZoneFileError

# Where the running bot keeps SQUADBOT_ZONE_FILE for /reload (Application.bot_data).
ZONE_FILE = "squadbot.zone_file"
# What /invite ROLE takes after the role, in order.
ARGUMENTS: dict[str, tuple[str, ...]] = {
    "enterprise": ("project", "person"),
    "member": ("squad", "person"),
    "lead": ("squad", "person"),
    "manager": ("person",),
    "admin": ("person",),
    "group": ("squad",),
}
PROBLEMS_SHOWN = 15  # zone-file problems quoted in the chat; the rest are counted


def use_zone_file(app: Application, path: Path | None) -> None:  # type: ignore[type-arg]
    app.bot_data[ZONE_FILE] = path


def _private(update: Update) -> bool:
    return update.effective_chat is not None and update.effective_chat.type == "private"


def _allowed(w: Work, update: Update, act: Act) -> bool:
    """Refusals are said in a private chat only: in a group the bot stays quiet."""
    if may(w.actor, act):
        return True
    if _private(update):
        w.say("start.no_role" if w.actor is None or not w.actor.has_role else "error.not_allowed")
    return False


def _words(update: Update) -> list[str]:
    message = update.effective_message
    text = (message.text or "") if message else ""
    return text.split()[1:]


def chat_params(refusal: InviteRefused) -> dict[str, Any]:
    """An invite refusal's raw role and field, as words of the reader's language."""
    params: dict[str, Any] = dict(refusal.params)
    if params.get("role") in INVITE_ROLES:
        params["role"] = text_key(f"invite.role.{params['role']}")
    if "field" in params:
        params["field"] = text_key(f"invite.field.{params['field']}")
    return params


async def invite(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    if not _allowed(w, update, Act.INVITE):
        return
    if not _private(update):  # the link works for whoever opens it first
        w.say("group.use_private")
        return
    words = _words(update)
    if not words:
        w.say("usage.invite")
        return
    role, given = words[0].lower(), words[1:]
    names = ARGUMENTS.get(role, ())
    if role in ARGUMENTS and len(given) > len(names):
        w.say("usage.invite")
        return
    values = dict(zip(names, given, strict=False))
    try:
        made = create_invite(
            w.session,
            w.desk.now,
            role=role,
            ttl=w.zone.invite_ttl,
            squad_code=values.get("squad"),
            project_code=values.get("project"),
            person_key=values.get("person"),
        )
    except InviteRefused as refusal:
        w.say(refusal.key, chat_params(refusal))
        return
    until = time_param(made.expires_at)
    if role == "group":
        w.say("invite.made_group", {"squad": values["squad"], "code": made.code, "until": until})
        return
    who: Any = text_key("invite.walk_in")
    person = _person(w, made.person_key)
    if person is not None:
        where = values.get("squad") or values.get("project")
        who = f"{person.name} ({person.key}{', ' + where if where else ''})"
    w.say(
        "invite.made",
        {
            "role": text_key(f"invite.role.{role}"),
            "who": who,
            "link": f"https://t.me/{context.bot.username}?start={made.code}",
            "until": until,
        },
    )


def _person(w: Work, key: str | None) -> Person | None:
    if key is None:
        return None
    return w.session.exec(select(Person).where(Person.key == key)).first()


def report_lines(report: ApplyReport, locale: str) -> list[str]:
    """What `org load` prints, in the reader's language (warnings quote the loader)."""
    tables = sorted(set(report.created) | set(report.updated) | set(report.deactivated))
    lines = [
        t(
            locale,
            "reload.line",
            table=t(locale, f"reload.table.{table}"),
            created=report.created[table],
            updated=report.updated[table],
            deactivated=report.deactivated[table],
        )
        for table in tables
    ] or [t(locale, "reload.nothing")]
    return lines + [t(locale, "reload.warning", text=warning) for warning in report.warnings]


async def reload_zone(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    if not _allowed(w, update, Act.RELOAD_ZONE):
        return
    path = context.application.bot_data.get(ZONE_FILE)
    if path is None:
        w.say("reload.no_file")
        return
    try:
        document = load_zone_file(path)
    except ZoneFileError as refused:
        problems = [str(p) for p in refused.problems]
        shown = problems[:PROBLEMS_SHOWN]
        if len(problems) > len(shown):
            shown.append(t(w.locale, "reload.more", count=len(problems) - len(shown)))
        w.say("reload.refused", {"file": str(path), "problems": "\n".join(shown)})
        return
    report = apply_zone(w.session, document)
    w.say("reload.done", {"file": str(path), "report": "\n".join(report_lines(report, w.locale))})


async def chat_id(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    chat = update.effective_chat
    if chat is None or not _allowed(w, update, Act.SHOW_CHAT_ID):
        return
    if chat.type not in ("group", "supergroup"):
        w.say("chatid.only_in_group")
        return
    if w.zone.managers_chat == chat.id:
        w.say("chatid.is_managers", {"chat_id": chat.id})
    else:
        w.say("chatid.answer", {"chat_id": chat.id})
