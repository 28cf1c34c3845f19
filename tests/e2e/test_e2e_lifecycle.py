"""The whole loop over HTTP: an enterprise files, the squad claims in its group, they talk,
a plan is recorded, the ticket is resolved, confirmed and rated."""

from __future__ import annotations

from sqlmodel import Session, col, select

from models.ticket import Ticket, TicketEvent
from tests.e2e.builders import filed_ticket, zone_with_people
from tests.harness import Harness


async def test_filing_claim_talk_plan_resolve_rate(any_harness: Harness) -> None:
    h = any_harness
    people = await zone_with_people(h, group=True)
    ent, group = people.enterprise, people.group
    assert group is not None

    number, _ = await filed_ticket(h, text="工地停水，正在浇筑混凝土", photo=True)
    assert number.startswith("YZ-")
    ack = await h.said(ent, "已受理")
    assert "前回复" in ack["text"]

    card = await h.said(group, f"新工单 {number}")
    assert "工地停水" in card["text"]
    await h.emu.wait_for(lambda: any("photo" in m for m in h.emu.sent(group)))

    query = h.press("zhou.jun", card, "认领")
    answer = await h.answered(query)
    assert number in (answer.get("text") or "")
    claimed = await h.said(ent, "已由")
    assert "zhou.jun" not in claimed["text"] and "周军" in claimed["text"]
    await h.emu.wait_for(
        lambda: (
            "周军" in (h.emu.sent(group)[0].get("text") or "")
            or any("负责人：周军" in (m.get("text") or "") for m in h.emu.sent(group))
        )
    )

    # the member replies to the card in the group; the enterprise receives it
    h.emu.send_text(
        h.ids["zhou.jun"],
        "备用水源车已出发，预计30分钟到",
        chat_id=group,
        reply_to=card["message_id"],
    )
    got = await h.said(ent, "备用水源车已出发")
    # the enterprise replies to that message; the squad's group receives it in the thread
    h.emu.send_text(ent, "好的，我们在东门等", reply_to=got["message_id"])
    threaded = await h.said(group, "我们在东门等")
    assert threaded.get("reply_to_message", {}).get("message_id") == card["message_id"]

    h.emu.send_text(h.ids["zhou.jun"], f"/plan {number} 3d 抢修管道；接入临时水源")
    plan = await h.said(ent, "】推进计划")
    assert "抢修管道" in plan["text"]

    h.emu.send_text(h.ids["zhou.jun"], f"/resolve {number} 管道已修复，恢复供水")
    ask = await h.said(ent, "已办结")
    h.press("qian.hao", ask, "已解决")
    rate = await h.said(ent, "请为工单")
    h.press("qian.hao", rate, "★5")
    await h.said(ent, "感谢评价")
    await h.settle()

    with Session(h.engine) as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        assert ticket.state == "closed" and ticket.rating == 5
        actions = [
            e.action
            for e in session.exec(
                select(TicketEvent)
                .where(TicketEvent.ticket_id == ticket.id)
                .order_by(col(TicketEvent.id))
            ).all()
        ]
    # the photo was fetched with getFile and kept with the ticket
    from pathlib import Path

    from models.ticket import Attachment

    with Session(h.engine) as session:
        photo = session.exec(select(Attachment).where(Attachment.ticket_id == ticket.id)).one()
    await h.emu.wait_for(lambda: _archived(h, photo.id))
    with Session(h.engine) as session:
        kept = session.get(Attachment, photo.id)
        assert kept is not None and kept.local_path is not None
        assert Path(kept.local_path).read_bytes() == h.emu.file_bytes(kept.file_id or "")
        assert number in kept.local_path
    assert actions == [
        "filed",
        "claimed",
        "replied",
        "enterprise_said",
        "plan_recorded",
        "resolved",
        "confirmed",
        "rated",
    ]


def _archived(h: Harness, attachment_id: int | None) -> bool:
    from models.ticket import Attachment

    with Session(h.engine) as session:
        row = session.get(Attachment, attachment_id)
        return row is not None and row.local_path is not None
