"""Escalation over HTTP (issue 3): a ticket nobody claims warns the squad, then its lead, then
the managers, then the top manager with a formal supervision notice, each at its fake time
and not a second before; the managers' webhooks (JSON, WeCom, DingTalk, Feishu) get the
breach on a local server without holding Telegram up; and the outbox delivers everything
exactly once, in order, through 500s and 429s, and reports a user who blocked the bot.

Long because each escalation step is checked a second before and at its time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.outbox import enqueue
from models.plumbing import AlertRecord, OutboxMessage
from models.ticket import Ticket
from models.zone.load import load_and_apply
from tests.e2e.builders import claimed_ticket, zone_with_people
from tests.harness import Harness, start_harness, zone_variant

ONE_SECOND = timedelta(seconds=1)


def ticket(h: Harness, number: str) -> Ticket:
    with Session(h.engine) as session:
        return session.exec(select(Ticket).where(Ticket.number == number)).one()


def counts(h: Harness, chats: dict[str, int]) -> dict[str, int]:
    return {key: len(h.emu.sent(chat)) for key, chat in chats.items()}


def new_since(h: Harness, chats: dict[str, int], before: dict[str, int]) -> dict[str, list[str]]:
    """What each chat was told since `before`; chats told nothing are left out."""
    told = {key: h.texts(chat)[before[key] :] for key, chat in chats.items()}
    return {key: texts for key, texts in told.items() if texts}


async def nothing_until(h: Harness, moment: datetime, chats: dict[str, int]) -> None:
    """Move to a second before `moment`: nothing is due, and nobody is told anything."""
    before = counts(h, chats)
    h.clock.set(moment - ONE_SECOND)
    await asyncio.sleep(0.05)  # the timer task wakes on the move and looks
    assert h.service.timer.fire_due() == 0
    await h.settle()
    assert new_since(h, chats, before) == {}


async def exactly_at(
    h: Harness, moment: datetime, chats: dict[str, int], needle: str, told: set[str]
) -> None:
    """Move to `moment`: the timer by itself tells exactly `told` the `needle`, once each."""
    before = counts(h, chats)
    h.clock.set(moment)
    for key in sorted(told):
        await h.said(chats[key], needle)
    await h.settle()
    await asyncio.sleep(0.05)
    await h.settle()
    news = new_since(h, chats, before)
    assert set(news) == told, news
    for key, texts in news.items():
        assert len(texts) == 1 and needle in texts[0], (key, texts)


def ledger(h: Harness, number: str) -> list[tuple[str, str, datetime]]:
    with Session(h.engine) as session:
        rows = session.exec(
            select(AlertRecord)
            .where(AlertRecord.ticket_id == ticket(h, number).id)
            .order_by(col(AlertRecord.id))
        ).all()
    return [(r.deadline, r.level, r.fired_at) for r in rows]


async def test_an_unclaimed_ticket_climbs_to_the_top_manager_on_time(harness: Harness) -> None:
    h = harness
    chats = {
        "enterprise": await h.join("yang.fan", "enterprise", project="HV01"),
        "lead": await h.join("ma.lin", "lead", squad="HV"),
        "hu.bin": await h.join("hu.bin", "member", squad="HV"),
        "guo.tao": await h.join("guo.tao", "member", squad="HV"),
        "top": await h.join("wang.fang", "manager"),
        "zhao.qiang": await h.join("zhao.qiang", "manager"),
        "sun.li": await h.join("sun.li", "manager"),
        "other_lead": await h.join("liu.yang", "lead", squad="PV"),
    }
    number = await h.file_ticket("yang.fan", "规划许可", "规划许可证办理进度需要协调")
    await h.settle()
    filed = h.clock.now()
    assert ticket(h, number).created_at == filed
    squad = {"lead", "hu.bin", "guo.tao"}
    managers = {"top", "zhao.qiang", "sun.li"}

    steps = [
        (timedelta(minutes=8), "⏰ 预警：工单", squad, "首次响应时限"),
        (timedelta(minutes=10), "🔴 超时：工单", {"lead"}, "首次响应时限"),
        (timedelta(hours=1, minutes=36), "⏰ 预警：工单", squad, "办结时限"),
        (timedelta(hours=2), "🔴 超时：工单", {"lead"} | managers, "办结时限"),
        (
            timedelta(hours=3),
            "🚨 督办通知：工单",
            {"top", "lead"},
            "办结时限 11月23日 11:00 已过，至今仍未完成",
        ),
    ]
    for offset, needle, told, what in steps:
        await nothing_until(h, filed + offset, chats)
        await exactly_at(h, filed + offset, chats, f"{needle} {number}", told)
        for key in told:
            assert what in h.texts(chats[key])[-1], (key, h.texts(chats[key])[-1])

    assert [(d, lv, at - filed) for d, lv, at in ledger(h, number)] == [
        ("response", "warning", timedelta(minutes=8)),
        ("response", "breach", timedelta(minutes=10)),
        ("handling", "warning", timedelta(hours=1, minutes=36)),
        ("handling", "breach", timedelta(hours=2)),
        ("handling", "supervision", timedelta(hours=3)),
    ]
    # and then nothing more, ever, for this cycle
    await nothing_until(h, filed + timedelta(days=2), chats)
    assert ticket(h, number).next_alert_at is None


async def test_claiming_in_time_stops_the_reply_escalation(harness: Harness) -> None:
    h = harness
    chats = {
        "enterprise": await h.join("yang.fan", "enterprise", project="HV01"),
        "lead": await h.join("ma.lin", "lead", squad="HV"),
        "hu.bin": await h.join("hu.bin", "member", squad="HV"),
        "top": await h.join("wang.fang", "manager"),
    }
    number = await h.file_ticket("yang.fan", "临时停水", "工地停水，正在浇筑", urgency="紧急")
    await h.settle()
    filed = h.clock.now()  # Monday 09:00 in the zone
    ack = await h.said(chats["enterprise"], f"工单 {number} 已受理")
    assert "11月23日 09:05 前回复，11月23日 10:00 前办结" in ack["text"]
    await exactly_at(
        h, filed + timedelta(minutes=4), chats, f"预警：工单 {number}", {"lead", "hu.bin"}
    )
    card = await h.said(chats["hu.bin"], f"新工单 {number}")
    await h.answered(h.press("hu.bin", card, "认领"))
    await h.said(chats["enterprise"], "认领处理")
    await h.settle()
    # the urgent water promise: 5 minutes to reply, an hour to handle, owner warned at 48 min
    await nothing_until(h, filed + timedelta(minutes=48), chats)
    await exactly_at(h, filed + timedelta(minutes=48), chats, f"预警：工单 {number}", {"hu.bin"})
    await nothing_until(h, filed + timedelta(hours=1), chats)
    await exactly_at(h, filed + timedelta(hours=1), chats, f"超时：工单 {number}", {"lead", "top"})
    h.emu.send_text(chats["enterprise"], "/my")
    line = await h.said(chats["enterprise"], f"{number}｜")
    assert "下个时限 11月23日 10:00" in line["text"]


# --- webhooks ------------------------------------------------------------------------------


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Robots:
    """One local HTTP server on 127.0.0.1 standing in for four robots, one per path. Each
    path answers its scripted statuses first, then 200 with its success body; while `gate`
    is set for a path, that path's next answer waits for the test to open it."""

    port: int = 0
    script: dict[str, list[int]] = field(default_factory=dict)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    received: dict[str, list[Request]] = field(default_factory=dict)
    answered: dict[str, list[int]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    SUCCESS: ClassVar[dict[str, bytes]] = {
        "/json": b"{}",
        "/wecom": b'{"errcode":0,"errmsg":"ok"}',
        "/dingtalk": b'{"errcode":0,"errmsg":"ok"}',
        "/feishu": b'{"code":0,"msg":"success"}',
    }

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def got(self, path: str) -> list[Request]:
        return self.received.get(path, [])

    def posted(self, path: str, count: int) -> Callable[[], bool]:
        return lambda: len(self.got(path)) == count

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            parts = urlsplit(request_line.split()[1])
            self.received.setdefault(parts.path, []).append(
                Request(parts.path, parse_qs(parts.query), headers, body)
            )
            gate = self.gates.get(parts.path)
            if gate is not None:
                await asyncio.wait_for(gate.wait(), 20)
            queue = self.script.get(parts.path, [])
            status = queue.pop(0) if queue else 200
            reply = self.SUCCESS.get(parts.path, b"{}") if status == 200 else b"{}"
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(reply)}\r\nConnection: close\r\n\r\n".encode()
                + reply
            )
            await writer.drain()
            self.answered.setdefault(parts.path, []).append(status)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)


