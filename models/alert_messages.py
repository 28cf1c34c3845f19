"""Who hears an SLA alert and what they are told: one message per alert, or a storm's digest.

Alert storms: when many alerts fall due for one recipient at once (after downtime, after a
long holiday, a mass breach), the recipient gets one digest per level instead of one message
per ticket (the zone file's `alerts:` threshold and window); the ledger stays per ticket.

The alerts of one firing are gathered in an `AlertBook` as they are claimed, kept per kind
of recipient (squad, owner, leader, level, deadline): a count, the few a digest would name,
and the alerts themselves only while that kind could still be told one by one. So a
catch-up over 100k tickets holds a few hundred small lists, never one entry per recipient
and ticket."""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any, NamedTuple

from sqlmodel import col, select

from models.desk import Desk
from models.org import Person, Role, Squad
from models.outbox import category_param, lines, nested, outbox_row, text_key, time_param
from models.people import Someone
from models.plumbing import OutboxMessage
from models.sla.policy import AlertKind

STORM_SHOWN = 10  # a storm's digest names this many tickets; /my lists them all

# (squad, owner, leader, level, deadline): alerts with the same key have the same recipients
HearingKey = tuple[int, int | None, int | None, AlertKind, str]


class Told(NamedTuple):
    """One alert to tell, ordered as a digest names them: urgent first, then the oldest
    deadline, then by number, then in the order they were claimed."""

    not_urgent: bool
    due: datetime  # aware, or naive UTC (a row's); one or the other in a book
    number: str
    seq: int
    ticket: Any  # a Ticket, or a row with its columns
    deadline: str
    level: AlertKind
    ledger_id: int


@dataclass
class _Heard:
    """The alerts of one hearing key in this firing."""

    count: int = 0
    first: int | None = None  # the lowest ledger id: names a digest's row
    alerts: list[Told] = field(default_factory=list)
    # once trimmed to the few a digest names: the last of them (urgency, due, number); an
    # alert ordered after it can never be named
    cutoff: tuple[bool, datetime, str] | None = None


@dataclass(frozen=True)
class Address:
    """One recipient of alerts: `token` names it in dedupe keys (a person's id, `chat` for
    the managers' chat, `hook<i>` for a webhook), `where` is its outbox columns."""

    token: str
    where: dict[str, Any]


