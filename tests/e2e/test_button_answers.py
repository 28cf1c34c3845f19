"""Every button press is answered, even while the Bot API fails: answerCallbackQuery is
tried again within the query's validity after a 5xx, a 429 or an answer lost on the way
back, and a press the bot gives up on (a dead letter) is still answered. Over HTTP against
the emulator, whose queries expire 15 s after the press like Telegram's."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from sqlmodel import Session, col, select

import handlers
from bot.inbox import MAX_ATTEMPTS
from models.plumbing import InboxUpdate
from tests.e2e.builders import zone_with_people
from tests.harness import Harness

STALE = "该按钮已失效"
INTERNAL = "处理您的消息时出错"

# the first answer to each press fails like this; (status, count, applied, retry_after)
FAULTS: list[tuple[int, int, bool, int | None]] = [
    (500, 1, False, None),
    (502, 1, False, None),
    (503, 1, False, None),
    (504, 1, False, None),
    (500, 1, True, None),  # Telegram took the answer, and the reply was lost
    (502, 2, False, None),
    (429, 1, False, 1),
]


def fail_answers(h: Harness, n: int) -> None:
    status, count, applied, retry_after = FAULTS[n % len(FAULTS)]
    h.emu.fail_next(
        "answerCallbackQuery", status, count=count, applied=applied, retry_after=retry_after
    )


async def test_every_press_is_answered_while_the_answers_fail(harness: Harness) -> None:
    h = harness
    people = await zone_with_people(h, group=True)
    assert people.group is not None
    member = people.members["zhou.jun"]
    numbers = [await h.file_ticket("qian.hao", "临时停水", f"工地停水 {i}") for i in range(4)]
    cards = [await h.said(people.group, f"新工单 {number}") for number in numbers]
    await h.settle()
    before = len(h.emu.callback_answers)

    presses = 0
    for n in range(24):  # presses of buttons that never were: refused, with an alert
        fail_answers(h, presses)
        presses += 1
        forged = secrets.token_urlsafe(12)
        query = h.emu.press(member, people.group, cards[0]["message_id"], forged, strict=False)
        answer = await h.answered(query, timeout=10.0)
        assert answer["show_alert"] and STALE in str(answer["text"]), n
    for number, card in zip(numbers, cards, strict=True):  # claims: done, with a toast
        fail_answers(h, presses)
        presses += 1
        answer = await h.answered(h.press("zhou.jun", card, "认领"), timeout=10.0)
        assert number in str(answer["text"])
    await h.settle()

    assert presses == 28
    answers = h.emu.callback_answers[before:]
    assert len(answers) == presses  # each once: an answer that did arrive is not sent twice
    failed = [c for c in h.emu.calls if c[0] == "answerCallbackQuery" and c[2] != 200]
    # every injected fault was met: 5xx and 429 answers, then the tries that arrived
    assert len(failed) >= presses


async def test_a_press_the_bot_gives_up_on_is_still_answered(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    people = await zone_with_people(h, group=True)
    assert people.group is not None
    number = await h.file_ticket("qian.hao", "临时停水", "工地停水")
    card = await h.said(people.group, f"新工单 {number}")
    await h.settle()

    async def broken(update: Any, context: Any) -> None:
        raise RuntimeError("a bug that fails every press")

    h.service.app.handlers.clear()
    monkeypatch.setattr(handlers.buttons, "pressed", broken)
    handlers.register(h.service.app)
    h.emu.fail_next("answerCallbackQuery", 502)
    answer = await h.answered(h.press("zhou.jun", card, "认领"), timeout=10.0)
    assert answer["show_alert"] and INTERNAL in str(answer["text"])
    await h.settle()
    with Session(h.engine) as session:
        letters = session.exec(select(InboxUpdate).where(col(InboxUpdate.dead_at).is_not(None)))
        assert [row.attempts for row in letters] == [MAX_ATTEMPTS]
