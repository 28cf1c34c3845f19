"""Builders for the state most end-to-end tests start from, on a running harness (the example
zone, examples/zone.yaml), so that a new test is a few lines. Each builds on the harness's own
steps (`join`, `bind_group`, `file_ticket`, `press`...), in the order a test would write them.

- `zone_with_people(h)`: the enterprise contact qian.hao of project PV01, the lead liu.yang and
  the member zhou.jun of squad PV have joined (more members with `members=`, another squad
  with `squad=`, `lead=`, `enterprise=`, `project=`); with `group=True` the squad's group is
  bound too. Returns their chat ids as `People`.
- `filed_ticket(h)`: the enterprise has filed a ticket through the whole /new conversation.
  Returns `Filed(number, ticket)`: the number from the acknowledgement and the Ticket row.
- `claimed_ticket(h)`: a filed ticket that zhou.jun has claimed from its card (in the squad's
  group if one is bound, else in his own chat) and the enterprise has been told so; every
  update is handled. Returns `Filed` with the Ticket row as it is after the claim.

None of them joins anyone on its own: call `zone_with_people` (or `join`) first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from models import filing, handling
from models.desk import Desk
from models.org import Person
from models.people import Actor, active_memberships
from models.ticket import Ticket
from models.zone.config import read_zone
from tests.harness import Harness

ENTERPRISE = "qian.hao"
PROJECT = "PV01"
SQUAD = "PV"
LEAD = "liu.yang"
MEMBER = "zhou.jun"


@dataclass(frozen=True)
class People:
    """Chat ids of the people `zone_with_people` joined (also in `h.ids` by their key)."""

    enterprise: int
    lead: int
    members: dict[str, int]
    group: int | None


class Filed(NamedTuple):
    number: str
    ticket: Ticket


async def zone_with_people(
    h: Harness,
    *,
    members: Sequence[str] = (MEMBER,),
    group: bool = False,
    squad: str = SQUAD,
    lead: str = LEAD,
    enterprise: str = ENTERPRISE,
    project: str = PROJECT,
) -> People:
    """The enterprise, the lead and the members join, in that order; then, with `group`, the
    lead binds the squad's group with every member in it."""
    ent = await h.join(enterprise, "enterprise", project=project)
    lead_id = await h.join(lead, "lead", squad=squad)
    member_ids = {key: await h.join(key, "member", squad=squad) for key in members}
    group_id = await h.bind_group(squad, lead, list(members)) if group else None
    return People(enterprise=ent, lead=lead_id, members=member_ids, group=group_id)


def ticket_row(h: Harness, number: str) -> Ticket:
    with Session(h.engine) as session:
        return session.exec(select(Ticket).where(Ticket.number == number)).one()


async def filed_ticket(
    h: Harness,
    who: str = ENTERPRISE,
    category: str = "临时停水",
    text: str = "工地停水",
    *,
    urgency: str = "一般",
    photo: bool = False,
) -> Filed:
    """`who` files a ticket through the whole /new conversation."""
    number = await h.file_ticket(who, category, text, urgency=urgency, photo=photo)
    return Filed(number, ticket_row(h, number))


async def claimed_ticket(
    h: Harness,
    who: str = ENTERPRISE,
    category: str = "临时停水",
    text: str = "工地停水",
    *,
    by: str = MEMBER,
    squad: str = SQUAD,
    urgency: str = "一般",
) -> Filed:
    """`who` files a ticket and `by` presses Claim on its card: in the squad's group if
    `bind_group` was called for `squad`, else in `by`'s own chat."""
    number = await h.file_ticket(who, category, text, urgency=urgency)
    chat = h.ids.get(f"group:{squad}", h.ids[by])
    card = await h.said(chat, f"新工单 {number}")
    await h.answered(h.press(by, card, "认领"))
    await h.said(h.ids[who], "认领处理")
    await h.settle()
    filed = Filed(number, ticket_row(h, number))
    assert filed.ticket.state == "claimed", filed.ticket.state
    return filed


