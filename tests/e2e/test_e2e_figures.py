"""The managers' figures over HTTP against the emulator: /stats, /ranking, /overdue and
/export for every role (a manager: the zone; a squad's lead: their squad only; a member, an
enterprise, a stranger: refused in their language), charts and the ledger arriving as
uploaded files, a paused clock and an approved extension counted as the squad intended,
and the same on PostgreSQL."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from PIL import Image
from sqlmodel import Session, col, select

from bot.reports import charts
from models.plumbing import OutboxMessage
from models.ticket import Ticket
from tests.figures_data import Book, november, sh
from tests.harness import Harness

NOW = sh(12, 5, 12)


async def people(h: Harness) -> dict[str, int]:
    return {
        "manager": await h.join("wang.fang", "manager"),
        "pv_lead": await h.join("liu.yang", "lead", squad="PV"),
        "hv_lead": await h.join("ma.lin", "lead", squad="HV"),
        "member": await h.join("zhou.jun", "member", squad="PV"),
        "enterprise": await h.join("qian.hao", "enterprise", project="PV01"),
        "stranger": await h.stranger("路人"),
    }


def photos(h: Harness, chat: int) -> list[dict[str, Any]]:
    return [m for m in h.emu.sent(chat) if "photo" in m]


def documents(h: Harness, chat: int) -> list[dict[str, Any]]:
    return [m for m in h.emu.sent(chat) if "document" in m]


def png_size(h: Harness, message: dict[str, Any]) -> tuple[int, int]:
    data = h.emu.file_bytes(message["photo"][-1]["file_id"])
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def workbook_rows(h: Harness, message: dict[str, Any]) -> list[tuple[Any, ...]]:
    data = h.emu.file_bytes(message["document"]["file_id"])
    book = load_workbook(io.BytesIO(data))
    return list(book.worksheets[0].iter_rows(values_only=True))


async def ask(h: Harness, chat: int, command: str, needle: str) -> dict[str, Any]:
    h.emu.send_text(chat, command)
    return await h.said(chat, needle, count=sum(needle in t for t in h.texts(chat)) + 1)


async def test_every_role_gets_its_figures_or_a_refusal(harness: Harness) -> None:
    h = harness
    november(Book(h.engine))
    who = await people(h)
    h.clock.set(NOW)

    # the manager: the zone, each squad in one line, and two charts
    text = (await ask(h, who["manager"], "/stats 2026-11", "全区服务数据"))["text"]
    assert "2026年11月" in text and "受理 11｜未结 5｜办结 7" in text
    assert "首次响应准时率：72.7%（8/11）" in text and "办结准时率：50.0%（5/10）" in text
    assert "中位 5分钟｜P90 15分钟" in text and "满意度：3.8 分（5 条评价）" in text
    assert "预警 3｜超时 4｜督办 1" in text
    assert "· 光伏组件项目服务专班：受理 7" in text and "· 高压电气项目服务专班：受理 4" in text
    await h.emu.wait_for(lambda: len(photos(h, who["manager"])) == 2)
    captions = [m["caption"] for m in photos(h, who["manager"])]
    assert captions == ["2026年11月 每日受理量与准时率", "2026年11月 问题类别分布"]
    assert all(png_size(h, m) == (charts.WIDTH, charts.HEIGHT) for m in photos(h, who["manager"]))

    # the lead of PV: PV only, in full
    text = (await ask(h, who["pv_lead"], "/stats 2026-11", "📊 光伏组件项目服务专班"))["text"]
    assert "受理 7｜未结 2｜办结 6" in text and "高压电气" not in text
    assert "1天内敲定推进计划：100.0%（1/1）" in text and "重办率：16.7%（1/6）" in text
    # the lead of HV: HV only
    text = (await ask(h, who["hv_lead"], "/stats 2026-11", "📊 高压电气项目服务专班"))["text"]
    assert "受理 4｜未结 3｜办结 1" in text and "光伏" not in text

    # everyone else is refused, in their language
    for role in ("member", "enterprise"):
        for command in ("/stats", "/ranking", "/overdue", "/export"):
            await ask(h, who[role], command, "只有管委会领导和专班牵头领导可以查看统计数据")
    for command in ("/stats", "/ranking", "/overdue", "/export"):
        await ask(h, who["stranger"], command, "您还没有加入本服务平台")
    await h.settle()
    for role in ("member", "enterprise", "stranger"):
        assert photos(h, who[role]) == [] and documents(h, who[role]) == []

    # /ranking: the manager sees every squad; a lead their own line and the red flag
    text = (await ask(h, who["manager"], "/ranking 2026-11", "专班排名"))["text"]
    assert "1. 光伏组件项目服务专班" in text and "🚩流动红旗" in text
    assert "未排名（工单少于 5 件" in text and "· 高压电气项目服务专班（4 件）" in text
    assert "🚩 本月流动红旗：光伏组件项目服务专班" in text
    await h.emu.wait_for(lambda: len(photos(h, who["manager"])) == 3)
    assert photos(h, who["manager"])[-1]["caption"] == "2026年11月 专班排名"
    text = (await ask(h, who["hv_lead"], "/ranking 2026-11", "专班排名"))["text"]
    assert "高压电气项目服务专班：本月工单 4 件，未参与排名" in text
    assert "1. 光伏" not in text
    text = (await ask(h, who["pv_lead"], "/ranking 2026-11", "专班排名"))["text"]
    assert "光伏组件项目服务专班：第 1 名（共 1 个专班参与排名）" in text and "新上榜" in text

    # /overdue: the zone's four for the manager, HV's two for its lead, PV's two for PV's
    text = (await ask(h, who["manager"], "/overdue", "当前超时工单"))["text"]
    assert "当前超时工单 4 件" in text
    lines = [line for line in text.splitlines() if "｜" in line]
    assert [line.split("｜")[0] for line in lines] == ["HV-0010", "HV-0012", "PV-0005", "PV-0009"]
    assert "HV-0010｜高压电气项目服务专班｜无人认领｜首次响应超时 25天2小时50分钟" in lines[0]
    assert "吴刚｜推进计划目标超时" in lines[2]
    text = (await ask(h, who["hv_lead"], "/overdue", "当前超时工单"))["text"]
    assert "当前超时工单 2 件" in text and "PV-" not in text
    text = (await ask(h, who["pv_lead"], "/overdue", "当前超时工单"))["text"]
    assert "当前超时工单 2 件" in text and "HV-" not in text

    # /export: the manager's ledger has November's 11 tickets; PV's lead gets PV's 7
    await ask(h, who["manager"], "/export 2026-11", "2026年11月 工单台账（11 件）")
    rows = workbook_rows(h, documents(h, who["manager"])[-1])
    assert rows[0][0] == "工单编号" and len(rows) == 12
    await ask(h, who["pv_lead"], "/export 2026-11", "工单台账（7 件）")
    rows = workbook_rows(h, documents(h, who["pv_lead"])[-1])
    assert {row[1] for row in rows[1:]} == {"光伏组件项目服务专班"}
    assert documents(h, who["pv_lead"])[-1]["document"]["file_name"].endswith(".xlsx")

    # what was sent, its file gone; nothing waits in the outbox
    await h.settle()
    folder = h.service.data_dir / "reports"
    assert not folder.exists() or list(folder.iterdir()) == []
    with Session(h.engine) as s:
        files = s.exec(select(OutboxMessage).where(col(OutboxMessage.local_path).is_not(None)))
        assert {row.state for row in files} == {"sent"}


async def test_english_usage_and_groups(harness: Harness) -> None:
    h = harness
    manager = await h.join("wang.fang", "manager")
    await ask(h, manager, "/lang en", "English")
    lead = await h.join("liu.yang", "lead", squad="PV")
    member = await h.join("zhou.jun", "member", squad="PV")
    group = await h.bind_group("PV", "liu.yang", ["zhou.jun"])
    await ask(h, member, "/lang en", "English")
    await ask(h, member, "/stats", "Only zone managers and squad leads can see the figures")
    text = (await ask(h, manager, "/stats today", "Zone figures"))["text"]
    assert "Filed 0 | open 0 | resolved 0" in text and "First reply on time: n/a" in text
    await h.settle()
    assert photos(h, manager) == []  # a day has no charts
    await ask(h, manager, "/stats yesterday", "Usage: /stats")
    await ask(h, manager, "/ranking 2026-13", "Usage: /ranking")
    await ask(h, manager, "/export soon", "Usage: /export")
    await ask(h, manager, "/overdue", "No ticket is past a deadline")
    text = (await ask(h, manager, "/ranking", "Squad ranking, 2026-11"))["text"]
    assert "No squad qualifies" in text
    # in the squad's group the members would read the figures: asked to go private
    h.emu.send_text(lead, "/stats", chat_id=group)
    await h.said(group, "请私聊机器人使用此功能")


async def test_a_paused_clock_and_an_extension_count_as_kept(harness: Harness) -> None:
    """Both tickets are resolved after their first two hours: one waited three hours on
    the enterprise, the other had four more hours approved. Both count as on time."""
    h = harness
    ent = await h.join("qian.hao", "enterprise", project="PV01")
    member = await h.join("zhou.jun", "member", squad="PV")
    manager = await h.join("wang.fang", "manager")
    filed = h.clock.now()
    first = await h.file_ticket("qian.hao", "临时停水", "工地停水，需要恢复供水")
    card = await h.said(member, f"新工单 {first}")
    await h.answered(h.press("zhou.jun", card, "认领"))
    h.emu.send_text(member, f"/wait {first} 请提供水表编号")
    asked = await h.said(ent, "请您补充")
    # the enterprise answers after 3.5 hours: handling resumes with its 2 hours left
    h.clock.set(filed + timedelta(hours=3, minutes=30))
    h.emu.send_text(ent, "水表编号 123456", reply_to=asked["message_id"])
    await h.said(member, "123456")

    # filed now, due in 2 hours; 4 more hours approved before that
    second = await h.file_ticket("qian.hao", "临时停水", "消防水压不足")
    card = await h.said(member, f"新工单 {second}")
    await h.answered(h.press("zhou.jun", card, "认领"))
    h.emu.send_text(member, f"/extend {second} 4h 等待自来水公司排期")
    request = await h.said(manager, f"延期申请：工单 {second}")
    await h.answered(h.press("wang.fang", request, "批准延期"))
    await h.said(member, "延期已由")

    h.clock.set(filed + timedelta(hours=5))  # 5 h after filing, 1.5 h of handling time used
    h.emu.send_text(member, f"/resolve {first} 已恢复供水")
    await h.said(ent, f"【{first}】周军 已办结")
    h.clock.set(filed + timedelta(hours=6, minutes=30))  # 3 h after the second was filed
    h.emu.send_text(member, f"/resolve {second} 已加压")
    await h.said(ent, f"【{second}】周军 已办结")
    await h.settle()
    with Session(h.engine) as s:
        done = {
            t.number: t
            for t in s.exec(select(Ticket).where(col(Ticket.number).in_([first, second])))
        }
    # measured against the deadline in force: resumed at 3.5 h with 2 h left; 2 h + 4 h
    assert done[first].resolve_due == filed + timedelta(hours=5, minutes=30)
    assert done[second].resolve_due == filed + timedelta(hours=9, minutes=30)
    text = (await ask(h, manager, "/stats", "全区服务数据"))["text"]
    assert "办结准时率：100.0%（2/2）" in text
    assert "首次响应准时率：100.0%（2/2）" in text


async def test_figures_on_either_store(any_harness: Harness) -> None:
    h = any_harness
    november(Book(h.engine))
    manager = await h.join("wang.fang", "manager")
    h.clock.set(NOW)
    text = (await ask(h, manager, "/stats 2026-11", "全区服务数据"))["text"]
    assert "受理 11｜未结 5｜办结 7" in text and "中位 5分钟｜P90 15分钟" in text
    await ask(h, manager, "/export 2026-11", "工单台账（11 件）")
    assert len(workbook_rows(h, documents(h, manager)[-1])) == 12


async def test_a_file_that_is_gone_fails_its_row_and_the_rest_flow(
    harness: Harness, tmp_path: Path
) -> None:
    """A chart deleted before it could be sent cannot come back: its row is marked failed
    with the reason, and the messages behind it are delivered."""
    from models.outbox import enqueue

    h = harness
    manager = await h.join("wang.fang", "manager")
    with Session(h.engine) as s:
        enqueue(
            s,
            h.clock.now(),
            chat_id=manager,
            template="ranking.chart",
            locale="zh-CN",
            params={"period": "2026-11"},
            kind="photo",
            local_path=str(tmp_path / "gone.png"),
        )
        enqueue(s, h.clock.now(), chat_id=manager, template="overdue.none", locale="zh-CN")
        s.commit()
    h.service.delivery.poke()
    await h.said(manager, "目前没有超时工单")
    with Session(h.engine) as s:
        row = s.exec(select(OutboxMessage).where(OutboxMessage.template == "ranking.chart")).one()
    assert row.state == "failed" and "gone.png" in (row.last_error or "")


async def test_the_monthly_ranking_goes_out_once_on_the_first(
    harness: Harness, tmp_path: Path
) -> None:
    """The calendar job's hook: each manager gets the whole ranking and its chart in their
    language, each lead their own squad's place; a second run of the month sends nothing."""
    from bot.monthly_ranking import MonthlyRanking
    from scheduler.digests import publish_monthly_ranking

    h = harness
    november(Book(h.engine))
    manager = await h.join("wang.fang", "manager")
    other = await h.join("zhao.qiang", "manager")
    await ask(h, other, "/lang en", "English")
    pv_lead = await h.join("liu.yang", "lead", squad="PV")
    hv_lead = await h.join("ma.lin", "lead", squad="HV")
    h.clock.set(sh(12, 1, 9, 0))
    hook = MonthlyRanking(tmp_path / "reports")
    month = publish_monthly_ranking(h.engine, h.clock, h.service.zone, hook)
    assert month is not None and month.month == 11
    h.service.delivery.poke()
    text = (await h.said(manager, "2026年11月 专班排名"))["text"]
    assert "1. 光伏组件项目服务专班" in text and "🚩 本月流动红旗：光伏组件项目服务专班" in text
    assert "Squad ranking, 2026-11" in (await h.said(other, "Squad ranking"))["text"]
    await h.emu.wait_for(lambda: len(photos(h, manager)) == 1 and len(photos(h, other)) == 1)
    assert png_size(h, photos(h, manager)[0]) == (charts.WIDTH, charts.HEIGHT)
    assert photos(h, other)[0]["caption"] == "Squad ranking, 2026-11"
    pv = (await h.said(pv_lead, "专班排名"))["text"]
    assert "光伏组件项目服务专班：第 1 名" in pv and "高压电气" not in pv
    hv = (await h.said(hv_lead, "专班排名"))["text"]
    assert "高压电气项目服务专班：本月工单 4 件，未参与排名" in hv
    await h.settle()
    assert photos(h, pv_lead) == [] and photos(h, hv_lead) == []
    assert list((tmp_path / "reports").iterdir()) == []  # sent, and their files gone
    before = {chat: len(h.emu.sent(chat)) for chat in (manager, other, pv_lead, hv_lead)}
    assert publish_monthly_ranking(h.engine, h.clock, h.service.zone, hook) is None
    await h.settle()
    assert {chat: len(h.emu.sent(chat)) for chat in before} == before
