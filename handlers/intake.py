"""The enterprise's conversation: /new -> category -> description (+ photos, documents,
location) -> urgency -> confirmation; then talking to the squad by replying to the bot's
ticket messages."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.attachments import attachment_of
from handlers.work import Work, work
from models import filing, handling
from models.desk import ticket_for_message
from models.outbox import category_param, nested, text_key
from models.permissions import Act, may


async def new_ticket(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    if not may(w.actor, Act.FILE):
        w.say("error.not_enterprise" if w.actor and w.actor.has_role else "start.no_role")
        return
    assert w.actor is not None
    filing.start_draft(w.desk, w.actor)
    ask_category(w)


def ask_category(w: Work) -> None:
    assert w.actor is not None
    rows: list[list[tuple[str, str]]] = []
    row: list[tuple[str, str]] = []
    for category in filing.categories(w.desk):
        label = category.name_zh if w.locale == "zh-CN" else category.name_en
        token = w.desk.notify.button("category", None, person=w.actor.me, arg=category.code)
        row.append((f"={label}", token))
        if len(row) == 2:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    rows.append([("button.cancel", w.desk.notify.button("cancel", None, person=w.actor.me))])
    w.say("new.ask_category", buttons=rows)


async def cancel(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    if w.actor is None:
        w.say("start.no_role")
        return
    had = filing.discard_draft(w.desk, w.actor)
    w.say("new.cancelled" if had else "new.nothing_to_cancel")


def on_category(w: Work, code: str) -> None:
    assert w.actor is not None
    filing.choose_category(w.desk, w.actor, code)
    w.say("new.ask_description", {"category": category_param(code)})


def on_urgency(w: Work, urgency: str) -> None:
    assert w.actor is not None
    draft = filing.choose_urgency(w.desk, w.actor, urgency)
    attached = filing.draft_attachment_count(w.desk, w.actor)
    submit = w.desk.notify.button("submit", None, person=w.actor.me)
    drop = w.desk.notify.button("cancel", None, person=w.actor.me)
    w.say(
        "new.confirm",
        {
            "category": category_param(draft.category_code or ""),
            "urgency": text_key(f"urgency.{urgency}"),
            "description": draft.description or "",
            # said only when there are some: "附件：0 个" tells the reader nothing
            "attachments": (
                nested("new.confirm_attachments", {"count": attached}) if attached else ""
            ),
        },
        buttons=[[("button.submit", submit), ("button.cancel", drop)]],
    )


def ask_urgency(w: Work) -> None:
    assert w.actor is not None
    rows = [
        [
            (
                "urgency.normal",
                w.desk.notify.button("urgency", None, person=w.actor.me, arg="normal"),
            ),
            (
                "urgency.urgent",
                w.desk.notify.button("urgency", None, person=w.actor.me, arg="urgent"),
            ),
        ]
    ]
    w.say("new.ask_urgency", buttons=rows)


def on_submit(w: Work) -> None:
    assert w.actor is not None
    filing.submit(w.desk, w.actor)


def on_cancel(w: Work) -> None:
    assert w.actor is not None
    filing.discard_draft(w.desk, w.actor)
    w.say("new.cancelled")


def private_text(w: Work, update: Update) -> bool:
    """Text in a private chat from an enterprise: part of a draft, or a reply on a ticket.
    Returns False when it is neither, so the caller can explain what to do."""
    message = update.effective_message
    assert message is not None and w.actor is not None
    reply_to = message.reply_to_message
    if reply_to is not None and w.chat_id is not None:
        ticket = ticket_for_message(w.session, w.chat_id, reply_to.message_id)
        if ticket is not None and w.actor.is_enterprise and ticket.enterprise_id == w.actor.id:
            handling.enterprise_message(w.desk, w.actor, ticket, message.text)
            w.say("thread.sent_to_squad", {"number": ticket.number})
            return True
    draft = filing.draft_of(w.desk, w.actor)
    if draft is not None and draft.step in ("description", "urgency", "confirm"):
        was = draft.step
        filing.describe(w.desk, w.actor, message.text or "", draft)
        if was == "description":
            ask_urgency(w)
        else:
            w.say("new.description_added")
        return True
    if draft is not None and draft.step == "category":
        w.say("new.pick_category_first")
        return True
    return False


def private_attachment(w: Work, update: Update) -> bool:
    message = update.effective_message
    assert message is not None and w.actor is not None
    attachment = attachment_of(message, w.desk.now)
    if attachment is None:
        return False
    reply_to = message.reply_to_message
    if reply_to is not None and w.chat_id is not None:
        ticket = ticket_for_message(w.session, w.chat_id, reply_to.message_id)
        if ticket is not None and w.actor.is_enterprise and ticket.enterprise_id == w.actor.id:
            handling.enterprise_message(
                w.desk, w.actor, ticket, message.caption, attachment=attachment
            )
            w.say("thread.sent_to_squad", {"number": ticket.number})
            return True
    draft = filing.draft_of(w.desk, w.actor)
    if draft is not None and draft.step != "category":
        attached = filing.attach(w.desk, w.actor, attachment, draft)
        if message.caption and draft.step == "description":
            filing.describe(w.desk, w.actor, message.caption, attached)
            w.say(f"new.got_{attachment.kind}")
            ask_urgency(w)
        else:
            w.say(f"new.got_{attachment.kind}")
        return True
    return False
