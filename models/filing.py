"""Filing a ticket: a draft kept in the database step by step, then one transaction that
numbers the ticket, starts its clocks, routes its card to the squad and acknowledges it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import bindparam, delete, insert, update
from sqlmodel import col, select

from models.desk import Desk, DeskError
from models.lifecycle import State
from models.org import Category, Person, Project, Role
from models.outbox import Button, category_param, nested, text_key, time_param
from models.people import Actor, squad_for_project, squad_people
from models.sla.policy import initial_deadlines
from models.ticket import Attachment, Draft, Ticket

URGENCIES = ("normal", "urgent")
MAX_DESCRIPTION = 3000


class Offered(NamedTuple):
    """A category as the /new keyboard offers it."""

    code: str
    name_zh: str
    name_en: str


_CATEGORIES = Category.__table__  # type: ignore[attr-defined]
_OFFERED = (
    sa.select(_CATEGORIES.c.code, _CATEGORIES.c.name_zh, _CATEGORIES.c.name_en)
    .where(_CATEGORIES.c.active)
    .order_by(_CATEGORIES.c.position)
)
_IS_OFFERED = sa.select(_CATEGORIES.c.id).where(
    _CATEGORIES.c.code == bindparam("code"), _CATEGORIES.c.active
)


def categories(desk: Desk) -> list[Offered]:
    """The active categories, in their order (read for each /new: an admin may change them
    at any time, from any process)."""
    return [Offered(*row) for row in desk.session.connection().execute(_OFFERED)]


class DraftState(NamedTuple):
    """A draft as read (`Draft`'s row): written by plain statements, no object kept."""

    person_id: int
    step: str
    category_code: str | None
    description: str | None
    urgency: str | None
    updated_at: datetime


# each step of a filing reads and writes its draft once: built once, bound at each use
_DRAFTS = Draft.__table__  # type: ignore[attr-defined]
_DRAFT_OF = sa.select(*(_DRAFTS.c[name] for name in DraftState._fields)).where(
    _DRAFTS.c.person_id == bindparam("person")
)
_NEW_DRAFT = insert(_DRAFTS)
_CHANGE_DRAFT = update(_DRAFTS).where(_DRAFTS.c.person_id == bindparam("person"))
_DROP_DRAFT = delete(_DRAFTS).where(_DRAFTS.c.person_id == bindparam("person"))


def draft_of(desk: Desk, actor: Actor) -> DraftState | None:
    row = desk.session.connection().execute(_DRAFT_OF, {"person": actor.id}).first()
    return DraftState(*row) if row is not None else None


def _change(desk: Desk, draft: DraftState, **values: Any) -> DraftState:
    """The draft with `values` (and updated now), written."""
    values["updated_at"] = desk.now
    changed = desk.session.connection().execute(
        _CHANGE_DRAFT, {"person": draft.person_id, **values}
    )
    if changed.rowcount != 1:
        raise DeskError("error.no_draft")  # gone since it was read (cancelled elsewhere)
    return draft._replace(**values)


def start_draft(desk: Desk, actor: Actor) -> DraftState:
    discard_draft(desk, actor)
    draft = DraftState(actor.id, "category", None, None, None, desk.now)
    desk.session.connection().execute(_NEW_DRAFT, draft._asdict())
    return draft


def discard_draft(desk: Desk, actor: Actor) -> bool:
    """The draft and its attachments dropped; False when there was none."""
    if draft_of(desk, actor) is None:
        return False
    for att in draft_attachments(desk, actor):
        desk.session.delete(att)
    desk.session.connection().execute(_DROP_DRAFT, {"person": actor.id})
    return True


# a draft's attachments: added to it, not yet moved to a ticket (the person bound at each use)
_OF_DRAFT = (
    col(Attachment.draft_person_id) == bindparam("person"),
    col(Attachment.ticket_id).is_(None),
)
_ATTACHED = sa.select(sa.func.count()).select_from(Attachment).where(*_OF_DRAFT)


def draft_attachments(desk: Desk, actor: Actor) -> list[Attachment]:
    return list(
        desk.session.exec(select(Attachment).where(*_OF_DRAFT), params={"person": actor.id})
    )


def draft_attachment_count(desk: Desk, actor: Actor) -> int:
    """How many attachments the draft has (the confirmation says so)."""
    return int(desk.session.connection().execute(_ATTACHED, {"person": actor.id}).scalar_one())


def choose_category(desk: Desk, actor: Actor, code: str) -> DraftState:
    draft = draft_of(desk, actor)
    if draft is None or draft.step != "category":
        raise DeskError("error.stale_button")
    if desk.session.connection().execute(_IS_OFFERED, {"code": code}).first() is None:
        raise DeskError("error.stale_button")  # gone, or no longer offered
    return _change(desk, draft, category_code=code, step="description")


def describe(desk: Desk, actor: Actor, text: str, draft: DraftState | None = None) -> DraftState:
    """The text added to the draft's description (`draft`: as the caller just read it)."""
    draft = draft if draft is not None else draft_of(desk, actor)
    if draft is None or draft.step not in ("description", "urgency", "confirm"):
        raise DeskError("error.no_draft")
    text = text.strip()
    if not text:
        raise DeskError("error.empty_text")
    if len(text) > MAX_DESCRIPTION:
        raise DeskError("error.too_long", limit=MAX_DESCRIPTION, length=len(text))
    combined = text if not draft.description else f"{draft.description}\n{text}"
    if len(combined) > MAX_DESCRIPTION:  # the card must still fit in one Telegram message
        raise DeskError("new.description_full", limit=MAX_DESCRIPTION, length=len(combined))
    step = "urgency" if draft.step == "description" else draft.step
    return _change(desk, draft, description=combined, step=step)


def attach(
    desk: Desk, actor: Actor, attachment: Attachment, draft: DraftState | None = None
) -> DraftState:
    draft = draft if draft is not None else draft_of(desk, actor)
    if draft is None or draft.step == "category":
        raise DeskError("error.no_draft")
    attachment.draft_person_id = actor.id
    attachment.added_by = actor.id
    attachment.added_at = desk.now
    desk.session.add(attachment)
    return _change(desk, draft)


def choose_urgency(desk: Desk, actor: Actor, urgency: str) -> DraftState:
    draft = draft_of(desk, actor)
    if draft is None or draft.step != "urgency" or urgency not in URGENCIES:
        raise DeskError("error.stale_button")
    return _change(desk, draft, urgency=urgency, step="confirm")


def submit(desk: Desk, actor: Actor) -> Ticket:
    draft = draft_of(desk, actor)
    if draft is None or draft.step != "confirm" or not draft.category_code:
        raise DeskError("error.stale_button")
    project = desk.session.get(Project, actor.project_id) if actor.project_id else None
    squad = squad_for_project(desk.session, actor.project_id, desk.zone.intake_squad_code)
    if squad is None or squad.id is None:
        raise DeskError("error.no_squad")
    targets = desk.zone.targets(draft.category_code, draft.urgency or "normal")
    due = initial_deadlines(desk.now, targets, desk.zone.calendar_for(targets))
    ticket = Ticket(
        number=desk.next_number(project),
        project_id=project.id if project else None,
        squad_id=squad.id,
        enterprise_id=actor.id,
        category_code=draft.category_code,
        urgency=draft.urgency or "normal",
        description=draft.description or "",
        state=State.OPEN,
        language=desk.locale_of(actor.me),
        created_at=desk.now,
        updated_at=desk.now,
        response_due=due.response_due,
        handling_due=due.handling_due,
        handling_started=desk.now,
        alarm=None,  # known: a new ticket has none yet (not loaded when it is armed)
    )
    desk.session.add(ticket)
    desk.session.flush()
    attachments = draft_attachments(desk, actor)
    for att in attachments:
        att.ticket_id = ticket.id
        desk.session.add(att)
    desk.session.connection().execute(_DROP_DRAFT, {"person": actor.id})
    desk.record(ticket, "filed", actor.me, detail={"attachments": len(attachments)})
    desk.rearm(ticket, filed_now=True)
    desk.notify.tell(
        actor.me,
        "ticket.filed",
        {
            "number": ticket.number,
            "category": category_param(ticket.category_code),
            "response_due": time_param(ticket.response_due),
            "handling_due": time_param(ticket.handling_due),
        },
        ticket=ticket,
    )
    send_card(desk, ticket, attachments)
    return ticket


def card_params(desk: Desk, ticket: Ticket) -> dict[str, Any]:
    project = desk.session.get(Project, ticket.project_id) if ticket.project_id else None
    enterprise = desk.person(ticket.enterprise_id)
    owner = desk.person(ticket.owner_id)
    return {
        "number": ticket.number,
        "category": category_param(ticket.category_code),
        "urgency": text_key(f"urgency.{ticket.urgency}"),
        "project": project.name if project else text_key("card.no_project"),
        "enterprise": project.enterprise if project else "-",
        "contact": enterprise.name if enterprise else "-",
        "phone": (enterprise.phone or "-") if enterprise else "-",
        "description": ticket.description,
        "response_due": time_param(ticket.response_due),
        "handling_due": time_param(ticket.handling_due),
        "state": {"state": ticket.state},
        "owner": owner.name if owner else text_key("owner.none"),
        "led": led_mark(desk, ticket),
    }


def led_mark(desk: Desk, ticket: Ticket) -> dict[str, Any] | str:
    """ "taken on personally by …" (领办) where a ticket shows, or nothing."""
    leader = desk.person(ticket.led_by)
    return nested("card.led_by", {"name": leader.name}) if leader else ""


def claimable(ticket: Ticket) -> bool:
    return ticket.state == State.OPEN and ticket.owner_id is None


def claim_buttons(desk: Desk, ticket: Ticket) -> list[list[Button]] | None:
    """A card offers Claim only while nobody owns the ticket."""
    return [[("button.claim", desk.notify.button("claim", ticket))]] if claimable(ticket) else None


def send_card(desk: Desk, ticket: Ticket, attachments: list[Attachment]) -> None:
    """The card goes to the squad's group with a Claim button, or to each member privately."""
    squad = desk.notify.squad_of(ticket)
    params = card_params(desk, ticket)
    if squad.group_chat_id is not None:
        card = desk.notify.tell_chat(
            squad.group_chat_id,
            "ticket.card",
            params,
            ticket=ticket,
            buttons=claim_buttons(desk, ticket),
            link_role="card",
        )
        for att in attachments:  # they reply to the card
            forward_attachment(desk, ticket, att, chat_id=squad.group_chat_id, reply_to=card)
        return
    for person in squad_people(desk.session, squad.id or 0, (Role.MEMBER, Role.LEAD)):
        desk.notify.tell(
            person,
            "ticket.card",
            params,
            ticket=ticket,
            buttons=claim_buttons(desk, ticket),
            link_role="card",
        )
        for att in attachments:
            forward_attachment(desk, ticket, att, person=person)


def forward_attachment(
    desk: Desk,
    ticket: Ticket,
    att: Attachment,
    *,
    chat_id: int | None = None,
    person: Person | None = None,
    reply_to: int | None = None,
) -> None:
    kind = att.kind if att.kind in ("photo", "document") else "text"
    params: dict[str, Any] = {"number": ticket.number}
    template = "ticket.attachment"
    if att.kind == "location":
        template = "ticket.location"
        params.update(lat=f"{att.latitude:.5f}", lon=f"{att.longitude:.5f}")
    if chat_id is not None:
        desk.notify.tell_chat(
            chat_id,
            template,
            params,
            ticket=ticket,
            kind=kind,
            file_id=att.file_id,
            reply_to_outbox=reply_to,
        )
    else:
        desk.notify.tell(person, template, params, ticket=ticket, kind=kind, file_id=att.file_id)