@pytest.fixture
async def robots() -> AsyncIterator[Robots]:
    robots = Robots()
    server = await asyncio.start_server(robots.handle, "127.0.0.1", 0)
    robots.port = server.sockets[0].getsockname()[1]
    try:
        yield robots
    finally:
        for gate in robots.gates.values():
            gate.set()
        server.close()
        for task in list(robots.tasks):
            task.cancel()
        await asyncio.gather(*robots.tasks, return_exceptions=True)
        await server.wait_closed()


SECRET = "zone-hook-secret-不外传"
MANAGERS_GROUP = -1009000000001


def sign_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def check_signed(request: Request) -> None:
    """Each robot's own signature, made with the secret from the environment."""
    if request.path == "/json":
        stamp = request.headers["x-squadbot-timestamp"]
        digest = hmac.new(
            SECRET.encode(), f"{stamp}.".encode() + request.body, hashlib.sha256
        ).hexdigest()
        assert request.headers["x-squadbot-signature"] == f"sha256={digest}"
    elif request.path == "/dingtalk":
        stamp = request.query["timestamp"][0]
        expected = sign_b64(SECRET.encode(), f"{stamp}\n{SECRET}".encode())
        assert unquote(request.query["sign"][0]) in (expected, unquote(expected))
    elif request.path == "/feishu":
        payload = request.json()
        assert payload["sign"] == sign_b64(f"{payload['timestamp']}\n{SECRET}".encode(), b"")


