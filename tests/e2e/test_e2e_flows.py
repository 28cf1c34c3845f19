"""The remaining flows over HTTP, from several people's chats: one-window intake with private
cards, photos both ways, internal notes, looking up, languages, reopening, rework, auto-close
and a Bot API server that refuses cosmetic calls."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from bot.application import announce_commands, build_application
from bot.sandbox import BotApiEmulator
from models.ticket import Ticket
from tests.harness import Harness


def ticket(h: Harness, number: str) -> Ticket:
    with Session(h.engine) as session:
        return session.exec(select(Ticket).where(Ticket.number == number)).one()


async def test_no_project_goes_to_the_intake_squad_privately(harness: Harness) -> None:
    h = harness
    await h.join("zhang.wei", "member", squad="WINDOW")
    await h.join("chen.jing", "member", squad="WINDOW")
    newcomer = await h.stranger("赵总")
    h.emu.send_text(newcomer, f"/start {h.invite('enterprise')}")
    await h.said(newcomer, "企业联系人")
    h.ids["newcomer"] = newcomer
    number = await h.file_ticket("newcomer", "用人用工", "招工遇到困难，需要对接人社部门")
    assert ticket(h, number).squad_id != ticket(h, number).project_id  # routed, no project
    card_a = await h.said(h.ids["zhang.wei"], f"新工单 {number}")
    card_b = await h.said(h.ids["chen.jing"], f"新工单 {number}")
    assert "一窗通办" in card_a["text"]
    await h.answered(h.press("zhang.wei", card_a, "认领"))
    # the other member's copy loses its button; pressing the old one names the owner
    answer = await h.answered(h.press("chen.jing", card_b, "认领", stale=True))
    assert "张伟" in answer["text"] and answer["show_alert"]
    await h.emu.wait_for(
        lambda: (
            not h.emu.sent(h.ids["chen.jing"])[-1].get("reply_markup")
            or "负责人：张伟" in (h.emu.sent(h.ids["chen.jing"])[-1].get("text") or "")
        )
    )
    assert ticket(h, number).owner_id is not None


async def test_photos_both_ways_notes_stay_internal(harness: Harness) -> None:
    h = harness
    ent = await h.join("yang.fan", "enterprise", project="HV01")
    member = await h.join("hu.bin", "member", squad="HV")
    number = await h.file_ticket("yang.fan", "施工许可", "施工许可证审批进度咨询")
    card = await h.said(member, f"新工单 {number}")
    await h.answered(h.press("hu.bin", card, "认领"))
    await h.said(ent, "认领处理")

    h.emu.send_photo(member, caption="请看审批系统截图", reply_to=card["message_id"])
    await h.emu.wait_for(lambda: any("photo" in m for m in h.emu.sent(ent)))
    photo = next(m for m in h.emu.sent(ent) if "photo" in m)
    assert "请看审批系统截图" in photo["caption"]

    h.emu.send_photo(ent, caption="这是我们的材料", reply_to=photo["message_id"])
    await h.emu.wait_for(
        lambda: any("这是我们的材料" in (m.get("caption") or "") for m in h.emu.sent(member))
    )

    h.emu.send_text(member, f"/note {number} 需要和住建局再确认一次，不要告诉企业")
    await h.said(member, "内部备注已记录")
    await h.settle()
    assert not any("不要告诉企业" in t for t in h.texts(ent))

    h.emu.send_text(ent, f"/ticket {number}")
    await h.said(ent, f"工单 {number}｜")
    await h.settle()
    assert not any("不要告诉企业" in t for t in h.texts(ent))
    h.emu.send_text(member, f"/ticket {number}")
    await h.said(member, "不要告诉企业")


async def test_my_help_and_language(harness: Harness) -> None:
    h = harness
    ent = await h.join("gao.ning", "enterprise", project="EV01")
    member = await h.join("lin.feng", "member", squad="EV")
    number = await h.file_ticket("gao.ning", "施工进场", "施工进场手续咨询")
    h.emu.send_text(ent, "/my")
    line = await h.said(ent, f"{number}｜")
    assert "待认领" in line["text"]
    h.emu.send_text(member, "/my")
    await h.said(member, f"{number}｜")
    h.emu.send_text(member, "/help")
    assert "认领" in (await h.said(member, "专班成员可以"))["text"]
    h.emu.send_text(ent, "/help")
    assert "/new" in (await h.said(ent, "企业联系人可以"))["text"]

    h.emu.send_text(ent, "/lang")
    await h.said(ent, "English")
    h.emu.send_text(ent, "/my")
    english = await h.said(ent, f"{number} |")
    assert "unclaimed" in english["text"].lower() or "open" in english["text"].lower()
    h.emu.send_text(ent, "/lang")
    await h.said(ent, "简体中文")


async def test_not_fixed_reopens_and_poor_rating_sends_back(harness: Harness) -> None:
    h = harness
    ent = await h.join("song.jia", "enterprise", project="H201")
    member = await h.join("tang.lei", "member", squad="H2")
    number = await h.file_ticket("song.jia", "能耗指标", "能耗指标申报需要指导")
    card = await h.said(member, f"新工单 {number}")
    await h.answered(h.press("tang.lei", card, "认领"))
    h.emu.send_text(member, f"/resolve {number} 已发送申报指南")
    ask = await h.said(ent, "已办结")
    await h.answered(h.press("song.jia", ask, "未解决"))
    await h.said(member, "企业反馈未解决")
    assert ticket(h, number).state == "claimed"
    assert ticket(h, number).cycle == 1

    h.emu.send_text(member, f"/resolve {number} 已上门指导并提交申报")
    ask = await h.said(ent, "已办结", count=2)
    await h.answered(h.press("song.jia", ask, "已解决"))
    rate = await h.said(ent, "请为工单")
    await h.answered(h.press("song.jia", rate, "★2"))
    await h.said(ent, "退回专班重办")
    await h.said(member, "满意度低")
    t = ticket(h, number)
    assert t.state == "claimed" and t.cycle == 2 and t.handling_due is not None
    # the old buttons are stale now
    answer = await h.answered(h.press("song.jia", rate, "★5"))
    assert answer["show_alert"]
    assert ticket(h, number).rating == 2


async def test_unconfirmed_resolution_closes_itself(harness: Harness) -> None:
    h = harness
    ent = await h.join("fang.yi", "enterprise", project="ES01")
    member = await h.join("deng.chao", "member", squad="ESS")
    number = await h.file_ticket("fang.yi", "融资", "项目贷款对接")
    card = await h.said(member, f"新工单 {number}")
    await h.answered(h.press("deng.chao", card, "认领"))
    h.emu.send_text(member, f"/resolve {number} 已对接三家银行")
    await h.said(ent, "已办结")
    h.clock.advance(timedelta(days=2, hours=23))
    await h.settle()
    assert ticket(h, number).state == "resolved"
    h.clock.advance(timedelta(hours=1, minutes=1))
    await h.said(ent, "未确认，已自动关闭")
    assert ticket(h, number).state == "closed"


async def test_cosmetic_calls_that_fail_are_not_fatal() -> None:
    async with BotApiEmulator() as emu:
        emu.fail_next("setMyCommands", 500, "Internal Server Error", count=5)
        app = build_application(
            emu.token, base_url=f"{emu.url}/bot", base_file_url=f"{emu.url}/file/bot"
        )
        await app.initialize()
        try:
            await announce_commands(app, "zh-CN")
        finally:
            await app.shutdown()
        assert any(call[0].lower() == "setmycommands" and call[2] == 500 for call in emu.calls)


async def test_an_edited_message_is_not_sent_twice(harness: Harness) -> None:
    h = harness
    ent = await h.join("wei.dong", "enterprise", project="H201")
    member = await h.join("han.xue", "member", squad="H2")
    number = await h.file_ticket("wei.dong", "其他", "宿舍配套咨询")
    card = await h.said(member, f"新工单 {number}")
    await h.answered(h.press("han.xue", card, "认领"))
    claimed = await h.said(ent, "认领处理")
    sent = h.emu.send_text(ent, "需要50间宿舍", reply_to=claimed["message_id"])
    await h.said(member, "需要50间宿舍")
    h.emu.edit_text_by_user(ent, ent, sent["message_id"], "需要80间宿舍")
    await h.said(ent, "不会重新发送")
    await h.settle()
    assert not any("80间" in t for t in h.texts(member))
