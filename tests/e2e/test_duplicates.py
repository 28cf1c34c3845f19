"""Where a duplicate message can come from. A run of people filing, claiming and replying,
and a burst of numbered messages to three chats, goes through the Bot API while it fails at
random (seeded). The only fault that makes a person see a message twice is "delivered, then
the answer lost" (a send that times out after Telegram took it): the outbox cannot tell it
from a send that never arrived, so it sends again. Each such drop on a send makes exactly
one duplicate, next to the first; every other fault (5xx, 429, a lost edit or press
answer) makes none. Messages arrive in order per chat either way."""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from bot.sandbox.records import SENDING_METHODS, FaultRate
from models.outbox import enqueue
from models.plumbing import OutboxMessage
from tests.e2e.builders import zone_with_people
from tests.harness import Harness

DROPS = [(500, True), (502, True), (504, True)]  # delivered, then the answer lost
OTHERS = [(500, False), (502, False), (503, False), (504, False), (429, False)]
PER_CHAT = 12


async def workload(h: Harness) -> dict[int, str]:
    """The whole run; returns the chats the numbered burst went to, each with its tag."""
    people = await zone_with_people(h, group=True)
    assert people.group is not None
    numbers = [await h.file_ticket("qian.hao", "临时停水", f"工地停水 {i}") for i in range(2)]
    card = await h.said(people.group, f"新工单 {numbers[0]}")
    await h.answered(h.press("zhou.jun", card, "认领"))
    h.emu.send_text(people.members["zhou.jun"], f"/reply {numbers[0]} 备用水源车已出发")
    await h.said(people.enterprise, "备用水源车已出发")
    chats = {people.enterprise: "ENT", people.lead: "LEAD", people.group: "GROUP"}
    with Session(h.engine) as session:
        for n in range(PER_CHAT):
            for chat, tag in chats.items():
                enqueue(
                    session,
                    h.clock.now(),
                    chat_id=chat,
                    template="thread.from_squad",
                    locale="zh-CN",
                    params={"number": f"YZ-{tag}", "name": "专班", "text": f"第{n:02d}条"},
                )
        session.commit()
    h.service.delivery.poke()
    await h.settle()
    return chats


def duplicates(h: Harness) -> int:
    """Messages the people saw beyond the outbox rows that were sent (edits make none)."""
    with Session(h.engine) as session:
        sent = session.exec(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                col(OutboxMessage.state) == "sent",
                col(OutboxMessage.channel) == "telegram",
                col(OutboxMessage.edit_of).is_(None),
                col(OutboxMessage.kind) != "edit",
            )
        ).one()
    return len(h.emu.sent()) - int(sent)


def in_order(h: Harness, chats: dict[int, str]) -> dict[str, list[str]]:
    """Each chat's numbered burst as the person saw it, repeats next to each other folded."""
    seen = {}
    for chat, tag in chats.items():
        numbered = [t.split("第", 1)[1][:2] for t in h.texts(chat) if f"YZ-{tag}" in t]
        seen[tag] = [n for i, n in enumerate(numbered) if i == 0 or numbered[i - 1] != n]
    return seen


def drops_on_sends(rate: FaultRate) -> int:
    return sum(
        n
        for (method, _s, applied), n in rate.injected.items()
        if applied and method in SENDING_METHODS
    )


async def test_each_lost_answer_to_a_send_makes_one_duplicate_and_nothing_else_does(
    harness: Harness,
) -> None:
    h = harness
    rate = h.emu.fail_at_random(0.15, DROPS, seed=7)
    chats = await workload(h)
    h.emu.stop_failing()
    await h.settle()

    drops = sum(rate.injected.values())
    assert drops_on_sends(rate) >= 3  # the seed makes a real run of them
    assert duplicates(h) == drops_on_sends(rate) <= drops
    expected = [f"{n:02d}" for n in range(PER_CHAT)]
    assert in_order(h, chats) == dict.fromkeys(chats.values(), expected)


async def test_every_other_fault_makes_no_duplicate(harness: Harness) -> None:
    h = harness
    rate = h.emu.fail_at_random(0.15, OTHERS, seed=7)
    chats = await workload(h)
    h.emu.stop_failing()
    await h.settle()

    assert sum(rate.injected.values()) >= 10
    assert {status for _m, status, _a in rate.injected} >= {429, 500, 502}
    assert duplicates(h) == 0
    expected = [f"{n:02d}" for n in range(PER_CHAT)]
    seen = {
        tag: [t.split("第", 1)[1][:2] for t in h.texts(c) if f"YZ-{tag}" in t]
        for c, tag in chats.items()
    }
    assert seen == dict.fromkeys(chats.values(), expected)  # each once, in order
