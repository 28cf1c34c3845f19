"""The sandbox: squadbot against the built-in Bot API emulator on 127.0.0.1, with the example
zone, driven by a script of simulated people. `make run` without a token plays it (`play`);
the end-to-end tests drive the same session object. The scenes are in `bot.sandbox.scenes`,
the printed transcript in `bot.sandbox.transcript`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import signal
import string
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.application import ZoneCache, build_application
from bot.i18n import normalise, t
from bot.inbox.webhook import WebhookConfig
from bot.outbox import Limits
from bot.sandbox.emulator import BotApiEmulator
from bot.sandbox.scenes import SCENES, Story, start_of_day
from bot.sandbox.transcript import Transcript
from bot.service import Service
from bot.settings import Settings
from migrations.runner import upgrade
from models.clock import FakeClock
from models.db import make_engine, transaction
from models.invites import create_invite
from models.org import Person
from models.plumbing import InboxUpdate, OutboxMessage
from models.zone.apply import apply_zone
from models.zone.config import read_zone
from models.zone.parse import parse_zone
from models.zone.schema import ZoneDocument

_NUMBER = re.compile(r"\b[A-Z][A-Z0-9]*-\d{4}-\d{4,}\b")


def ticket_number(text: str) -> str:
    """The first ticket number (YZ-2611-0001) in a message."""
    match = _NUMBER.search(text)
    if match is None:
        raise AssertionError(f"no ticket number in {text!r}")
    return match[0]


def fragment(lang: str, key: str) -> str:
    """The longest fixed piece of a catalog message, placeholders left out."""
    pieces = [literal for literal, *_ in string.Formatter().parse(t(lang, key))]
    return max(pieces, key=len)


@dataclass
class ZoneSession:
    emu: BotApiEmulator
    engine: Engine
    clock: FakeClock
    service: Service
    lang: str = "zh-CN"  # the language the simulated people speak and their clients report
    ids: dict[str, int] = field(default_factory=dict)
    _next_id: Iterator[int] = field(default_factory=lambda: itertools.count(5001))

    def needle(self, key: str) -> str:
        """What to look for in a chat to find the bot's message `key`: the longest fixed
        piece of its text in the session's language."""
        return fragment(self.lang, key)

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
        language: str | None = None,
    ) -> int:
        """The zone person `key` opens the invite link and becomes reachable."""
        user_id = next(self._next_id)
        with Session(self.engine) as session:
            person = session.exec(select(Person).where(Person.key == key)).first()
        if language is None:
            language = "en" if self.lang == "en" else "zh-hans"
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
        title = t(self.lang, "demo.group_title", squad=squad)
        self.emu.add_group(chat_id, title, [self.ids[k] for k in [lead, *members]])
        code = self.invite("group", squad=squad)
        self.emu.send_text(self.ids[lead], f"/bind {code}", chat_id=chat_id)
        await self.said(chat_id, self.needle("bind.done"))
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

    def press(
        self, user: str | int, message: dict[str, Any], label: str, *, stale: bool = False
    ) -> str:
        """`stale`: pressed on a copy the person's client still shows, though the bot may
        have taken that button away since (Telegram delivers such a press)."""
        user_id = self.ids[user] if isinstance(user, str) else user
        data = self.button(message, label)
        chat_id, message_id = message["chat"]["id"], message["message_id"]
        return self.emu.press(user_id, chat_id, message_id, data, strict=not stale)

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
        self,
        who: str,
        category: str,
        text: str,
        *,
        urgency: str | None = None,
        photo: bool = False,
    ) -> str:
        """The whole /new conversation; returns the ticket number from the acknowledgement.
        `category` and `urgency` are button labels (the normal urgency when none is given)."""
        chat = self.ids[who]
        self.emu.send_text(chat, "/new")
        menu = await self._next(chat, "new.ask_category")
        self.press(who, menu, category)
        await self._next(chat, "new.ask_description")
        if photo:
            self.emu.send_photo(chat)
            await self._next(chat, "new.got_photo")
        self.emu.send_text(chat, text)
        ask = await self._next(chat, "new.ask_urgency")
        self.press(who, ask, urgency or t(self.lang, "urgency.normal"))
        confirm = await self._next(chat, "new.confirm")
        self.press(who, confirm, t(self.lang, "button.submit"))
        ack = await self._next(chat, "ticket.filed")
        return ticket_number(str(ack["text"]))

    async def _next(self, chat_id: int, key: str) -> dict[str, Any]:
        """The bot's next message `key` in the chat, after those already there."""
        needle = self.needle(key)
        return await self.said(chat_id, needle, count=self._count(chat_id, needle) + 1)

    def _count(self, chat_id: int, needle: str) -> int:
        return sum(needle in text for text in self.texts(chat_id))

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
    language: str = "zh-CN",
    webhook: WebhookConfig | None = None,
) -> ZoneSession:
    """The emulator and the whole service (inbox, outbox, deadline timer) wired together.
    With `webhook`, the service receives the updates on it and the emulator posts them
    there, standing for the reverse proxy too."""
    emu = BotApiEmulator(flood_limits=flood_limits)
    await emu.start()
    app = build_application(
        emu.token, base_url=f"{emu.url}/bot", base_file_url=f"{emu.url}/file/bot"
    )
    service = Service(
        app,
        engine,
        clock,
        ZoneCache(ttl=0),
        limits=limits,
        long_poll=long_poll,
        language=language,
        data_dir=data_dir,
        webhook=webhook,
    )
    await service.start()
    if service.intake is not None:
        emu.route_webhooks(f"http://{service.intake.receiver.host}:{service.intake.port}")
    return ZoneSession(emu=emu, engine=engine, clock=clock, service=service, lang=language)


