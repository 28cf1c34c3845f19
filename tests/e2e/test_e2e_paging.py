"""Long lists over HTTP, a page at a time: /my gives the true count (for managers and leads
by squad and state) in one message, and ◀ ▶ rewrite that message page by page; a ticket's
long history pages the same way. Forged and other people's page buttons are refused."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session, select

from models import handling
from models.desk import Desk
from models.ticket import Ticket
from models.zone.config import read_zone
from tests.e2e.builders import actor, file_many
from tests.harness import Harness

NUMBER = re.compile(r"YZ-\d{4}-\d{4}")


def numbers_in(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def labels(message: dict[str, Any]) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b["text"] for row in markup.get("inline_keyboard", []) for b in row]


async def test_my_pages_through_every_ticket_with_the_true_count(harness: Harness) -> None:
    h = harness
    pv = file_many(h, "qian.hao", 25, claimed_by="zhou.jun")
    hv = file_many(h, "yang.fan", 22)
    manager = await h.join("wang.fang", "manager")
    lead = await h.join("liu.yang", "lead", squad="PV")
    member = await h.join("xu.hui", "member", squad="PV")
    enterprise = await h.join("yang.fan", "enterprise", project="HV01")

    h.emu.send_text(manager, "/my")
    first = await h.said(manager, "共 47 个工单（第 1/3 页）")
    text = first["text"]
    assert "高压电气项目服务专班：待认领 22" in text
    assert "光伏组件项目服务专班：待认领 22 · 处理中 3" in text
    assert text.index("光伏组件项目服务专班：") < text.index("【高压电气项目服务专班】")
    assert labels(first) == ["下一页 ▶"]
    seen = numbers_in(text)
    assert len(seen) == 20

    h.press(manager, first, "下一页")
    second = await h.said(manager, "（第 2/3 页）")
    assert second["message_id"] == first["message_id"]  # the same message, rewritten
    assert labels(second) == ["◀ 上一页", "下一页 ▶"]
    assert "待认领 22 · 处理中 3" not in second["text"]  # the counts head the first page
    seen |= numbers_in(second["text"])
    h.press(manager, second, "下一页")
    third = await h.said(manager, "（第 3/3 页）")
    assert labels(third) == ["◀ 上一页"]
    seen |= numbers_in(third["text"])
    assert seen == set(pv) | set(hv)  # every ticket, each once, over three pages
    h.press(manager, third, "上一页")
    back = await h.said(manager, "（第 2/3 页）")
    assert numbers_in(back["text"]) == numbers_in(second["text"])

    # a lead: their squad, grouped; a member and an enterprise: theirs, newest first
    h.emu.send_text(lead, "/my")
    mine = await h.said(lead, "共 25 个工单（第 1/2 页）")
    assert "光伏组件项目服务专班：待认领 22 · 处理中 3" in mine["text"]
    assert numbers_in(mine["text"]) <= set(pv)
    h.emu.send_text(member, "/my")
    theirs = await h.said(member, "共 25 个工单（第 1/2 页）")
    assert "：待认领" not in theirs["text"] and pv[-1] in theirs["text"]
    h.press(member, theirs, "下一页")
    rest = await h.said(member, "共 25 个工单（第 2/2 页）")
    assert numbers_in(rest["text"]) | numbers_in(theirs["text"]) == set(pv)
    h.emu.send_text(enterprise, "/my")
    filed_here = await h.said(enterprise, "共 22 个工单（第 1/2 页）")
    assert numbers_in(filed_here["text"]) <= set(hv)


async def test_page_buttons_are_checked_like_any_other(harness: Harness) -> None:
    h = harness
    file_many(h, "qian.hao", 21)
    manager = await h.join("wang.fang", "manager")
    lead = await h.join("liu.yang", "lead", squad="PV")
    h.emu.send_text(manager, "/my")
    first = await h.said(manager, "（第 1/2 页）")
    h.emu.send_text(lead, "/my")
    own = await h.said(lead, "（第 1/2 页）")

    forged = h.emu.press(manager, manager, first["message_id"], "not-a-token", strict=False)
    assert "该按钮已失效" in (await h.answered(forged))["text"]
    theirs = h.button(first, "下一页")  # the manager's token, pressed by the lead
    stolen = h.emu.press(lead, lead, own["message_id"], theirs, strict=False)
    answer = await h.answered(stolen)
    assert "这个按钮不是给您的" in answer["text"] and answer["show_alert"]
    await h.settle()
    assert "（第 1/2 页）" in h.texts(lead)[-1] and "（第 1/2 页）" in h.texts(manager)[-1]

    # a page is read again at each press: tickets filed since count
    file_many(h, "qian.hao", 20)
    h.press(manager, first, "下一页")
    assert "共 41 个工单（第 2/3 页）" in (await h.said(manager, "（第 2/3 页）"))["text"]


async def test_a_long_history_pages_too(harness: Harness) -> None:
    h = harness
    [number] = file_many(h, "qian.hao", 1, claimed_by="zhou.jun")
    with Session(h.engine, expire_on_commit=False) as session:
        desk = Desk(session, h.clock.now(), read_zone(session))
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        for n in range(24):
            handling.note(desk, actor(session, "zhou.jun"), ticket, f"内部进展第{n + 1}条")
        session.commit()
    member = await h.join("zhou.jun", "member", squad="PV")
    enterprise = await h.join("qian.hao", "enterprise", project="PV01")

    h.emu.send_text(member, f"/ticket {number}")
    await h.said(member, f"工单 {number}｜")
    first = await h.said(member, "办理记录（共 26 条，第 1/3 页）")
    assert "内部进展第8条" in first["text"] and "内部进展第9条" not in first["text"]
    h.press(member, first, "下一页")
    second = await h.said(member, "第 2/3 页")
    assert second["message_id"] == first["message_id"]
    assert "内部进展第9条" in second["text"] and "内部进展第18条" in second["text"]

    h.emu.send_text(enterprise, f"/ticket {number}")
    short = await h.said(enterprise, "办理记录（共 2 条）")  # notes are the squad's own
    assert not labels(short) and "内部进展" not in short["text"]
