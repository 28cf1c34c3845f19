"""The sandbox: squadbot against the built-in Bot API emulator on 127.0.0.1, with the example
zone, driven by a script of simulated people. `make run` without a token shows it; the
end-to-end tests drive the same session object."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.application import ZoneCache, build_application
from bot.i18n import t
from bot.outbox import Limits
from bot.sandbox.emulator import BotApiEmulator
from bot.service import Service
from models.clock import FakeClock
from models.invites import create_invite
from models.org import Person
from models.plumbing import InboxUpdate, OutboxMessage


@dataclass
class ZoneSession:
    emu: BotApiEmulator
    engine: Engine
    clock: FakeClock
    service: Service
    ids: dict[str, int] = field(default_factory=dict)
    _next_id: Iterator[int] = field(default_factory=lambda: itertools.count(5001))
    marks: list[tuple[int, str]] = field(default_factory=list)

    def mark(self, label: str) -> None:
        """A heading in the printed transcript, before whatever is said next."""
        self.marks.append((len(self.emu.transcript()), label))

    # --- people ---------------------------------------------------------------------------
    def invite(
        self,
        role: str,
        *,
        squad: str | None = None,
        project: str | None = None,
        person: str | None = None,
    ) -> str:
        with Session(self.engine) as session:
            invite = create_invite(
                session,
                self.clock.now(),
                role=role,
                ttl=self.service.zone(session).invite_ttl,
                squad_code=squad,
                project_code=project,
                person_key=person,
            )
            session.commit()
            return invite.code

    async def join(
        self,
        key: str,
        role: str,
        *,
        squad: str | None = None,
        project: str | None = None,
        language: str = "zh-hans",
    ) -> int:
        """The zone person `key` opens the invite link and becomes reachable."""
        user_id = next(self._next_id)
        with Session(self.engine) as session:
            person = session.exec(select(Person).where(Person.key == key)).first()
        self.emu.add_user(user_id, person.name if person else key, language_code=language)
        code = self.invite(role, squad=squad, project=project, person=key)
        before = len(self.emu.sent(user_id))
        self.emu.send_text(user_id, f"/start {code}")
        await self.emu.wait_for(lambda: len(self.emu.sent(user_id)) >= before + 2)
        self.ids[key] = user_id
        return user_id

    async def stranger(self, name: str = "stranger") -> int:
        user_id = next(self._next_id)
        self.emu.add_user(user_id, name)
        return user_id

    async def bind_group(self, squad: str, lead: str, members: list[str]) -> int:
        chat_id = -1000000000000 - len([k for k in self.ids if k.startswith("group:")]) - 1
        self.emu.add_group(chat_id, f"{squad} 专班群", [self.ids[k] for k in [lead, *members]])
        code = self.invite("group", squad=squad)
        self.emu.send_text(self.ids[lead], f"/bind {code}", chat_id=chat_id)
        await self.said(chat_id, "专班群")
        self.ids[f"group:{squad}"] = chat_id
        return chat_id

    # --- looking at chats -----------------------------------------------------------------
    def texts(self, chat_id: int) -> list[str]:
        return [m.get("text") or m.get("caption") or "" for m in self.emu.sent(chat_id)]

    async def said(
        self, chat_id: int, needle: str, *, count: int = 1, timeout: float = 8.0
    ) -> dict[str, Any]:
        """Wait until the bot has said `needle` in the chat (count times); the last such."""

        def found() -> list[dict[str, Any]]:
            return [
                m
                for m in self.emu.sent(chat_id)
                if needle in (m.get("text") or m.get("caption") or "")
            ]

        await self.emu.wait_for(lambda: len(found()) >= count, timeout=timeout)
        return found()[-1]

    def button(self, message: dict[str, Any], label: str) -> str:
        markup = message.get("reply_markup") or {}
        for row in markup.get("inline_keyboard", []):
            for button in row:
                if label in button["text"]:
                    return str(button["callback_data"])
        raise AssertionError(f"no button {label!r} in {markup}")

    def press(self, user: str | int, message: dict[str, Any], label: str) -> str:
        user_id = self.ids[user] if isinstance(user, str) else user
        data = self.button(message, label)
        return self.emu.press(user_id, message["chat"]["id"], message["message_id"], data)

    async def answered(self, query_id: str, timeout: float = 8.0) -> dict[str, Any]:
        def answer() -> dict[str, Any] | None:
            return next(
                (a for a in self.emu.callback_answers if a.get("query_id") == query_id), None
            )

        await self.emu.wait_for(lambda: answer() is not None, timeout=timeout)
        result = answer()
        assert result is not None
        return result

    async def settle(self) -> None:
        """Wait until every update is handled and every queued message is sent."""

        def idle() -> bool:
            with Session(self.engine) as session:
                unhandled = session.exec(
                    select(InboxUpdate)
                    .where(col(InboxUpdate.processed_at).is_(None))
                    .where(col(InboxUpdate.dead_at).is_(None))
                ).first()
                unsent = session.exec(
                    select(OutboxMessage).where(OutboxMessage.state == "pending")
                ).first()
            return self.emu.pending_updates() == 0 and unhandled is None and unsent is None

        await self.emu.wait_for(idle, timeout=10.0, recheck=0.02)

    async def file_ticket(
        self, who: str, category: str, text: str, *, urgency: str = "一般", photo: bool = False
    ) -> str:
        """The whole /new conversation; returns the ticket number from the acknowledgement."""
        chat = self.ids[who]
        self.emu.send_text(chat, "/new")
        menu = await self.said(
            chat, "请选择问题类别", count=self._count(chat, "请选择问题类别") + 1
        )
        self.press(who, menu, category)
        await self.said(chat, "请用文字描述问题", count=self._count(chat, "请用文字描述问题") + 1)
        if photo:
            self.emu.send_photo(chat)
            await self.said(chat, "照片已收到", count=self._count(chat, "照片已收到") + 1)
        self.emu.send_text(chat, text)
        ask = await self.said(chat, "请选择紧急程度", count=self._count(chat, "请选择紧急程度") + 1)
        self.press(who, ask, urgency)
        confirm = await self.said(chat, "请确认", count=self._count(chat, "请确认") + 1)
        self.press(who, confirm, "提交")
        ack = await self.said(chat, "已受理", count=self._count(chat, "已受理") + 1)
        return str(ack["text"]).split()[1]

    def _count(self, chat_id: int, needle: str) -> int:
        return sum(needle in t for t in self.texts(chat_id))

    async def stop(self) -> None:
        await self.service.stop()
        await self.emu.stop()
        self.engine.dispose()


async def start_session(
    engine: Engine,
    clock: FakeClock,
    *,
    flood_limits: bool = False,
    limits: Limits | None = None,
    long_poll: int = 1,
    data_dir: Path = Path("data"),
) -> ZoneSession:
    """The emulator and the whole service (inbox, outbox, deadline timer) wired together."""
    emu = BotApiEmulator(flood_limits=flood_limits)
    await emu.start()
    app = build_application(
        emu.token, base_url=f"{emu.url}/bot", base_file_url=f"{emu.url}/file/bot"
    )
    service = Service(
        app, engine, clock, ZoneCache(ttl=0), limits=limits, long_poll=long_poll, data_dir=data_dir
    )
    await service.start()
    return ZoneSession(emu=emu, engine=engine, clock=clock, service=service)


async def water_outage(z: ZoneSession) -> str:
    ent = await z.join("qian.hao", "enterprise", project="PV01")
    await z.join("liu.yang", "lead", squad="PV")
    await z.join("zhou.jun", "member", squad="PV")
    await z.join("xu.hui", "member", squad="PV")
    group = await z.bind_group("PV", "liu.yang", ["zhou.jun", "xu.hui"])
    number = await z.file_ticket(
        "qian.hao",
        "临时停水",
        "工地临时停水，二号楼正在浇筑混凝土，急需恢复供水",
        urgency="紧急",
        photo=True,
    )
    card = await z.said(group, f"新工单 {number}")
    z.press("zhou.jun", card, "认领")
    await z.said(ent, "认领处理")
    z.emu.send_text(
        z.ids["zhou.jun"],
        "应急供水车20分钟内到场，同时排查破损管道",
        chat_id=group,
        reply_to=card["message_id"],
    )
    got = await z.said(ent, "应急供水车")
    z.emu.send_text(ent, "收到，我们在东门等候，谢谢！", reply_to=got["message_id"])
    await z.said(group, "东门等候")
    z.emu.send_text(
        z.ids["zhou.jun"], f"/plan {number} 2d 1.今天抢修破损管道 2.明天复查水压并撤回供水车"
    )
    await z.said(ent, "】推进计划")
    z.emu.send_text(z.ids["zhou.jun"], f"/resolve {number} 管道已修复，供水恢复正常")
    ask = await z.said(ent, "已办结")
    z.press("qian.hao", ask, "已解决")
    rate = await z.said(ent, "请为工单")
    z.press("qian.hao", rate, "★5")
    await z.said(ent, "感谢评价")
    return number


async def nobody_claims(z: ZoneSession) -> str:
    from datetime import timedelta

    ent = await z.join("yang.fan", "enterprise", project="HV01")
    lead = await z.join("ma.lin", "lead", squad="HV")
    await z.join("hu.bin", "member", squad="HV")
    top = await z.join("wang.fang", "manager")
    number = await z.file_ticket(
        "yang.fan", "杆线迁移", "厂区北侧一根10kV电杆挡住塔吊作业，需要迁移"
    )
    await z.said(ent, "已受理")
    filed = z.clock.now()
    steps = ((8, z.ids["hu.bin"], "⏰"), (10, lead, "🔴"), (120, top, "🔴"), (180, top, "🚨"))
    for minutes, chat, needle in steps:
        z.mark(f"—— +{minutes} min ——")
        z.clock.set(filed + timedelta(minutes=minutes, seconds=1))
        await z.said(chat, needle)
    return number


def transcript_with_marks(z: ZoneSession) -> list[str]:
    lines = z.emu.transcript()
    out: list[str] = []
    marks = dict(z.marks)
    for index, line in enumerate(lines):
        if index in marks:
            out.append("")
            out.append(marks.pop(index))
        out.append(line)
    for label in marks.values():
        out.append(label)
    return out


async def run_sandbox(settings: Any) -> int:
    """The scripted demo: prints the chat transcript, in the configured language's titles."""
    import logging
    from datetime import UTC, datetime
    from pathlib import Path

    from migrations.runner import upgrade
    from models.db import make_engine
    from models.zone.load import load_and_apply

    for name in ("apscheduler", "telegram", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    folder = Path(settings.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sandbox.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    zone_file = settings.zone_file or Path(__file__).resolve().parents[2] / "examples/zone.yaml"
    load_and_apply(engine, Path(zone_file))
    z = await start_session(engine, FakeClock(datetime.now(UTC)), data_dir=folder)
    lang = settings.language
    url = z.emu.url
    try:
        z.mark(t(lang, "demo.scene_water"))
        first = await water_outage(z)
        z.mark(t(lang, "demo.scene_escalation"))
        second = await nobody_claims(z)
        await z.settle()
    finally:
        await z.stop()
    print(t(lang, "demo.header", url=url, path=path))
    print("\n".join(transcript_with_marks(z)))
    print("\n" + t(lang, "demo.footer", first=first, second=second, path=path))
    return 0
