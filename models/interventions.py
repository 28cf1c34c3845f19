"""What leadership does to a ticket beyond the squad's own work: a manager's supervision
notice (督办), a lead or manager taking a hard problem on personally (难题我领办), and moving
a misrouted ticket to the squad it belongs to (转办). Like the squad's actions, each is one
domain action in the caller's transaction; everything is checked before anything is
written, because a refusal still commits the update it answers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, select

from models.desk import Desk, DeskError
from models.filing import send_card
from models.handling import checked_text, refresh_cards, require, restart_handling_clock
from models.lifecycle import ACTIVE_STATES, Action, State
from models.org import Role, Squad
from models.outbox import category_param, text_key, time_param
from models.people import Actor, Someone, active_memberships
from models.permissions import Act
from models.ticket import Ticket


def _active(ticket: Ticket) -> Ticket:
    if ticket.state not in ACTIVE_STATES:
        raise DeskError("error.bad_state", number=ticket.number, state={"state": ticket.state})
    return ticket


def _squad_hears(
    desk: Desk, ticket: Ticket, template: str, params: dict[str, Any], told: set[int]
) -> list[str]:
    """The whole squad hears it: in its group, threaded under the card, or each member and
    lead privately (but not twice). Who read it: the group's name, or the people's."""
    squad = desk.notify.squad_of(ticket)
    if squad.group_chat_id is not None:
        desk.notify.tell_squad(ticket, template, params)
        return [squad.name]
    names = []
    for person in desk.people(ticket.squad_id, (Role.MEMBER, Role.LEAD)):
        if person.id not in told:
            if desk.notify.tell(person, template, params, ticket=ticket) is not None:
                names.append(person.name)
            told.add(person.id or 0)
    return names


# --- supervision notice (督办) -----------------------------------------------------------------
def urge(desk: Desk, actor: Actor, ticket: Ticket | None, text: str | None) -> list[str]:
    """A manager's supervision notice: to the leader who took the ticket on, its owner and
    its squad's lead, and to the whole squad while nobody owns it. Kept in the history as
    "urged", so statistics can count it. Returns who was told, for the manager's receipt."""
    ticket = _active(require(actor, Act.URGE, ticket))
    body = checked_text(text)
    owner = desk.person(ticket.owner_id)
    squad = desk.notify.squad_of(ticket)
    params = {
        "number": ticket.number,
        "name": actor.me.name,
        "text": body,
        "category": category_param(ticket.category_code),
        "squad": squad.name,
        "state": {"state": ticket.state},
        "owner": owner.name if owner else text_key("owner.none"),
        "handling_due": time_param(ticket.handling_due),
    }
    desk.record(ticket, "urged", actor.me, detail={"text": body})
    named = [desk.person(ticket.led_by), owner, *desk.people(ticket.squad_id, (Role.LEAD,))]
    people = list({p.id: p for p in named if p is not None and p.id != actor.id}.values())
    told: set[int] = {actor.id}
    names: list[str] = []
    for person in people:
        if desk.notify.tell(person, "urge.notice", params, ticket=ticket) is not None:
            names.append(person.name)  # only who can actually read it
        told.add(person.id or 0)
    if owner is None:
        names += _squad_hears(desk, ticket, "urge.notice", params, told)
    return names


# --- taking it on personally (领办) ------------------------------------------------------------
def take_on(desk: Desk, actor: Actor, ticket: Ticket | None) -> Ticket:
    """A lead of the ticket's squad, or a manager, takes the ticket on personally: it is
    marked as theirs on the card, in /my and in the ticket view, and they hear its deadline
    alerts before anyone else. The squad still claims and handles it."""
    ticket = _active(require(actor, Act.LEAD, ticket))
    if ticket.led_by == actor.id:
        raise DeskError("lead.already_yours", number=ticket.number)
    leader = desk.person(ticket.led_by)
    if leader is not None:
        raise DeskError("lead.taken", number=ticket.number, name=leader.name)
    desk.session.flush()
    taken = desk.session.execute(  # of two leaders at once, one takes it
        update(Ticket)
        .where(col(Ticket.id) == ticket.id, col(Ticket.led_by).is_(None))
        .values(led_by=actor.id, updated_at=desk.now)
    )
    desk.session.refresh(ticket)
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        leader = desk.person(ticket.led_by)
        raise DeskError("lead.taken", number=ticket.number, name=leader.name if leader else "-")
    desk.record(ticket, "led", actor.me)
    params = {"number": ticket.number, "name": actor.me.name}
    refresh_cards(desk, ticket)
    desk.notify.tell_squad(ticket, "lead.to_squad", params, exclude=actor.me)
    desk.notify.tell(desk.person(ticket.enterprise_id), "lead.to_enterprise", params, ticket=ticket)
    return ticket


