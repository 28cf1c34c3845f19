"""End-to-end harness: the real Application, inbox, outbox and deadline timer running over
HTTP against the Bot API emulator on 127.0.0.1, with the example zone loaded and an injected
clock that tests move instead of sleeping."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.application import ZoneCache, build_application
from bot.emulator import BotApiEmulator
from bot.pacing import Limits
from bot.service import Service
from models.clock import FakeClock
from models.db import make_engine
from models.invites import create_invite
from models.migrate import upgrade
from models.zone_file import load_and_apply

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ZONE = ROOT / "examples" / "zone.yaml"
FAST = Limits(
    per_second=1000,
    private_per_second=1000,
    private_burst=1000,
    group_per_minute=60000,
    group_burst=1000,
)

_template: dict[str, Path] = {}


def zone_database(tmp_path: Path, zone_file: Path = EXAMPLE_ZONE) -> Engine:
    """A migrated SQLite database with the zone loaded; migrated once, copied per test."""
    key = str(zone_file)
    if key not in _template:
        folder = Path(tmp_path.parent) / f"template-{len(_template)}"
        folder.mkdir(exist_ok=True)
        path = folder / "zone.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        load_and_apply(engine, zone_file)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        _template[key] = path
    target = tmp_path / "squadbot.db"
    shutil.copy(_template[key], target)
    return make_engine(f"sqlite:///{target}")


@dataclass
class Harness:
    emu: BotApiEmulator
    engine: Engine
    clock: FakeClock
    service: Service
    ids: dict[str, int] = field(default_factory=dict)
    _next_id: Any = field(default_factory=lambda: itertools.count(5001))

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
        self.emu.add_user(user_id, key, language_code=language)
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
        from sqlmodel import col, select

        from models.plumbing import InboxUpdate, OutboxMessage

        def idle() -> bool:
            with Session(self.engine) as session:
                unhandled = session.exec(
                    select(InboxUpdate).where(col(InboxUpdate.processed_at).is_(None))
                ).first()
                unsent = session.exec(
                    select(OutboxMessage).where(OutboxMessage.state == "pending")
                ).first()
            return self.emu.pending_updates() == 0 and unhandled is None and unsent is None

        await self.emu.wait_for(idle, timeout=10.0)

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


async def start_harness(
    tmp_path: Path,
    *,
    flood_limits: bool = False,
    limits: Limits | None = FAST,
    configure: Callable[[Engine], None] | None = None,
) -> Harness:
    emu = BotApiEmulator(flood_limits=flood_limits)
    await emu.start()
    engine = zone_database(tmp_path)
    if configure is not None:
        configure(engine)
    clock = FakeClock()
    app = build_application(
        emu.token, base_url=f"{emu.url}/bot", base_file_url=f"{emu.url}/file/bot"
    )
    service = Service(app, engine, clock, ZoneCache(ttl=0), limits=limits, long_poll=1)
    await service.start()
    return Harness(emu=emu, engine=engine, clock=clock, service=service)
