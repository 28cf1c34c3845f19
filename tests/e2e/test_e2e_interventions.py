"""Leadership's commands over HTTP, asked by every role: /urge (a manager's supervision
notice), /lead (a lead of the ticket's squad or a manager takes it on personally) and
/transfer (a misrouted ticket moves to another squad, its deadlines running on). Whoever may
not is refused in their own language, and nothing changes."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, col, select

from models.org import Person, Squad
from models.plumbing import OutboxMessage
from models.ticket import Ticket, TicketEvent
from tests.harness import Harness

NO_ROLE = "您还没有加入本服务平台"
MANAGERS_ONLY = "只有管委会领导可以使用此命令"
LEADS_ONLY = "只有牵头领导或管委会领导可以使用此命令"
NO_SUCH_TICKET = "未找到该工单"


def ticket(h: Harness, number: str) -> Ticket:
    with Session(h.engine) as session:
        return session.exec(select(Ticket).where(Ticket.number == number)).one()


def person_id(h: Harness, key: str) -> int:
    with Session(h.engine) as session:
        found = session.exec(select(Person).where(Person.key == key)).one().id
    assert found is not None
    return found


def events(h: Harness, number: str, action: str) -> list[TicketEvent]:
    with Session(h.engine) as session:
        return list(
            session.exec(
                select(TicketEvent)
                .where(TicketEvent.ticket_id == ticket(h, number).id, TicketEvent.action == action)
                .order_by(col(TicketEvent.id))
            ).all()
        )


def card_text(h: Harness, chat: int, number: str) -> str:
    """The ticket's card in a chat, as it reads now (edits included)."""
    return next(t for t in h.texts(chat) if f"新工单 {number}" in t)


async def ask(h: Harness, chat: int, text: str, needle: str) -> str:
    """Send a command; the bot's next answer containing `needle`, in that chat."""
    before = sum(needle in t for t in h.texts(chat))
    h.emu.send_text(chat, text)
    return str((await h.said(chat, needle, count=before + 1))["text"])


async def cast(h: Harness) -> dict[str, int]:
    """Everyone who asks: a manager, the PV squad's lead and a member, the lead of another
    squad, the enterprise that filed, and someone with no role at all."""
    return {
        "manager": await h.join("wang.fang", "manager"),
        "lead": await h.join("liu.yang", "lead", squad="PV"),
        "member": await h.join("zhou.jun", "member", squad="PV"),
        "other_member": await h.join("xu.hui", "member", squad="PV"),
        "other_lead": await h.join("ma.lin", "lead", squad="HV"),
        "hv_member": await h.join("hu.bin", "member", squad="HV"),
        "enterprise": await h.join("qian.hao", "enterprise", project="PV01"),
        "stranger": await h.stranger(),
    }


async def test_urge_only_by_managers_to_the_owner_and_the_lead(harness: Harness) -> None:
    h = harness
    c = await cast(h)
    number = await h.file_ticket("qian.hao", "临时停水", "工地停水，急需恢复")
    await h.said(c["member"], f"新工单 {number}")
    refusals = {
        "stranger": NO_ROLE,
        "enterprise": MANAGERS_ONLY,
        "member": MANAGERS_ONLY,
        "lead": MANAGERS_ONLY,
        "other_lead": MANAGERS_ONLY,
    }
    for who, needle in refusals.items():
        await ask(h, c[who], f"/urge {number} 请尽快处理", needle)
    english = await h.join("alex.chen", "enterprise", project="SC01", language="en")
    await ask(h, english, f"/urge {number} hurry", "Only zone managers can use this command.")
    await ask(h, english, f"/transfer {number} HV wrong", "Only squad leads and zone managers")
    assert events(h, number, "urged") == []

    # unclaimed: the whole squad hears it (no group: each member privately), the lead too
    ack = await ask(h, c["manager"], f"/urge {number} 停水影响浇筑，今天必须恢复", "督办通知已发出")
    assert "刘洋" in ack and "周军" in ack and "徐慧" in ack
    assert "吴刚" not in ack  # a member who never joined cannot be told
    for who in ("lead", "member", "other_member"):
        notice = await h.said(c[who], "📣 督办通知")
        assert "停水影响浇筑" in notice["text"] and "王芳" in notice["text"]
    await h.settle()
    assert not any("督办" in t for t in h.texts(c["enterprise"]))
    assert not any("督办" in t for t in h.texts(c["hv_member"]))
    assert sum("📣" in t for t in h.texts(c["lead"])) == 1  # once, though lead and squad

    # claimed: the owner and the lead, not the rest of the squad
    card = await h.said(c["member"], f"新工单 {number}")
    await h.answered(h.press("zhou.jun", card, "认领"))
    await h.said(c["enterprise"], "认领处理")
    ack = await ask(h, c["manager"], f"/urge {number} 下午三点前回报", "督办通知已发出")
    assert "周军" in ack and "刘洋" in ack
    await h.said(c["member"], "下午三点前回报")
    await h.said(c["lead"], "下午三点前回报")
    await h.settle()
    assert not any("下午三点前回报" in t for t in h.texts(c["other_member"]))

    urged = events(h, number, "urged")
    assert len(urged) == 2 and urged[1].actor_id == person_id(h, "wang.fang")
    assert "下午三点前回报" in (urged[1].detail or "")
    # in the history for the squad and managers; not shown to the enterprise
    await ask(h, c["member"], f"/ticket {number}", "下午三点前回报")
    await ask(h, c["enterprise"], f"/ticket {number}", "办理记录")
    assert not any("下午三点前回报" in t for t in h.texts(c["enterprise"]))

    # a closed or unknown ticket, or no text
    await ask(h, c["manager"], "/urge YZ-0000-0000 快", NO_SUCH_TICKET)
    await ask(h, c["manager"], f"/urge {number}", "用法：/urge")