class AlertBook:
    """The alerts one firing tells, gathered as they are claimed; `rows` turns them into
    outbox rows. Per recipient and level, alerts are counted with those already queued for
    that recipient within the zone's storm window: when the count passes the storm threshold
    (and this firing holds at least two of them), the recipient gets one digest of this
    firing's alerts, naming the oldest and most urgent, instead of one message per ticket.
    A lone alert is always told on its own, at once."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.threshold = desk.zone.storm_threshold
        # past the threshold a key's alerts are all told in digests: keep the few they name
        self._trim_at = max(4 * STORM_SHOWN, 2 * self.threshold)
        self._heard: dict[HearingKey, _Heard] = {}
        self._seq = 0

    def __len__(self) -> int:
        return self._seq

    def add(
        self, ticket: Any, deadline: str, level: AlertKind, due: datetime, ledger_id: int
    ) -> None:
        key = (ticket.squad_id, ticket.owner_id, ticket.led_by, level, deadline)
        heard = self._heard.get(key)
        if heard is None:
            heard = self._heard[key] = _Heard()
        heard.count += 1
        if heard.first is None or ledger_id < heard.first:
            heard.first = ledger_id
        self._seq += 1
        order = (ticket.urgency != "urgent", due, ticket.number)
        if heard.cutoff is not None and order >= heard.cutoff:
            return  # ten before it already (it was claimed after them, a tie goes to them)
        heard.alerts.append(Told(*order, self._seq, ticket, deadline, level, ledger_id))
        if heard.count > self.threshold and len(heard.alerts) >= self._trim_at:
            heard.alerts = heapq.nsmallest(STORM_SHOWN, heard.alerts)
            heard.cutoff = heard.alerts[-1][:3]

    def rows(
        self, describe: Callable[[list[int]], dict[int, str]] | None = None
    ) -> list[dict[str, Any]]:
        """The outbox rows: each alert told alone where its recipient has no storm, and one
        digest per recipient and level in a storm. `describe` reads the descriptions of the
        tickets told alone when the book holds rows without them."""
        if not self._heard:
            return []
        desk = self.desk
        groups: dict[tuple[str, str], list[_Heard]] = {}
        where: dict[str, dict[str, Any]] = {}
        addresses: dict[HearingKey, list[Address]] = {}
        for key, heard in self._heard.items():
            addresses[key] = _addresses(desk, key)
            for address in addresses[key]:
                groups.setdefault((address.token, key[3].value), []).append(heard)
                where[address.token] = address.where
        counts = {group: sum(h.count for h in found) for group, found in groups.items()}
        threshold = self.threshold
        unsure = {group for group, n in counts.items() if 2 <= n <= threshold}
        before = _recently_told(desk, unsure) if unsure else {}
        storms = {
            group for group, n in counts.items() if n >= 2 and before.get(group, 0) + n > threshold
        }
        alone = sorted(
            (
                told
                for key, heard in self._heard.items()
                if any((a.token, key[3].value) not in storms for a in addresses[key])
                for told in heard.alerts
            ),
            key=lambda told: told.seq,
        )
        shown = {
            group: heapq.nsmallest(
                STORM_SHOWN, chain.from_iterable(h.alerts for h in groups[group])
            )
            for group in sorted(storms)
        }
        _load_names(desk, chain(alone, chain.from_iterable(shown.values())))
        texts = describe(sorted({t.ticket.id for t in alone})) if describe and alone else {}
        rows: list[dict[str, Any]] = []
        for told in alone:
            params: dict[str, Any] | None = None
            ticket = told.ticket
            level = told.level.value
            named_by = f"alert:{ticket.id}:{told.deadline}:{level}:{ticket.cycle}"
            for address in addresses[
                (ticket.squad_id, ticket.owner_id, ticket.led_by, told.level, told.deadline)
            ]:
                if (address.token, level) in storms:
                    continue
                if params is None:
                    text = texts.get(ticket.id) if texts else ticket.description
                    params = _alert_params(desk, told, text or "")
                rows.append(
                    outbox_row(
                        desk.now,
                        template=f"alert.{level}",
                        params=params,
                        ticket_id=ticket.id,
                        dedupe_key=f"{named_by}:{address.token}",
                        **_threaded(address.where),
                    )
                )
        window = int(desk.zone.storm_window.total_seconds())
        bucket = int(desk.now.timestamp()) // window * window
        for (token, level), named in shown.items():
            found = groups[(token, level)]
            first = min(h.first for h in found if h.first is not None)
            rows.append(
                outbox_row(
                    desk.now,
                    template=f"alert.storm.{level}",
                    params=_storm_params(desk, counts[(token, level)], named),
                    dedupe_key=f"storm:{level}:{bucket}:{first}:{token}",
                    **where[token],
                )
            )
        return rows


# --- who hears an alert ----------------------------------------------------------------------


def _addresses(desk: Desk, key: HearingKey) -> list[Address]:
    """Who hears alerts of this key, in order: the people (a leader who took the ticket on
    personally (领办) first), then the managers' chat and the webhooks when it goes wide.
    Kept per squad, owner, leader and kind of alert: a catch-up asks this thousands of times."""
    cache: dict[Any, list[Address]] = desk.session.info.setdefault("alert_addresses", {})
    if key in cache:
        return cache[key]
    squad_id, owner_id, led_by, level, deadline = key
    people, wide = _usual_recipients(desk, squad_id, owner_id, level, deadline)
    leader = desk.person(led_by)
    if leader is not None:
        people = _unique([leader, *people])
    found = [
        Address(
            str(person.id),
            {"chat_id": person.telegram_user_id, "locale": desk.locale_of(person)},
        )
        for person in people
        if person.telegram_user_id is not None
    ]
    if wide and desk.zone.managers_chat is not None:
        found.append(
            Address("chat", {"chat_id": desk.zone.managers_chat, "locale": desk.zone.language})
        )
    if wide:
        for index, hook in enumerate(desk.zone.webhooks):
            found.append(
                Address(
                    f"hook{index}",
                    {"channel": "webhook", "webhook": dict(hook), "locale": desk.zone.language},
                )
            )
    cache[key] = found
    return found


def _usual_recipients(
    desk: Desk, squad_id: int, owner_id: int | None, level: AlertKind, deadline: str
) -> tuple[Sequence[Someone], bool]:
    leads = desk.people(squad_id, (Role.LEAD,))
    if level is AlertKind.WARNING:
        owner = desk.person(owner_id)
        if owner is not None:
            return [owner], False
        return desk.people(squad_id, (Role.MEMBER, Role.LEAD)), False
    if level is AlertKind.BREACH:
        if deadline == "response":
            return leads, False
        return _unique(leads + desk.people(None, ("all",))), True
    return _unique(desk.people(None, ("top",)) + leads), True


def _unique(people: Sequence[Someone]) -> list[Someone]:
    return list({p.id: p for p in people}.values())


# --- what they are told ----------------------------------------------------------------------


def _threaded(where: dict[str, Any]) -> dict[str, Any]:
    """A message about one ticket goes under its card in a chat; a webhook has no thread."""
    return where if where.get("channel") == "webhook" else {**where, "link_role": "thread"}


def _alert_params(desk: Desk, told: Told, description: str) -> dict[str, Any]:
    ticket = told.ticket
    owner = desk.person(ticket.owner_id)
    return {
        "number": ticket.number,
        "category": category_param(ticket.category_code),
        "deadline": text_key(f"deadline.{told.deadline}"),
        "due": time_param(_aware(told.due)),
        "owner": owner.name if owner else text_key("owner.none"),
        "squad": _squad_name(desk, ticket.squad_id),
        "description": description[:200],
    }


def _storm_params(desk: Desk, count: int, shown: list[Told]) -> dict[str, Any]:
    """The digest of a storm: how many, and the oldest and most urgent tickets named."""
    hidden = count - len(shown)
    return {
        "count": count,
        "lines": lines([nested("alert.storm.line", _line_params(desk, t)) for t in shown]),
        "more": nested("alert.storm.more", {"count": hidden}) if hidden else "",
    }


def _line_params(desk: Desk, told: Told) -> dict[str, Any]:
    ticket = told.ticket
    owner = desk.person(ticket.owner_id)
    return {
        "number": ticket.number,
        "category": category_param(ticket.category_code),
        "squad": _squad_name(desk, ticket.squad_id),
        "deadline": text_key(f"deadline.{told.deadline}"),
        "due": time_param(_aware(told.due)),
        "owner": owner.name if owner else text_key("owner.none"),
    }


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _squad_name(desk: Desk, squad_id: int) -> str:
    squad = desk.session.get(Squad, squad_id)
    return squad.name if squad is not None else "-"


def _load_names(desk: Desk, named: Iterable[Told]) -> None:
    """The squads and owners the messages will name, into the session in one query each
    (kept in session.info: the identity map only keeps objects someone refers to)."""
    owners = {t.ticket.owner_id for t in named if t.ticket.owner_id is not None}
    held: list[Any] = list(desk.session.exec(select(Squad)).all())
    if owners:
        held += desk.session.exec(select(Person).where(col(Person.id).in_(sorted(owners)))).all()
    desk.session.info.setdefault("alert_names", []).extend(held)


def _recently_told(desk: Desk, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """How many alerts of each (recipient, level) were queued within the storm window before
    now: a message each, a digest its count. Read through the outbox's (state, next attempt)
    index: a row's next attempt is never before its creation."""
    since = desk.now - desk.zone.storm_window
    levels = {level for _, level in keys}
    templates = [f"alert.{lv}" for lv in levels] + [f"alert.storm.{lv}" for lv in levels]
    rows = desk.session.execute(
        select(OutboxMessage.template, OutboxMessage.dedupe_key, OutboxMessage.params).where(
            col(OutboxMessage.state).in_(("pending", "sent", "failed")),
            col(OutboxMessage.next_attempt_at) > since,
            col(OutboxMessage.created_at) > since,
            col(OutboxMessage.template).in_(templates),
        )
    ).all()
    counts: dict[tuple[str, str], int] = {}
    for template, dedupe_key, params in rows:
        token = (dedupe_key or "").rsplit(":", 1)[-1]
        level = template.rsplit(".", 1)[-1]
        if (token, level) not in keys:
            continue
        digest = template.count(".") == 2  # alert.storm.<level>, not alert.<level>
        many = json.loads(params).get("count", 1) if digest else 1
        counts[(token, level)] = counts.get((token, level), 0) + int(many)
    return counts