# --- moving it to another squad (转办) -----------------------------------------------------------
def squad_by_code(desk: Desk, code: str) -> Squad | None:
    return desk.session.exec(
        select(Squad).where(func.upper(Squad.code) == code.strip().upper(), col(Squad.active))
    ).first()


def _stays(desk: Desk, person: Someone | None, squad: Squad, *, manager_too: bool) -> bool:
    """Whether this person can go on working on a ticket of that squad."""
    if person is None or person.id is None:
        return False
    roles = Actor(person=person, memberships=active_memberships(desk.session, person.id))
    return squad.id in roles.squad_ids or (manager_too and roles.is_manager)


def transfer(
    desk: Desk, actor: Actor, ticket: Ticket | None, squad_code: str, reason: str | None
) -> Squad:
    """A misrouted ticket goes to the squad it belongs to. Its deadlines keep running from
    filing; an owner who is not in the new squad lets go of it (back to open, by the
    table's transfer move), and so does a leader who could not follow it. The old squad's
    cards say where it went and lose their buttons; the new squad gets a card; both squads
    and the enterprise are told."""
    ticket = _active(require(actor, Act.TRANSFER, ticket))
    why = checked_text(reason)
    target = squad_by_code(desk, squad_code)
    if target is None or target.id is None:
        raise DeskError("transfer.no_such_squad", code=squad_code.strip())
    if target.id == ticket.squad_id:
        raise DeskError("transfer.same_squad", number=ticket.number, squad=target.name)
    source = desk.notify.squad_of(ticket)
    before = State(ticket.state)
    owner = desk.person(ticket.owner_id)
    keeps_owner = _stays(desk, owner, target, manager_too=False)
    leader = desk.person(ticket.led_by)
    keeps_leader = _stays(desk, leader, target, manager_too=True)
    if owner is not None and not keeps_owner and before != State.OPEN:
        if not desk.move(ticket, Action.TRANSFER):
            raise DeskError("error.bad_state", number=ticket.number, state={"state": ticket.state})
        if before == State.WAITING:
            restart_handling_clock(desk, ticket)
    params = {
        "number": ticket.number,
        "name": actor.me.name,
        "text": why,
        "from": source.name,
        "to": target.name,
    }
    _squad_hears(desk, ticket, "transfer.away", params, {actor.id})
    for card in desk.notify.card_rows(ticket):
        if card.chat_id is not None:
            desk.notify.tell_chat(
                card.chat_id,
                "ticket.card_moved",
                params,
                ticket=ticket,
                link_role=None,
                edit_of=card.id,
            )
        card.link_role = "card_moved"  # no longer this ticket's card: never refreshed again
        desk.session.add(card)
    if not keeps_owner:
        ticket.owner_id = None
    if not keeps_leader:
        ticket.led_by = None
    ticket.squad_id = target.id
    desk.session.add(ticket)
    desk.session.flush()
    desk.record(
        ticket,
        "transferred",
        actor.me,
        from_state=before,
        detail={
            "from": source.code,
            "to": target.code,
            "text": why,
            "owner_released": owner is not None and not keeps_owner,
            "leader_released": leader is not None and not keeps_leader,
        },
    )
    desk.rearm(ticket)
    send_card(desk, ticket, [])
    desk.session.flush()  # the arrival note is threaded under the new card
    desk.notify.tell_squad(ticket, "transfer.arrived", params)
    desk.notify.tell(
        desk.person(ticket.enterprise_id), "transfer.to_enterprise", params, ticket=ticket
    )
    return target