def text_of(request: Request) -> str:
    payload = request.json()
    if request.path == "/json":
        return str(payload["title"]) + "\n" + str(payload["text"])
    if request.path == "/wecom":
        return str(payload["markdown"]["content"])
    if request.path == "/dingtalk":
        return str(payload["markdown"]["text"])
    return str(payload["content"]["text"])


async def test_breaches_reach_the_zone_webhooks_and_a_failing_one_holds_nothing_up(
    tmp_path: Path, robots: Robots, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQUADBOT_TEST_HOOK_SECRET", SECRET)
    hooks = "\n".join(
        f'    - {{kind: {kind}, url: "{robots.url("/" + kind)}?key=k-{kind}"{secret}}}'
        for kind, secret in (
            ("json", ", secret_env: SQUADBOT_TEST_HOOK_SECRET"),
            ("wecom", ""),
            ("dingtalk", ", secret_env: SQUADBOT_TEST_HOOK_SECRET"),
            ("feishu", ", secret_env: SQUADBOT_TEST_HOOK_SECRET"),
        )
    )
    variant = zone_variant(
        tmp_path,
        **{
            "  webhooks: []\n": f"  webhooks:\n{hooks}\n",
            "  managers_chat: null": f"  managers_chat: {MANAGERS_GROUP}",
        },
    )

    def configure(engine: Engine) -> None:
        load_and_apply(engine, variant)

    h = await start_harness(tmp_path, configure=configure)
    try:
        chats = {
            "enterprise": await h.join("yang.fan", "enterprise", project="HV01"),
            "lead": await h.join("ma.lin", "lead", squad="HV"),
            "hu.bin": await h.join("hu.bin", "member", squad="HV"),
            "top": await h.join("wang.fang", "manager"),
            "zhao.qiang": await h.join("zhao.qiang", "manager"),
        }
        h.emu.add_group(MANAGERS_GROUP, "管委会督办群", [chats["top"], chats["zhao.qiang"]])
        chats["managers_group"] = MANAGERS_GROUP
        number = await h.file_ticket("yang.fan", "杆线迁移", "电杆挡住塔吊作业，需要迁移")
        filed = h.clock.now()

        # a missed first reply is the lead's matter: no webhook hears of it
        h.clock.set(filed + timedelta(minutes=10))
        await h.said(chats["lead"], f"超时：工单 {number}")
        await h.settle()
        assert robots.received == {}

        # the JSON receiver hangs on its first call and then fails with a 500
        robots.gates["/json"] = asyncio.Event()
        robots.script["/json"] = [500]
        h.clock.set(filed + timedelta(hours=2))
        await h.emu.wait_for(robots.posted("/json", 1), recheck=0.05)
        for key in ("lead", "top", "zhao.qiang", "managers_group"):
            await h.said(chats[key], f"超时：工单 {number}")  # while the hook still hangs
        for path in ("/wecom", "/dingtalk", "/feishu"):
            await h.emu.wait_for(robots.posted(path, 1), recheck=0.05)
        assert robots.answered.get("/json") is None
        robots.gates.pop("/json").set()
        await h.emu.wait_for(lambda: robots.answered.get("/json") == [500, 200], recheck=0.05)

        h.clock.set(filed + timedelta(hours=3))
        await h.said(chats["top"], f"督办通知：工单 {number}")
        await h.said(chats["managers_group"], f"督办通知：工单 {number}")
        for path in ("/json", "/wecom", "/dingtalk", "/feishu"):
            want = 3 if path == "/json" else 2
            await h.emu.wait_for(robots.posted(path, want), recheck=0.05)
        await h.settle()
        await asyncio.sleep(0.3)  # long enough for a wrongly repeated post to show up
    finally:
        await h.stop()

    for path in ("/json", "/wecom", "/dingtalk", "/feishu"):
        got = robots.got(path)
        for request in got:
            check_signed(request)
            assert request.query["key"] == [f"k-{path.strip('/')}"]
            assert number in text_of(request)
        assert "超时" in text_of(got[0]) and "督办" in text_of(got[-1])
        assert robots.answered[path][-2:] == [200, 200]
    # the retried JSON post is the same alert, levels in order
    levels = [r.json()["level"] for r in robots.got("/json")]
    assert levels == ["breach", "breach", "supervision"]
    with Session(h.engine) as session:
        hook_rows = session.exec(
            select(OutboxMessage).where(OutboxMessage.channel == "webhook")
        ).all()
    assert len(hook_rows) == 8 and {r.state for r in hook_rows} == {"sent"}


# --- the outbox under faults ---------------------------------------------------------------


async def test_every_message_arrives_once_and_in_order_through_500s_and_429s(
    harness: Harness,
) -> None:
    h = harness
    people = {
        "qian.hao": await h.join("qian.hao", "enterprise", project="PV01"),
        "zhou.jun": await h.join("zhou.jun", "member", squad="PV"),
        "liu.yang": await h.join("liu.yang", "lead", squad="PV"),
    }
    await h.settle()
    before = {key: len(h.emu.sent(chat)) for key, chat in people.items()}
    stats = dict(h.emu.stats)
    for status, retry_after in ((500, None), (429, 1), (502, None), (429, 1), (503, None)):
        h.emu.fail_next("sendMessage", status, retry_after=retry_after)
    h.emu.fail_next("sendMessage", 429, retry_after=1, count=2)

    per_chat = 8
    with Session(h.engine) as session:
        for n in range(per_chat):
            for key, chat in people.items():
                enqueue(
                    session,
                    h.clock.now(),
                    chat_id=chat,
                    template="thread.from_squad",
                    locale="zh-CN",
                    params={"number": f"YZ-{key}", "name": "专班", "text": f"第{n:02d}条"},
                )
        session.commit()
    h.service.delivery.poke()
    await h.settle()

    for key, chat in people.items():
        texts = h.texts(chat)[before[key] :]
        numbered = [t.split("第", 1)[1][:2] for t in texts if f"YZ-{key}" in t]
        assert numbered == [f"{n:02d}" for n in range(per_chat)], (key, texts)
    assert h.emu.stats["http_429"] - stats["http_429"] == 4
    assert h.emu.stats["http_5xx"] - stats["http_5xx"] == 3
    with Session(h.engine) as session:
        states = session.exec(select(OutboxMessage.state)).all()
    assert set(states) == {"sent"}


async def test_a_user_who_blocked_the_bot_is_reported_to_the_lead(harness: Harness) -> None:
    h = harness
    people = await zone_with_people(h)
    ent, lead, member = people.enterprise, people.lead, people.members["zhou.jun"]
    number, _ = await claimed_ticket(h, category="施工进场", text="施工进场需要协调临时道路")

    h.emu.block(ent)
    h.emu.send_text(member, f"/reply {number} 临时道路明天上午开通")
    report = await h.said(lead, f"工单 {number} 的消息无法送达")
    assert "钱浩" in report["text"]
    h.emu.send_text(member, f"/reply {number} 请查收道路开通通知")
    await h.said(lead, f"工单 {number} 的消息无法送达", count=2)
    await h.settle()

    with Session(h.engine) as session:
        rows = session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.chat_id == ent, OutboxMessage.template == "thread.from_squad")
            .order_by(col(OutboxMessage.id))
        ).all()
    assert [r.state for r in rows] == ["failed", "failed"]
    assert all("blocked" in (r.last_error or "") for r in rows)
    # a permanent failure is not retried: one 403 per message
    refused = [c for c in h.emu.calls if c[2] == 403 and c[1].get("chat_id") in (ent, str(ent))]
    assert len(refused) == 2
    # the member's own chat goes on as usual
    assert sum(f"已发送给工单 {number} 的企业" in t for t in h.texts(member)) == 2


