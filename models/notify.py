"""Everything that tells a person: outbox rows in the reader's language, ticket cards and
the threads under them, button tokens. The one place in the domain that knows delivery is
chat-shaped (chat ids, cards edited in place, callback tokens); the rest of the desk only
says who should hear what."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import bindparam, event, insert
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col, select

from models.org import Role, Squad
from models.outbox import Button, queue
from models.people import Someone, squad_people
from models.plumbing import OutboxMessage
from models.ticket import ButtonAction, Ticket

if TYPE_CHECKING:
    from models.desk import Desk

PENDING_BUTTONS = "pending_buttons"  # session.info: the tokens made, not yet written
_BUTTONS = insert(ButtonAction.__table__)  # type: ignore[attr-defined]


def write_buttons(session: OrmSession) -> None:
    """The button tokens made in this session so far, in one INSERT. Called before every
    flush and before the commit (and by whoever needs them written at a given moment):
    tokens are kept as plain rows, not objects, since a keyboard has a dozen of them and
    nothing reads them back before a later update presses one."""
    rows = session.info.pop(PENDING_BUTTONS, None)
    if rows:
        session.connection().execute(_BUTTONS, rows)


class Press(NamedTuple):
    """A button token as read when it is pressed (`ButtonAction`'s row)."""

    token: str
    action: str
    ticket_id: int | None
    person_id: int | None
    arg: str | None


_TOKENS = ButtonAction.__table__  # type: ignore[attr-defined]
_PRESS = sa.select(*(_TOKENS.c[name] for name in Press._fields)).where(
    _TOKENS.c.token == bindparam("token")
)


def press_of(session: OrmSession, token: str) -> Press | None:
    """The token pressed, read as a row (each press reads one; nothing changes it)."""
    row = session.connection().execute(_PRESS, {"token": token}).first()
    return Press(*row) if row is not None else None


def _forget_buttons(session: OrmSession, previous: SessionTransaction) -> None:
    """The tokens not yet written go with a rollback of the whole transaction; a savepoint
    rolled back keeps them (some were made before it, and a token nothing shows is
    harmless: the clean-up takes it with the rest)."""
    if not previous.nested:
        session.info.pop(PENDING_BUTTONS, None)


event.listen(Session, "before_flush", lambda session, *_rest: write_buttons(session))
event.listen(Session, "before_commit", write_buttons)
event.listen(Session, "after_soft_rollback", _forget_buttons)


class Notify:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def button(
        self, action: str, ticket: Ticket | None, *, person: Someone | None = None, arg: str = ""
    ) -> str:
        token = secrets.token_urlsafe(12)
        self.desk.session.info.setdefault(PENDING_BUTTONS, []).append(
            {
                "token": token,
                "action": action,
                "ticket_id": ticket.id if ticket else None,
                "person_id": person.id if person else None,
                "arg": arg or None,
                "created_at": self.desk.now,
            }
        )
        return token

    def settle_button(self, token: str, arg: str) -> None:
        """Give a token made in this unit of work its argument once it is known (a page
        button names the message it belongs to, whose row is written after the token)."""
        for row in self.desk.session.info.get(PENDING_BUTTONS, ()):
            if row["token"] == token:
                row["arg"] = arg
                return
        action = self.desk.session.get(ButtonAction, token)  # written already by a flush
        if action is not None:
            action.arg = arg
            self.desk.session.add(action)

    def tell(
        self,
        person: Someone | None,
        template: str,
        params: dict[str, Any] | None = None,
        *,
        ticket: Ticket | None = None,
        buttons: Sequence[Sequence[Button]] | None = None,
        kind: str = "text",
        file_id: str | None = None,
        link_role: str | None = "thread",
        dedupe_key: str | None = None,
    ) -> int | None:
        """A person's private chat, in their language (the outbox row's id); nothing if they
        never bound Telegram."""
        if person is None or person.telegram_user_id is None:
            return None
        return self.tell_chat(
            person.telegram_user_id,
            template,
            params,
            ticket=ticket,
            buttons=buttons,
            kind=kind,
            file_id=file_id,
            link_role=link_role,
            dedupe_key=dedupe_key,
            locale=self.desk.locale_of(person),
        )

    def tell_chat(
        self,
        chat_id: int,
        template: str,
        params: dict[str, Any] | None = None,
        *,
        ticket: Ticket | None = None,
        buttons: Sequence[Sequence[Button]] | None = None,
        kind: str = "text",
        file_id: str | None = None,
        reply_to_outbox: int | None = None,
        edit_of: int | None = None,
        link_role: str | None = "thread",
        dedupe_key: str | None = None,
        locale: str | None = None,
    ) -> int:
        """Any chat (a group in the zone's language unless told otherwise); the row's id."""
        return queue(
            self.desk.session,
            self.desk.now,
            chat_id=chat_id,
            template=template,
            locale=locale or self.desk.zone.language,
            params=params,
            buttons=buttons,
            kind=kind,
            file_id=file_id,
            ticket_id=ticket.id if ticket else None,
            link_role=link_role if ticket else None,
            reply_to_outbox=reply_to_outbox,
            edit_of=edit_of,
            dedupe_key=dedupe_key,
        )

    def squad_of(self, ticket: Ticket) -> Squad:
        squad = self.desk.session.get(Squad, ticket.squad_id)
        assert squad is not None
        return squad

    def card_rows(self, ticket: Ticket) -> list[OutboxMessage]:
        return list(
            self.desk.session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.ticket_id == ticket.id, OutboxMessage.link_role == "card")
                .order_by(col(OutboxMessage.id))
            ).all()
        )

    def tell_squad(
        self,
        ticket: Ticket,
        template: str,
        params: dict[str, Any] | None = None,
        *,
        kind: str = "text",
        file_id: str | None = None,
        exclude: Someone | None = None,
    ) -> None:
        """The squad hears about its ticket in its group, threaded under the ticket card;
        without a group, the owner hears it privately (everyone in the squad if unclaimed)."""
        squad = self.squad_of(ticket)
        if squad.group_chat_id is not None:
            card = next(
                (c for c in self.card_rows(ticket) if c.chat_id == squad.group_chat_id), None
            )
            self.tell_chat(
                squad.group_chat_id,
                template,
                params,
                ticket=ticket,
                kind=kind,
                file_id=file_id,
                reply_to_outbox=card.id if card else None,
            )
            return
        owner = self.desk.person(ticket.owner_id)
        people = (
            [owner]
            if owner
            else squad_people(self.desk.session, squad.id or 0, (Role.MEMBER, Role.LEAD))
        )
        for person in people:
            if exclude is not None and person is not None and person.id == exclude.id:
                continue
            self.tell(person, template, params, ticket=ticket, kind=kind, file_id=file_id)