EXAMPLE_ZONE = Path(__file__).resolve().parents[2] / "examples" / "zone.yaml"

# The emulator applies no flood limits, so the demo need not wait as the outbox does for
# Telegram (one message a second per chat, twenty a minute per group): the story plays in
# seconds rather than half a minute, still paced and in order.
SANDBOX_LIMITS = Limits(
    per_second=28.0,
    private_per_second=10.0,
    private_burst=5.0,
    group_per_minute=600.0,
    group_burst=5.0,
)


def example_zone(lang: str) -> ZoneDocument:
    """The sandbox's own zone, whatever SQUADBOT_ZONE_FILE says: the example zone, with every
    person and the zone itself speaking the reader's language."""
    document = parse_zone(EXAMPLE_ZONE.read_text(encoding="utf-8"), str(EXAMPLE_ZONE))
    if lang == document.zone.language:
        return document
    return replace(
        document,
        zone=replace(document.zone, language=lang),
        people=tuple(replace(person, language=lang) for person in document.people),
    )


def _fresh_database(folder: Path) -> tuple[Engine, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sandbox.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine, path


async def play_story(
    data_dir: Path, lang: str, console: Console, *, limits: Limits | None = None
) -> Transcript:
    """Every scene, printed to `console` as it happens; the transcript as printed."""
    engine, path = _fresh_database(data_dir)
    document = example_zone(lang)
    with transaction(engine) as session:
        apply_zone(session, document)
    with Session(engine) as session:
        zone = read_zone(session)
    clock = FakeClock(start_of_day(datetime.now(UTC), zone))
    z = await start_session(
        engine, clock, limits=limits or SANDBOX_LIMITS, data_dir=data_dir, language=lang
    )
    out = Transcript(z.emu, lang, console, scenes=len(SCENES))
    names = {"zh-CN": "zh", "en": "en"}[lang]
    categories = {c.code: getattr(c, names) for c in document.categories}
    story = Story(z, out, zone, categories)
    follower: asyncio.Task[None] | None = None
    numbers: list[str] = []
    try:
        out.frame(t(lang, "demo.header", url=z.emu.url, path=path))
        out.frame(t(lang, "demo.legend"))
        with out.live():
            follower = asyncio.create_task(out.follow())
            for heading, scene in SCENES:
                out.start_scene(t(lang, heading))
                numbers.append(await scene(story))
            await z.settle()
            out.flush()
    finally:
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        await z.stop()
    tickets = t(lang, "demo.separator").join(numbers)
    out.frame(t(lang, "demo.footer", tickets=tickets, path=path), blank=True)
    return out


async def run_sandbox(
    settings: Settings, *, console: Console | None = None, limits: Limits | None = None
) -> int:
    """The scripted demo in the configured language, printed as it plays. Ctrl-C stops it
    with one line. SQUADBOT_ZONE_FILE is not read: the sandbox brings its own zone."""
    for name in ("apscheduler", "telegram", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    lang = normalise(settings.language)
    console = console or Console(highlight=False)
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    # no signal handlers in another thread, nor on Windows: Ctrl-C is then `play`'s to catch
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
    try:
        story = asyncio.create_task(
            play_story(Path(settings.data_dir), lang, console, limits=limits)
        )
        stop = asyncio.create_task(interrupted.wait())
        await asyncio.wait({story, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not story.done():
            story.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await story
            console.out(t(lang, "demo.interrupted"), highlight=False)
            return 130
        story.result()
        return 0
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


def play(settings: Settings, *, no_token: bool = False) -> int:
    """The CLI's sandbox command, and `run` without a token (`no_token`: say so first)."""
    if no_token:
        print(t(normalise(settings.language), "demo.no_token"))
    try:
        return asyncio.run(run_sandbox(settings))
    except KeyboardInterrupt:  # before the demo could take over Ctrl-C, or after
        print(t(normalise(settings.language), "demo.interrupted"))
        return 130
