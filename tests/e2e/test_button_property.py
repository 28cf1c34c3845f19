"""Property: a press whose callback data is forged, truncated or altered, or a real button
replayed by someone it is not for (a ticket claimed by another member, a ticket moved to
another squad, a person's own draft buttons, a member who has left the zone since), is
refused with an alert, written to the log, changes no ticket, history row, draft or
message, and reveals nothing of the enterprise's ticket. Each press goes over HTTP through
the real Application. A fixed seed in CI; SQUADBOT_FUZZ_EXAMPLES runs more."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, col, func, select

from models.org import Person
from models.plumbing import OutboxMessage
from models.ticket import ButtonAction, Draft, Ticket, TicketEvent
from models.zone.load import load_and_apply
from tests.harness import Harness, start_harness, zone_variant

EXAMPLES = int(os.environ.get("SQUADBOT_FUZZ_EXAMPLES", "40"))
SECRETS = ("东门二号井漏水", "北区配电房进水", "钱浩", "13900139101")
IN_GROUP = ("zhou.jun", "xu.hui", "liu.yang", "hu.bin", "wu.gang")  # wu.gang leaves the zone
ALONE = ("wang.fang", "shi.lei", "stranger")
URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class Refusals(logging.Handler):
    """What handlers.buttons logs, kept for the property to read."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Scene:
    h: Harness
    group: int
    cards: list[dict[str, Any]]  # the cards of the two tickets in the squad's group
    private: dict[str, dict[str, Any]]  # a bot message in each lone presser's chat
    tokens: list[str]  # real buttons, none of them for any presser


async def set_the_scene(h: Harness, tmp_path: Path) -> Scene:
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.join("shi.lei", "enterprise", project="PV01")
    await h.join("liu.yang", "lead", squad="PV")
    for key in ("zhou.jun", "xu.hui", "wu.gang"):
        await h.join(key, "member", squad="PV")
    await h.join("hu.bin", "member", squad="HV")
    await h.join("wang.fang", "manager")
    h.ids["stranger"] = await h.stranger("路人")
    h.emu.send_text(h.ids["stranger"], "/start")
    group = await h.bind_group("PV", "liu.yang", ["zhou.jun", "xu.hui", "wu.gang", "hu.bin"])
    claimed = await h.file_ticket("qian.hao", "临时停水", "东门二号井漏水")
    moved = await h.file_ticket("qian.hao", "杆线迁移", "北区配电房进水")
    cards = [await h.said(group, f"新工单 {n}") for n in (claimed, moved)]
    tokens = [h.button(card, "认领") for card in cards]
    await h.answered(h.press("zhou.jun", cards[0], "认领"))
    h.emu.send_text(h.ids["liu.yang"], f"/transfer {moved} EV 属于新能源项目")
    await h.said(h.ids["liu.yang"], "已转交")
    h.emu.send_text(h.ids["qian.hao"], "/new")
    menu = await h.said(h.ids["qian.hao"], "请选择问题类别")
    rows = menu["reply_markup"]["inline_keyboard"]
    tokens += [str(button["callback_data"]) for row in rows for button in row]
    # wu.gang leaves squad PV: the zone file is reloaded without him
    load_and_apply(
        h.engine,
        zone_variant(
            tmp_path, **{"members: [zhou.jun, xu.hui, wu.gang]": "members: [zhou.jun, xu.hui]"}
        ),
    )
    await h.settle()
    private = {key: h.emu.sent(h.ids[key])[-1] for key in ALONE}
    return Scene(h, group, cards, private, tokens)


def snapshot(h: Harness) -> tuple[Any, ...]:
    """Every row a press could change."""
    with Session(h.engine) as session:
        tickets = session.exec(select(Ticket).order_by(col(Ticket.id))).all()
        qian = session.exec(select(Person).where(Person.key == "qian.hao")).one()
        draft = session.get(Draft, qian.id)
        return (
            [(t.state, t.owner_id, t.squad_id, t.updated_at, t.first_response_at) for t in tickets],
            session.exec(select(func.count()).select_from(TicketEvent)).one(),
            session.exec(select(func.count()).select_from(OutboxMessage)).one(),
            session.exec(select(func.count()).select_from(ButtonAction)).one(),
            None if draft is None else (draft.step, draft.category_code, draft.description),
        )


@st.composite
def callback_data(draw: st.DrawFn, tokens: list[str]) -> str:
    token = draw(st.sampled_from(tokens))
    how = draw(st.sampled_from(["replayed", "truncated", "altered", "extended", "forged"]))
    if how == "replayed":
        return token
    if how == "truncated":
        return token[: draw(st.integers(min_value=0, max_value=len(token) - 1))]
    if how == "altered":
        at = draw(st.integers(min_value=0, max_value=len(token) - 1))
        other = draw(st.sampled_from([c for c in URL_SAFE if c != token[at]]))
        return token[:at] + other + token[at + 1 :]
    if how == "extended":
        return token + draw(st.text(min_size=1, max_size=6))
    return draw(st.text(min_size=0, max_size=80))


def test_forged_and_replayed_presses_are_refused_logged_and_change_nothing(
    tmp_path: Path,
) -> None:
    loop = asyncio.new_event_loop()
    h = loop.run_until_complete(start_harness(tmp_path))
    refusals = Refusals()
    buttons_log = logging.getLogger("handlers.buttons")
    level = buttons_log.level
    buttons_log.setLevel(logging.INFO)
    buttons_log.addHandler(refusals)
    try:
        scene = loop.run_until_complete(set_the_scene(h, tmp_path))
        kinds: set[str] = set()
        pressed: list[tuple[str, str]] = []

        @settings(
            max_examples=EXAMPLES,
            derandomize=EXAMPLES <= 40,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(
            presser=st.sampled_from(IN_GROUP + ALONE),
            data=callback_data(scene.tokens),
            card=st.integers(min_value=0, max_value=1),
        )
        def refused(presser: str, data: str, card: int) -> None:
            before = snapshot(h)
            logged = len(refusals.lines)
            if presser in IN_GROUP:
                chat, message = scene.group, scene.cards[card]
            else:
                chat, message = h.ids[presser], scene.private[presser]
            query = h.emu.press(h.ids[presser], chat, message["message_id"], data, strict=False)
            answer = loop.run_until_complete(h.answered(query))
            loop.run_until_complete(h.settle())
            text = str(answer["text"])
            assert answer["show_alert"] is True, (presser, data, text)
            assert not any(secret in text for secret in SECRETS), (presser, data, text)
            new_lines = refusals.lines[logged:]
            assert any("refused" in line for line in new_lines), (presser, data, new_lines)
            assert snapshot(h) == before, (presser, data)
            kinds.add(new_lines[-1].split(" ")[1])
            pressed.append((presser, data))

        refused()
        # the run met forged data and real buttons replayed by the wrong person alike
        assert {"forged", "button"} <= kinds
        assert len(pressed) >= EXAMPLES
    finally:
        buttons_log.removeHandler(refusals)
        buttons_log.setLevel(level)
        loop.run_until_complete(h.stop())
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.close()