async def test_lead_by_the_squads_lead_or_a_manager_marks_the_ticket(any_harness: Harness) -> None:
    h = any_harness
    c = await cast(h)
    number = await h.file_ticket("qian.hao", "杆线迁移", "电杆挡住塔吊作业")
    card = await h.said(c["member"], f"新工单 {number}")
    refusals = {
        "stranger": NO_ROLE,
        "enterprise": LEADS_ONLY,
        "member": LEADS_ONLY,
        "other_lead": NO_SUCH_TICKET,  # a lead, but of a squad that cannot see this ticket
    }
    for who, needle in refusals.items():
        await ask(h, c[who], f"/lead {number}", needle)
    assert ticket(h, number).led_by is None and events(h, number, "led") == []

    await ask(h, c["lead"], f"/lead {number}", "您已领办工单")
    assert ticket(h, number).led_by == person_id(h, "liu.yang")
    await h.said(c["enterprise"], "已由 刘洋 领办")
    await h.said(c["member"], "🎖 刘洋 领办工单")
    # the card shows the leader and keeps its Claim button while nobody owns the ticket
    card = await h.said(c["member"], "领办领导：刘洋")
    assert f"新工单 {number}" in card["text"] and "认领" in str(card.get("reply_markup"))
    await ask(h, c["lead"], f"/lead {number}", "您已领办工单")  # twice: said so, nothing new
    await ask(h, c["manager"], f"/lead {number}", "已由 刘洋 领办")
    assert len(events(h, number, "led")) == 1

    # /my and /ticket mark it
    line = await ask(h, c["lead"], "/my", number)
    assert f"🎖{number}" in line
    summary = await ask(h, c["enterprise"], f"/ticket {number}", f"工单 {number}｜")
    assert "领办领导：刘洋" in summary

    # a claim still works, and the card keeps the leader
    await h.answered(h.press("zhou.jun", card, "认领"))
    await h.emu.wait_for(
        lambda: (
            "负责人：周军" in card_text(h, c["member"], number)
            and "领办领导：刘洋" in card_text(h, c["member"], number)
        )
    )


async def test_a_managers_lead_hears_the_breach_first(harness: Harness) -> None:
    h = harness
    chats = {
        "enterprise": await h.join("yang.fan", "enterprise", project="HV01"),
        "lead": await h.join("ma.lin", "lead", squad="HV"),
        "member": await h.join("hu.bin", "member", squad="HV"),
        "leader": await h.join("zhao.qiang", "manager"),
        "top": await h.join("wang.fang", "manager"),
    }
    number = await h.file_ticket("yang.fan", "规划许可", "规划许可证办理进度")
    filed = ticket(h, number).created_at
    await ask(h, chats["leader"], f"/lead {number}", "您已领办工单")
    await h.settle()

    h.clock.set(filed + timedelta(minutes=8))  # the reply warning: the squad, leader first
    await h.said(chats["leader"], f"预警：工单 {number}")
    h.clock.set(filed + timedelta(minutes=10))  # the reply breach: usually the lead alone
    await h.said(chats["leader"], f"超时：工单 {number}")
    await h.said(chats["lead"], f"超时：工单 {number}")
    await h.settle()
    assert not any(f"超时：工单 {number}" in t for t in h.texts(chats["top"]))
    with Session(h.engine) as session:
        for template in ("alert.warning", "alert.breach"):
            rows = session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.template == template)
                .order_by(col(OutboxMessage.id))
            ).all()
            assert rows[0].chat_id == chats["leader"], template  # queued, and sent, first