async def test_a_webhook_that_refuses_for_good_is_reported_to_the_lead(
    tmp_path: Path, robots: Robots
) -> None:
    robots.script["/wecom"] = [400]
    hook = f'    - {{kind: wecom, url: "{robots.url("/wecom")}"}}'
    variant = zone_variant(tmp_path, **{"  webhooks: []\n": f"  webhooks:\n{hook}\n"})

    def configure(engine: Engine) -> None:
        load_and_apply(engine, variant)

    h = await start_harness(tmp_path, configure=configure)
    try:
        await h.join("yang.fan", "enterprise", project="HV01")
        lead = await h.join("ma.lin", "lead", squad="HV")
        top = await h.join("wang.fang", "manager")
        number = await h.file_ticket("yang.fan", "土地上市", "土地挂牌时间需要确认")
        filed = h.clock.now()
        h.clock.set(filed + timedelta(hours=2))
        await h.said(top, f"超时：工单 {number}")
        report = await h.said(lead, f"工单 {number} 的消息无法送达")
        await h.settle()
        await asyncio.sleep(0.3)
    finally:
        await h.stop()
    assert "企业微信机器人" in report["text"] and "HTTP 400" in report["text"]
    assert robots.answered["/wecom"] == [400]  # refused for good: not tried again
    with Session(h.engine) as session:
        row = session.exec(select(OutboxMessage).where(OutboxMessage.channel == "webhook")).one()
    assert row.state == "failed"


