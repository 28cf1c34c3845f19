"""Long answers a page at a time: /my and a ticket's history are one message each, with ◀ ▶
buttons when they are long. A press is a button token like any other (looked up, its
presser checked); the list is read again for the presser with the permissions they have
now, and the same message is rewritten. The token names the message by its outbox row,
so nothing the chat sends decides which message is edited."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from handlers.work import Work
from models import queries
from models.desk import DeskError
from models.notify import Press
from models.outbox import Button, category_param, inline, lines, nested, text_key, time_param
from models.plumbing import OutboxMessage
from models.ticket import Ticket

PAGE = "page"  # the button action
MY, HISTORY = "my", "history"  # what a page button pages through
HISTORY_TEXT = 300  # characters of what was said, per history line


def _pager(
    w: Work, kind: str, page: int, pages: int, ticket: Ticket | None
) -> tuple[list[list[Button]] | None, list[tuple[str, int]]]:
    """◀ and ▶ for this page, each a token for the presser alone, and the page it leads to."""
    if pages <= 1 or w.actor is None:
        return None, []
    row: list[Button] = []
    targets: list[tuple[str, int]] = []
    for label, target in (("button.previous", page - 1), ("button.next", page + 1)):
        if 1 <= target <= pages:
            token = w.desk.notify.button(PAGE, ticket, person=w.actor.me, arg=kind)
            row.append((label, token))
            targets.append((token, target))
    return [row], targets


def _send(
    w: Work,
    template: str,
    params: dict[str, Any],
    *,
    kind: str,
    page: int,
    pages: int,
    ticket: Ticket | None = None,
    edit_of: int | None = None,
) -> None:
    buttons, targets = _pager(w, kind, page, pages, ticket)
    row = w.say(template, params, buttons=buttons, edit_of=edit_of)
    if row is None or not targets:
        return
    message = edit_of if edit_of is not None else row  # the message's own row goes in them
    for token, target in targets:
        w.desk.notify.settle_button(token, f"{kind}:{target}:{message}")


def my_page(w: Work, page: int = 1, *, edit_of: int | None = None) -> None:
    """A page of /my: the true count, for managers and leads the count of every squad and
    state (on the first page), then the tickets under their squad's name."""
    assert w.actor is not None
    view = queries.my_tickets(w.session, w.actor, page)
    if view.total == 0:
        w.say("my.none", edit_of=edit_of)
        return
    header = (
        nested("my.header_paged", {"count": view.total, "page": view.page, "pages": view.pages})
        if view.pages > 1
        else nested("my.header", {"count": view.total})
    )
    body: list[Any] = []
    if view.grouped and view.page == 1:
        for squad, counts in groupby(view.groups, key=lambda g: g.squad):
            states = [
                nested("my.state_count", {"state": {"state": c.state}, "count": c.count})
                for c in counts
            ]
            body.append(nested("my.group", {"squad": squad, "states": inline(states)}))
    heading = None
    for line in view.lines:
        if view.grouped and line.squad != heading:
            body.append(nested("my.squad_heading", {"squad": line.squad}))
            heading = line.squad
        body.append(
            nested(
                "my.line",
                {
                    "led": text_key("my.led_mark") if line.led else "",
                    "number": line.number,
                    "category": category_param(line.category_code),
                    "state": {"state": line.state},
                    "response_due": time_param(line.response_due),
                    "due": time_param(line.due),
                },
            )
        )
    _send(
        w,
        "my.page",
        {"header": header, "body": lines(body)},
        kind=MY,
        page=view.page,
        pages=view.pages,
        edit_of=edit_of,
    )


def history_page(w: Work, view: queries.TicketView, *, edit_of: int | None = None) -> None:
    """A page of a ticket's history, oldest first."""
    params = {"count": view.history_total, "page": view.page, "pages": view.pages}
    header = (
        nested("ticket.history_header_paged", params)
        if view.pages > 1
        else nested("ticket.history_header", params)
    )
    body = [
        nested(
            "ticket.history_line",
            {
                "at": time_param(line.at),
                "who": line.who if line.who is not None else text_key("history.system"),
                "what": text_key(f"history.{line.action}"),
                "text": line.text[:HISTORY_TEXT],
            },
        )
        for line in view.history
    ]
    _send(
        w,
        "ticket.history_page",
        {"header": header, "body": lines(body)},
        kind=HISTORY,
        page=view.page,
        pages=view.pages,
        ticket=w.session.get(Ticket, view.ticket_id),
        edit_of=edit_of,
    )


def on_page(w: Work, action: Press, ticket: Ticket | None) -> None:
    """◀ or ▶ pressed: the page it names, read again now, replaces the message."""
    kind, _, rest = (action.arg or "").partition(":")
    page_text, _, message_text = rest.partition(":")
    if not (page_text.isdigit() and message_text.isdigit() and page_text.isascii()):
        raise DeskError("error.stale_button")
    message = w.session.get(OutboxMessage, int(message_text))
    if message is None or message.chat_id != w.chat_id or w.actor is None:
        raise DeskError("error.stale_button")
    page = int(page_text)
    if kind == MY:
        my_page(w, page, edit_of=message.id)
        return
    if kind == HISTORY and ticket is not None:
        view = queries.ticket_view(w.session, w.actor, ticket.number, page)
        if view is None:
            raise DeskError("error.no_such_ticket")
        history_page(w, view, edit_of=message.id)
        return
    raise DeskError("error.stale_button")