def raw_message(
    user_id: int, text: str, *, update_id: int, lang: str = "zh-hans"
) -> dict[str, Any]:
    """A private text message as Telegram would deliver it, outside the emulator's chat log."""
    user = {"id": user_id, "is_bot": False, "first_name": "raw", "language_code": lang}
    message: dict[str, Any] = {
        "message_id": 900_000 + update_id % 100_000,
        "from": user,
        "chat": {"id": user_id, "type": "private", "first_name": "raw"},
        "date": 1_790_000_000,
        "text": text,
    }
    if text.startswith("/"):
        length = len(text.split()[0])
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
    return {"update_id": update_id, "message": message}


@contextmanager
def statements(h: Harness, verb: str, table: str) -> Iterator[list[str]]:
    """The statements of a kind (`verb`: SELECT, INSERT, ...) against `table` run inside."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        if sql.lstrip().upper().startswith(verb) and table in sql.lower():
            seen.append(sql)

    event.listen(h.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(h.engine, "before_cursor_execute", note)


async def until(holds: Callable[[], bool], timeout: float, failing: Callable[[], str]) -> None:
    """Look every 10 ms until `holds()` is true, for what the emulator's events do not wake
    (a lease, a refused call); fails with `failing()` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not holds():
        assert loop.time() < deadline, failing()
        await asyncio.sleep(0.01)


async def help_is_answered(h: Harness, who: str) -> None:
    """A real user's /help gets its answer: the bot is listening."""
    chat = h.ids[who]
    before = len(h.emu.sent(chat))
    h.emu.send_text(chat, "/help")
    await h.emu.wait_for(lambda: len(h.emu.sent(chat)) > before, timeout=8.0)


async def enterprise_with_help(h: Harness) -> Callable[..., Awaitable[None]]:
    """qian.hao joined as an enterprise contact of PV01, the bot settled; returns the real
    /help handler, for a stand-in to call."""
    import handlers

    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    return handlers.COMMANDS["help"]


def failing_first(
    real: Callable[..., Awaitable[None]], tries: list[int]
) -> Callable[..., Awaitable[None]]:
    """A stand-in handler that notes each update it is given in `tries`, fails the first
    and hands every later one to `real`."""

    async def fails_once(update: Any, context: Any) -> None:
        tries.append(update.update_id)
        if len(tries) == 1:
            raise ValueError("fails the first time only")
        await real(update, context)

    return fails_once


def answer_help_with(
    h: Harness, monkeypatch: pytest.MonkeyPatch, handler: Callable[..., Awaitable[None]]
) -> None:
    """/help handled by `handler` from now on (the bot's handlers registered again)."""
    import handlers

    h.service.app.handlers.clear()
    monkeypatch.setitem(handlers.COMMANDS, "help", handler)
    handlers.register(h.service.app)


def actor(session: Session, key: str) -> Actor:
    """The person of this key, as a unit of work would see them acting."""
    person = session.exec(select(Person).where(Person.key == key)).one()
    assert person.id is not None
    return Actor(person=person, memberships=active_memberships(session, person.id))


def file_many(h: Harness, who: str, count: int, *, claimed_by: str | None = None) -> list[str]:
    """`count` tickets filed by `who` in one go (the first three claimed by `claimed_by`)."""
    with Session(h.engine, expire_on_commit=False) as session:
        desk = Desk(session, h.clock.now(), read_zone(session))
        ent = actor(session, who)
        numbers = []
        for n in range(count):
            filing.start_draft(desk, ent)
            filing.choose_category(desk, ent, "water")
            filing.describe(desk, ent, f"第{n + 1}个问题")
            filing.choose_urgency(desk, ent, "normal")
            ticket = filing.submit(desk, ent)
            if claimed_by is not None and n < 3:
                handling.claim(desk, actor(session, claimed_by), ticket)
            numbers.append(ticket.number)
        session.commit()
    return numbers