# --- alert storms ---------------------------------------------------------------------------


async def test_a_storm_reaches_each_webhook_as_one_post_per_level(
    tmp_path: Path, robots: Robots, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQUADBOT_TEST_HOOK_SECRET", SECRET)
    hooks = "\n".join(
        f'    - {{kind: {kind}, url: "{robots.url("/" + kind)}?key=k-{kind}"{secret}}}'
        for kind, secret in (
            ("json", ", secret_env: SQUADBOT_TEST_HOOK_SECRET"),
            ("wecom", ""),
            ("feishu", ", secret_env: SQUADBOT_TEST_HOOK_SECRET"),
        )
    )
    variant = zone_variant(
        tmp_path,
        **{
            "  webhooks: []\n": f"  webhooks:\n{hooks}\n",
            "  managers_chat: null": f"  managers_chat: {MANAGERS_GROUP}",
            "managers:\n": "alerts: {storm_threshold: 5, storm_window: 2m}\nmanagers:\n",
        },
    )

    def configure(engine: Engine) -> None:
        load_and_apply(engine, variant)

    h = await start_harness(tmp_path, configure=configure)
    try:
        await h.join("yang.fan", "enterprise", project="HV01")
        lead = await h.join("ma.lin", "lead", squad="HV")
        top = await h.join("wang.fang", "manager")
        h.emu.add_group(MANAGERS_GROUP, "管委会督办群", [top])
        filed = h.clock.now()
        numbers = []
        for i in range(8):
            h.clock.set(filed + timedelta(seconds=i))
            numbers.append(await h.file_ticket("yang.fan", "杆线迁移", f"电杆挡路 {i}"))
        # the bot was busy elsewhere: every handling breach falls due at once
        h.clock.set(filed + timedelta(hours=2, minutes=1))
        for path in ("/json", "/wecom", "/feishu"):
            await h.emu.wait_for(robots.posted(path, 1), recheck=0.05)
        await h.said(lead, "集中超时")
        await h.said(top, "集中超时")
        await h.said(MANAGERS_GROUP, "集中超时")
        h.clock.set(filed + timedelta(hours=3, minutes=1))
        for path in ("/json", "/wecom", "/feishu"):
            await h.emu.wait_for(robots.posted(path, 2), recheck=0.05)
        await h.said(top, "集中督办通知")
        await h.settle()
        await asyncio.sleep(0.3)  # long enough for a wrongly repeated post to show up
    finally:
        await h.stop()

    for path in ("/json", "/wecom", "/feishu"):
        got = robots.got(path)
        assert len(got) == 2, path
        for request in got:
            check_signed(request)
        first, second = (text_of(r) for r in got)
        assert "集中超时" in first and "集中督办" in second
        assert numbers[0] in first and numbers[-1] in first
        assert "{" not in first + second
    assert [r.json()["level"] for r in robots.got("/json")] == ["breach", "supervision"]
    assert [r.json()["ticket"] for r in robots.got("/json")] == [None, None]
    # told once, but the ledger keeps every ticket's breach and supervision
    with Session(h.engine) as session:
        levels = session.exec(
            select(AlertRecord.level, func.count()).group_by(AlertRecord.level)
        ).all()
    assert dict(levels)["breach"] >= 8 and dict(levels)["supervision"] == 8
    assert sum(1 for text in h.texts(lead) if "集中超时" in text) == 1
