"""Flood control over the emulator with the fake clock: one person sending 100 messages in
ten seconds, or pressing a button 100 times, is handled up to the limit and told once, the
outbox stays small and everyone else is answered at once; invite codes cannot be guessed
faster than five wrong ones an hour."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlmodel import Session, col, func, select

from models.plumbing import InboxUpdate, OutboxMessage
from models.throttle import FloodLimits
from tests.e2e.builders import zone_with_people
from tests.harness import Harness

LIMITS = FloodLimits()  # the defaults: SQUADBOT_FLOOD_BURST=20, SQUADBOT_FLOOD_PER_SECOND=1
BURST = LIMITS.burst
REFILL = timedelta(minutes=2)  # long enough for any bucket to be full again


def outbox_rows(h: Harness, chat_id: int, since: int) -> int:
    with Session(h.engine) as session:
        return session.exec(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.chat_id == chat_id, col(OutboxMessage.id) > since)
        ).one()


def last_outbox_id(h: Harness) -> int:
    with Session(h.engine) as session:
        return session.exec(select(func.max(OutboxMessage.id))).one() or 0


def unhandled(h: Harness) -> int:
    with Session(h.engine) as session:
        return session.exec(
            select(func.count())
            .select_from(InboxUpdate)
            .where(col(InboxUpdate.processed_at).is_(None) | col(InboxUpdate.dead_at).is_not(None))
        ).one()


async def test_a_flood_of_messages_is_handled_up_to_the_limit_and_told_once(
    any_harness: Harness,
) -> None:
    h = any_harness
    people = await zone_with_people(h)
    ent = people.enterprise
    h.service.runner.use_limits(LIMITS)
    newcomer = await h.stranger("newcomer")
    hint, notice = h.needle("hint.enterprise"), h.needle("flood.notice")
    since = last_outbox_id(h)
    for i in range(100):  # 100 messages in 10 seconds
        h.emu.send_text(ent, f"junk {i}")
        h.clock.advance(timedelta(seconds=0.1))
    started = time.perf_counter()
    h.emu.send_text(newcomer, "/help")
    await h.said(newcomer, h.needle("help.no_role"))
    help_latency = time.perf_counter() - started
    await h.settle()

    handled = sum(hint in text for text in h.texts(ent))
    rows = outbox_rows(h, ent, since)
    print(f"\n/help of another user: {help_latency * 1000:.0f} ms; outbox rows for 100: {rows}")
    assert help_latency < 1.0
    # the bucket's 20, and at most one more for each of the ten seconds the flood lasted
    assert BURST <= handled <= BURST + 10
    assert sum(notice in text for text in h.texts(ent)) == 1
    assert rows == handled + 1
    assert unhandled(h) == 0  # skipped updates are processed, not dead letters

    # after the window, served normally again, and not told a second time
    h.clock.advance(REFILL)
    h.emu.send_text(ent, "after the storm")
    await h.said(ent, hint, count=handled + 1)
    await h.settle()
    assert sum(notice in text for text in h.texts(ent)) == 1


async def test_a_hundred_presses_are_all_answered_and_handled_up_to_the_limit(
    any_harness: Harness,
) -> None:
    h = any_harness
    people = await zone_with_people(h)
    ent = people.enterprise
    h.service.runner.use_limits(LIMITS)
    h.emu.send_text(ent, "/new")
    menu = await h.said(ent, h.needle("new.ask_category"))
    queries = [h.press("qian.hao", menu, "临时停水") for _ in range(100)]
    answered = {q: await h.answered(q) for q in queries}  # every press: no spinner left
    await h.settle()

    toast = h.needle("flood.toast")
    toasts = [q for q, a in answered.items() if toast in str(a.get("text") or "")]
    assert 100 - BURST <= len(toasts) < 100  # /new took one token: 19 presses handled
    assert queries[0] not in toasts
    assert sum(h.needle("flood.notice") in text for text in h.texts(ent)) == 1
    assert len(h.texts(ent)) < 2 * BURST
    assert unhandled(h) == 0


async def test_a_flood_in_a_group_is_counted_per_user_and_told_in_private(
    harness: Harness,
) -> None:
    h = harness
    people = await zone_with_people(h, group=True)
    group = people.group
    assert group is not None
    member = people.members["zhou.jun"]
    h.service.runner.use_limits(LIMITS)
    before_group = len(h.texts(group))
    for i in range(60):
        h.emu.send_text(member, f"chatter {i}", chat_id=group)
    await h.settle()
    notice = h.needle("flood.notice")
    assert sum(notice in text for text in h.texts(member)) == 1
    assert not any(notice in text for text in h.texts(group)[before_group:])
    assert unhandled(h) == 0


async def test_guessing_invite_codes_is_refused_after_five_wrong_an_hour(
    any_harness: Harness,
) -> None:
    h = any_harness
    h.service.runner.use_limits(LIMITS)
    guesser = await h.stranger("guesser")
    for i in range(5):
        h.emu.send_text(guesser, f"/start wrongCode{i:07d}")
    await h.said(guesser, h.needle("invite.unknown"), count=5)
    code = h.invite("enterprise")  # a walk-in invite: a right code
    h.emu.send_text(guesser, f"/start {code}")
    refusal = h.needle("invite.too_many_wrong")
    await h.said(guesser, refusal)
    h.emu.send_text(guesser, f"/start {code}")
    h.emu.send_text(guesser, "/start anotherGuess0000")
    await h.settle()
    texts = h.texts(guesser)
    assert sum(refusal in text for text in texts) == 1  # told once
    assert sum(h.needle("invite.unknown") in text for text in texts) == 5
    assert not any(h.needle("start.bound.enterprise") in text for text in texts)

    h.clock.advance(timedelta(hours=1, seconds=1))
    h.emu.send_text(guesser, f"/start {code}")
    await h.said(guesser, h.needle("start.bound.enterprise"))
