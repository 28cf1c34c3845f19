"""The scenes the sandbox plays, one per promise the squads make, in the reader's language:

1. an urgent water outage, reported with a photo, claimed and answered in the squad's group,
   resolved, confirmed and rated (reply within 10 minutes, handle within 2 hours: tighter
   for urgent water in the example zone);
2. a power pole in the way, which needs the power company: the squad marks it as needing a
   progress plan and agrees one within the day (the third promise);
3. a ticket nobody claims, escalating from a warning to the lead, the managers and a formal
   supervision notice as the clock is moved on.

Every step waits until the bot has answered and every message is out, so the transcript
reads in the order things happened. What people type and every framing line come from the
catalogs (`demo.*`); names, projects and companies come from the example zone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.i18n import format_time, t
from models.zone.config import ZoneConfig

if TYPE_CHECKING:
    from bot.sandbox.script import ZoneSession
    from bot.sandbox.transcript import Transcript


_UNITS = (
    (86400, "demo.duration.day", "demo.duration.days"),
    (3600, "demo.duration.hour", "demo.duration.hours"),
    (60, "demo.duration.minute", "demo.duration.minutes"),
)


def spoken_duration(delta: timedelta, lang: str) -> str:
    """A duration in words for the framing lines, in the largest whole unit ("90 minutes",
    "2 hours", "1天")."""
    seconds = int(delta.total_seconds())
    for size, one, many in _UNITS:
        count, rest = divmod(seconds, size)
        if (count and not rest) or size == 60:
            return t(lang, one if count == 1 else many, n=count)
    raise AssertionError("unreachable")


@dataclass
class Story:
    """What the scenes share: the session, the printed transcript, the zone as loaded and the
    category names in the reader's language."""

    z: ZoneSession
    out: Transcript
    zone: ZoneConfig
    categories: dict[str, str]

    @property
    def lang(self) -> str:
        return self.z.lang

    def line(self, key: str, **params: Any) -> str:
        """What a simulated person types, in the reader's language."""
        return t(self.lang, key, **params)

    def note(self, key: str, **params: Any) -> None:
        self.out.frame(t(self.lang, key, **params))

    def duration(self, delta: timedelta) -> str:
        return spoken_duration(delta, self.lang)

    def now(self) -> str:
        return format_time(self.z.clock.now(), self.lang, self.zone.tz)

    def later(self, delta: timedelta) -> None:
        """Move the clock on, and say so."""
        self.z.clock.advance(delta)
        self.note("demo.later", duration=self.duration(delta), time=self.now())

    async def card(self, chat_id: int, number: str) -> dict[str, Any]:
        """The ticket card the bot posted for `number` in the chat."""
        needle = self.z.needle("ticket.card")
        await self.z.said(chat_id, number)

        def cards() -> list[dict[str, Any]]:
            return [
                m
                for m in self.z.emu.sent(chat_id)
                if number in (m.get("text") or "") and needle in (m.get("text") or "")
            ]

        await self.z.emu.wait_for(lambda: bool(cards()))
        return cards()[0]

    async def answered(self, chat_id: int, key: str) -> dict[str, Any]:
        """The bot's next message `key` in the chat, once the step is over."""
        return await self.echoed(chat_id, self.z.needle(key))

    async def echoed(self, chat_id: int, needle: str) -> dict[str, Any]:
        """The bot's next message holding `needle` in the chat, once everything the step
        caused has been sent (so that the next step's messages come after it)."""
        count = sum(needle in text for text in self.z.texts(chat_id)) + 1
        message = await self.z.said(chat_id, needle, count=count)
        await self.settle()
        return message

    async def settle(self) -> None:
        """The end of a step: every update handled, every message out and printed."""
        await self.z.settle()
        self.out.flush()


