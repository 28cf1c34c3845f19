"""The one permission check: who may do what to which ticket, and who may run the zone from
the chat. Every handler and every button press goes through `may`, on the server, each time.

Admins set the zone up: in the chat they make invites (/invite), reload the zone file
(/reload) and read every ticket; they do no squad work and decide no extensions. Managers
and admins may ask a group's chat id (/chatid), to name the managers' group in the zone file."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from models.people import Actor
from models.ticket import Ticket


class Act(StrEnum):
    FILE = "file"
    VIEW = "view"
    CLAIM = "claim"
    REPLY = "reply"
    NOTE = "note"
    PLAN = "plan"
    NEEDS_PLAN = "needs_plan"
    WAIT = "wait"
    RESOLVE = "resolve"
    EXTEND = "extend"
    DECIDE_EXTENSION = "decide_extension"
    CONFIRM = "confirm"
    RATE = "rate"
    MESSAGE_SQUAD = "message_squad"
    URGE = "urge"  # a manager's supervision notice (督办)
    LEAD = "lead"  # a lead or manager takes the ticket on personally (领办)
    TRANSFER = "transfer"  # a misrouted ticket moves to another squad (转办)
    # the zone, not a ticket
    INVITE = "invite"
    RELOAD_ZONE = "reload_zone"
    SHOW_CHAT_ID = "show_chat_id"
    FIGURES = "figures"  # a squad's figures, ranking, overdue list and ledger


_SQUAD_ACTS = {Act.CLAIM, Act.REPLY, Act.NOTE, Act.PLAN, Act.NEEDS_PLAN, Act.WAIT, Act.EXTEND}
_ENTERPRISE_ACTS = {Act.CONFIRM, Act.RATE, Act.MESSAGE_SQUAD}


def may(
    actor: Actor | None, act: Act, ticket: Ticket | None = None, *, squad_id: int | None = None
) -> bool:
    """For FIGURES, `squad_id` names the squad asked about; None asks for the whole zone."""
    if actor is None or not actor.has_role:
        return False
    if act is Act.FILE:
        return actor.is_enterprise
    if act is Act.DECIDE_EXTENSION:
        return actor.is_manager
    if act in (Act.INVITE, Act.RELOAD_ZONE):
        return actor.is_admin
    if act is Act.SHOW_CHAT_ID:
        return actor.is_manager or actor.is_admin
    if act is Act.FIGURES:
        # managers read the whole zone; a squad's lead reads the squads they lead
        return actor.is_manager or (squad_id is not None and squad_id in actor.lead_squad_ids)
    if ticket is None:
        return False
    in_squad = ticket.squad_id in actor.squad_ids
    is_submitter = ticket.enterprise_id == actor.id and actor.is_enterprise
    if act is Act.VIEW:
        return is_submitter or in_squad or actor.is_manager or actor.is_admin
    if act in _SQUAD_ACTS:
        return in_squad
    if act is Act.RESOLVE:
        return in_squad and (ticket.owner_id == actor.id or ticket.squad_id in actor.lead_squad_ids)
    if act in _ENTERPRISE_ACTS:
        return is_submitter
    if act is Act.URGE:
        return actor.is_manager
    if act in (Act.LEAD, Act.TRANSFER):
        return actor.is_manager or ticket.squad_id in actor.lead_squad_ids
    return False


def may_at_all(actor: Actor | None, act: Act) -> bool:
    """Whether this person's roles could allow the act on some ticket: a command asked for by
    someone whose role never could is refused before any ticket is looked up. `may` still
    decides for the ticket itself."""
    if actor is None or not actor.has_role:
        return False
    if act is Act.VIEW:
        return True
    if act in (Act.FILE, *_ENTERPRISE_ACTS):
        return actor.is_enterprise
    if act in (*_SQUAD_ACTS, Act.RESOLVE):
        return actor.is_squad_member
    if act in (Act.DECIDE_EXTENSION, Act.URGE):
        return actor.is_manager
    if act in (Act.LEAD, Act.TRANSFER, Act.FIGURES):
        return actor.is_manager or bool(actor.lead_squad_ids)
    if act in (Act.INVITE, Act.RELOAD_ZONE, Act.SHOW_CHAT_ID):
        return may(actor, act)  # acts on the zone: no ticket to wait for
    return False


@dataclass(frozen=True)
class FiguresScope:
    """Whose figures a person may read: `squad_ids` None for the whole zone."""

    squad_ids: frozenset[int] | None

    @property
    def zone(self) -> bool:
        return self.squad_ids is None


def figures_scope(actor: Actor | None) -> FiguresScope | None:
    """The widest figures this person may read, by `may`; None if none at all (members,
    enterprises, strangers)."""
    if may(actor, Act.FIGURES):
        return FiguresScope(None)
    if actor is None:
        return None
    led = frozenset(s for s in actor.lead_squad_ids if may(actor, Act.FIGURES, squad_id=s))
    return FiguresScope(led) if led else None