async def test_transfer_by_the_owning_lead_or_a_manager(any_harness: Harness) -> None:
    h = any_harness
    c = await cast(h)
    number = await h.file_ticket("qian.hao", "规划许可", "变电站规划许可，其实属于高压项目")
    card = await h.said(c["member"], f"新工单 {number}")
    other_card = await h.said(c["other_member"], f"新工单 {number}")  # as it was: with Claim
    await h.answered(h.press("zhou.jun", card, "认领"))
    await h.said(c["enterprise"], "认领处理")
    before = ticket(h, number)

    refusals = {
        "stranger": NO_ROLE,
        "enterprise": LEADS_ONLY,
        "member": LEADS_ONLY,
        "other_lead": NO_SUCH_TICKET,  # the lead of the squad it would go to
        "hv_member": LEADS_ONLY,
    }
    for who, needle in refusals.items():
        await ask(h, c[who], f"/transfer {number} HV 属于高压项目", needle)
    await ask(h, c["lead"], f"/transfer {number} NOPE 属于高压项目", "未找到专班「NOPE」")
    await ask(h, c["lead"], f"/transfer {number} pv 还是本专班", "无需转办")
    await ask(h, c["lead"], f"/transfer {number} HV", "用法：/transfer")
    assert ticket(h, number).squad_id == before.squad_id and events(h, number, "transferred") == []

    ack = await ask(h, c["lead"], f"/transfer {number} hv 属于高压项目", "已转交")
    assert "高压电气项目服务专班" in ack
    after = ticket(h, number)
    with Session(h.engine) as session:
        hv = session.exec(select(Squad).where(Squad.code == "HV")).one()
    # the owner is not in HV: unclaimed again; the clocks run on from filing
    assert (after.squad_id, after.owner_id, after.state) == (hv.id, None, "open")
    assert (after.response_due, after.handling_due) == (before.response_due, before.handling_due)
    assert after.created_at == before.created_at and after.cycle == before.cycle
    [moved] = events(h, number, "transferred")
    assert (moved.from_state, moved.to_state) == ("claimed", "open")
    assert moved.actor_id == person_id(h, "liu.yang") and "属于高压项目" in (moved.detail or "")

    # both squads and the enterprise are told; the old card says where it went
    await h.said(c["member"], "已由 刘洋 转交「高压电气项目服务专班」")
    await h.said(c["other_member"], "转交「高压电气项目服务专班」")
    moved_card = await h.said(c["member"], "本卡片不再更新")
    assert number in moved_card["text"] and not moved_card.get("reply_markup")
    await h.said(c["enterprise"], f"您的工单 {number} 已转交「高压电气项目服务专班」")
    new_card = await h.said(c["hv_member"], f"新工单 {number}")
    await h.said(c["hv_member"], "由「光伏组件项目服务专班」转来")
    await h.said(c["other_lead"], f"新工单 {number}")

    # the old squad can no longer act on it; the new one claims it from its card
    await ask(h, c["member"], f"/reply {number} 我们继续跟进", NO_SUCH_TICKET)
    await h.answered(h.press("hu.bin", new_card, "认领"))
    await h.said(c["enterprise"], "胡斌 认领处理")
    # the old card's Claim (a stale press of a button it no longer shows) is refused
    stale = h.button(other_card, "认领")
    chat = c["other_member"]
    answer = await h.answered(
        h.emu.press(chat, chat, other_card["message_id"], stale, strict=False)
    )
    assert answer["show_alert"]
    assert ticket(h, number).owner_id == person_id(h, "hu.bin")

    # a manager may move it on (or back); the lead of the old squad no longer may
    await ask(h, c["lead"], f"/transfer {number} PV 退回", NO_SUCH_TICKET)
    await ask(h, c["manager"], f"/transfer {number} PV 经核实仍属光伏项目", "已转交")
    assert ticket(h, number).squad_id == before.squad_id
    assert ticket(h, number).handling_due == before.handling_due