async def water_outage(s: Story) -> str:
    z = s.z
    s.note("demo.cast")
    ent = await z.join("qian.hao", "enterprise", project="PV01")
    await z.join("liu.yang", "lead", squad="PV")
    await z.join("zhou.jun", "member", squad="PV")
    await z.join("xu.hui", "member", squad="PV")
    group = await z.bind_group("PV", "liu.yang", ["zhou.jun", "xu.hui"])
    await s.settle()

    s.note("demo.report", time=s.now())
    number = await z.file_ticket(
        "qian.hao",
        s.categories["water"],
        s.line("demo.line.water_report"),
        urgency=t(s.lang, "urgency.urgent"),
        photo=True,
    )
    card = await s.card(group, number)
    await s.settle()
    urgent = s.zone.targets("water", "urgent")
    usual = s.zone.sla[(None, None)]
    s.note(
        "demo.note_urgent",
        response=s.duration(urgent.response),
        handling=s.duration(urgent.handling),
        default_response=s.duration(usual.response),
        default_handling=s.duration(usual.handling),
    )

    s.later(timedelta(minutes=3))
    z.press("zhou.jun", card, t(s.lang, "button.claim"))
    await s.answered(ent, "ticket.claimed")
    reply = s.line("demo.line.water_reply")
    z.emu.send_text(z.ids["zhou.jun"], reply, chat_id=group, reply_to=card["message_id"])
    got = await s.echoed(ent, reply)
    thanks = s.line("demo.line.water_thanks")
    z.emu.send_text(ent, thanks, reply_to=got["message_id"])
    await s.echoed(group, thanks)

    s.later(timedelta(minutes=40))
    z.emu.send_text(z.ids["zhou.jun"], f"/resolve {number} {s.line('demo.line.water_resolved')}")
    ask = await s.answered(ent, "resolve.ask_confirm")
    z.press("qian.hao", ask, t(s.lang, "button.fixed"))
    rate = await s.answered(ent, "rate.ask")
    z.press("qian.hao", rate, "★5")
    await s.answered(ent, "rate.thanks")
    return number


async def progress_plan(s: Story) -> str:
    z = s.z
    ent, group, member = z.ids["qian.hao"], z.ids["group:PV"], z.ids["xu.hui"]
    s.later(timedelta(hours=1))
    number = await z.file_ticket("qian.hao", s.categories["power_line"], s.line("demo.line.pole"))
    card = await s.card(group, number)
    await s.settle()

    s.later(timedelta(minutes=5))
    z.press("xu.hui", card, t(s.lang, "button.claim"))
    await s.answered(ent, "ticket.claimed")
    reply = s.line("demo.line.pole_reply")
    z.emu.send_text(member, reply, chat_id=group, reply_to=card["message_id"])
    await s.echoed(ent, reply)

    usual = s.zone.sla[(None, None)]
    s.note("demo.note_plan", plan=s.duration(usual.plan), handling=s.duration(usual.handling))
    z.emu.send_text(member, f"/needplan {number}")
    await s.answered(ent, "plan.required")

    s.later(timedelta(hours=3))
    target = (z.clock.now().astimezone(s.zone.tz) + timedelta(days=6)).date()
    z.emu.send_text(member, f"/plan {number} {target.isoformat()} {s.line('demo.line.plan')}")
    plan = await s.answered(ent, "plan.recorded")
    agreed = s.line("demo.line.plan_agreed")
    z.emu.send_text(ent, agreed, reply_to=plan["message_id"])
    await s.echoed(group, agreed)
    return number


async def nobody_claims(s: Story) -> str:
    z = s.z
    s.later(timedelta(hours=1))
    s.note("demo.cast_no_group")
    ent = await z.join("yang.fan", "enterprise", project="HV01")
    lead = await z.join("ma.lin", "lead", squad="HV")
    member = await z.join("hu.bin", "member", squad="HV")
    top = await z.join("wang.fang", "manager")
    await s.settle()
    category = s.categories["construction_permit"]
    number = await z.file_ticket("yang.fan", category, s.line("demo.line.permit"))
    await z.said(ent, number)
    await s.settle()
    filed = z.clock.now()

    targets = s.zone.sla[(None, None)]
    warn = targets.response * targets.warn_ratio
    overdue = targets.handling + targets.supervision_after
    s.note(
        "demo.note_escalation",
        warn=s.duration(warn),
        response=s.duration(targets.response),
        handling=s.duration(targets.handling),
        supervision=s.duration(overdue),
    )
    steps = (
        (warn, member, "alert.warning"),
        (targets.response, lead, "alert.breach"),
        (targets.handling, top, "alert.breach"),
        (overdue, top, "alert.supervision"),
    )
    for after, chat, key in steps:
        z.clock.set(filed + after + timedelta(seconds=1))
        s.note("demo.after_filing", duration=s.duration(after), time=s.now())
        await s.answered(chat, key)
    return number


Scene = Callable[[Story], Awaitable[str]]

# (heading, scene): the heading is a catalog key
SCENES: tuple[tuple[str, Scene], ...] = (
    ("demo.scene_water", water_outage),
    ("demo.scene_plan", progress_plan),
    ("demo.scene_escalation", nobody_claims),
)


def start_of_day(now: datetime, zone: ZoneConfig) -> datetime:
    """09:00 on the zone's current day: the story begins as the working day does."""
    local = now.astimezone(zone.tz)
    return local.replace(hour=9, minute=0, second=0, microsecond=0)
