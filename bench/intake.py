"""Issue 2's figures: the filing flow (/new -> category button -> description -> urgency button
-> submit button) from 200 simulated enterprises, squadbot on SQLite with synchronous=FULL.

(a) throughput: every enterprise files at once, each next step sent as soon as the bot has
    answered the previous one (200 in flight, 1,000 updates); updates answered per second.
(b) latency and CPU: 20, 50 and 100 updates/s offered open-loop for 20 s each; per update,
    from the moment it is available in the emulator to the bot's answer in that chat
    reaching the emulator; CPU per update answered. Targets: p99 under 50 ms at 50/s and
    under 100 ms at 100/s; CPU per update at most 1.5x the baseline's.
(c) RSS of the bot's process: before the bot starts, and its peak.

Each bot runs in a process of its own (bench/bot_process.py), as in a zone, where the Bot API
server is another program: the emulator and the simulated enterprises run in the benchmark's
process. (Until 2026-11-30 they ran in a thread of the bot's process, sharing its
interpreter lock: at 100 updates/s that process needed more than one processor's worth of
Python, and the bot's queue grew with the emulator's work, not only its own.)

Baseline in the same run: a stock PTB Application (its own Updater, no inbox or outbox) with
in-memory handlers that answer each step directly, making the same Bot API calls. The gap is
the price of durability: every update committed before it is confirmed, every answer
committed before it is sent.

Long on purpose: the squadbot and stock-PTB drivers must stay side by side to stay comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections import deque
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bench.bot_process import BotProcess
from bench.common import (
    EXAMPLE_ZONE,
    UNPACED,
    BotLog,
    Enterprise,
    Seen,
    call_counts,
    child_main,
    describe_limits,
    latency_summary,
    machine_note,
    on_emulator,
    populate,
    print_table,
    ratio,
    run_systems,
    settle_measurer,
    start_emulator,
    storage_note,
    tickets_filed,
    wait_idle,
    zone_database,
)
from bot.i18n import t
from bot.sandbox import BotApiEmulator

ENTERPRISES = 200
RATES = (20.0, 50.0, 100.0)  # updates offered per second in (b), one run each
SECONDS = {"full": 20.0, "quick": 6.0}
QUICK_ENV = "SQUADBOT_BENCH_INTAKE_QUICK"  # tells the children
P99_TARGET_MS = {50.0: 50.0, 100.0: 100.0}
CPU_TARGET = 1.5  # CPU per update, squadbot / baseline
FLOW = ("/new", "category", "description", "urgency", "submit")
PRESSES = {"category", "urgency", "submit"}
DESCRIPTION = "施工现场自来水管道被挖断，混凝土浇筑需要用水，请尽快安排抢修。"
SYSTEMS = ("squadbot", "ptb")
LABELS = {"squadbot": "squadbot", "ptb": "stock PTB, no DB"}


# --- the simulated enterprises (run on the emulator's loop) --------------------------------------
@dataclass
class Chatter:
    user_id: int
    step: int = 0  # index into FLOW of the next update to send
    message_id: int = 0  # the bot's last message in the chat, whose buttons get pressed
    buttons: tuple[tuple[str, ...], ...] = ()
    sent_at: float | None = None  # the outstanding update, if any
    flows: int = 0


@dataclass
class Phase:
    latencies: list[tuple[str, float]] = field(default_factory=list)
    injected: int = 0
    unexpected: int = 0
    missed_offers: int = 0
    first: float = 0.0
    last: float = 0.0

    def figures(self) -> dict[str, Any]:
        by_step = {
            step: latency_summary([s for name, s in self.latencies if name == step])
            for step in FLOW
        }
        elapsed = self.last - self.first
        answered = len(self.latencies)
        return {
            "injected": self.injected,
            "answered": answered,
            "unexpected": self.unexpected,
            "missed_offers": self.missed_offers,
            "elapsed_s": elapsed,
            "per_second": answered / elapsed if elapsed > 0 else 0.0,
            "latency": latency_summary([s for _, s in self.latencies]),
            "by_step": by_step,
        }


class FilingLoad:
    """Enterprises going through /new, one step outstanding per chat at most, so the n-th
    message the bot posts in a chat after an update is that update's answer."""

    def __init__(self, emu: BotApiEmulator, enterprises: list[Enterprise]) -> None:
        self.emu = emu
        self.log = BotLog(emu)
        self.chatters = {e.user_id: Chatter(e.user_id) for e in enterprises}
        self.rng = random.Random(2611)
        self.phase = Phase()
        self.extra = 0  # messages in an enterprise's chat that answered nothing

    def inject(self, c: Chatter) -> None:
        step = FLOW[c.step]
        c.sent_at = time.perf_counter()
        if not self.phase.injected:
            self.phase.first = c.sent_at
        self.phase.injected += 1
        if step == "/new":
            self.emu.send_text(c.user_id, "/new")
        elif step == "description":
            self.emu.send_text(c.user_id, DESCRIPTION)
        else:
            rows = c.buttons
            choices = [d for row in rows[:-1] for d in row] if step == "category" else rows[0][:1]
            self.emu.press(c.user_id, c.user_id, c.message_id, self.rng.choice(choices))

    def absorb(self, seen: list[Seen]) -> list[Chatter]:
        """Match the bot's new messages to outstanding updates; the chatters now free."""
        free = []
        for s in seen:
            c = self.chatters.get(s.chat_id)
            if c is None:
                continue  # a ticket card in a squad group
            if c.sent_at is None:
                self.extra += 1
                continue
            self.phase.latencies.append((FLOW[c.step], s.at - c.sent_at))
            self.phase.last = s.at
            c.sent_at = None
            c.message_id, c.buttons = s.message_id, s.buttons
            c.step = (c.step + 1) % len(FLOW)
            if c.step == 0:
                c.flows += 1
            elif FLOW[c.step] in PRESSES and not s.buttons:
                self.phase.unexpected += 1  # not the prompt expected: start over
                c.step = 0
            free.append(c)
        return free

    async def backlog(self, flows: int, timeout: float) -> dict[str, Any]:
        """(a): everyone at once, each next step right after the previous answer."""
        self.phase = Phase()
        for c in self.chatters.values():
            self.inject(c)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if all(c.flows >= flows and c.sent_at is None for c in self.chatters.values()):
                break
            for c in self.absorb(await self.log.wait_new(0.5)):
                if c.flows < flows or c.step != 0:
                    self.inject(c)
        return self.phase.figures()

    async def scatter(self, timeout: float) -> None:
        """Take each enterprise to a random point of the flow (unmeasured), so that the offered
        load mixes all five steps instead of moving through them in waves."""
        target = {c.user_id: self.rng.randrange(len(FLOW)) for c in self.chatters.values()}
        for c in self.chatters.values():
            if c.step != target[c.user_id]:
                self.inject(c)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if all(c.sent_at is None for c in self.chatters.values()):
                break
            for c in self.absorb(await self.log.wait_new(0.5)):
                if c.step != target[c.user_id]:
                    self.inject(c)

    async def open_loop(self, rate: float, seconds: float, drain: float) -> dict[str, Any]:
        """(b): an update offered every 1/rate s from whichever enterprise is free."""
        self.phase = Phase()
        free = deque(c for c in self.chatters.values() if c.sent_at is None)
        self.rng.shuffle(free)
        done = asyncio.Event()

        async def offer() -> None:
            start = time.perf_counter()
            for i in range(int(rate * seconds)):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if free:
                    self.inject(free.popleft())
                else:
                    self.phase.missed_offers += 1
            done.set()

        task = asyncio.create_task(offer())
        stop_at = None
        while stop_at is None or time.perf_counter() < stop_at:
            free.extend(self.absorb(await self.log.wait_new(0.2)))
            if done.is_set():
                if stop_at is None:
                    stop_at = time.perf_counter() + drain
                if all(c.sent_at is None for c in self.chatters.values()):
                    break
        await task
        return self.phase.figures()


# --- the baseline bot: the same conversation, in memory --------------------------------------
class InMemoryFiling:
    """The filing conversation answered directly from handlers, nothing stored: the same Bot
    API calls squadbot makes (prompt, button answer, acknowledgement, card to the group)."""

    def __init__(self, enterprises: list[Enterprise]) -> None:
        self.group_of = {e.user_id: e.group_chat_id for e in enterprises}
        zone = yaml.safe_load(EXAMPLE_ZONE.read_text(encoding="utf-8"))
        self.categories = {c["code"]: c["zh"] for c in zone["categories"]}
        self.drafts: dict[int, dict[str, str]] = {}
        self.numbers = 0

    def install(self, app: Application) -> None:  # type: ignore[type-arg]
        app.add_handler(CommandHandler("new", self.new))
        app.add_handler(CallbackQueryHandler(self.pressed))
        app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, self.text))

    def keyboard(self, rows: list[list[tuple[str, str]]]) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup(
            [[InlineKeyboardButton(label, callback_data=data) for label, data in r] for r in rows]
        )

    async def new(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_user is not None and update.message is not None
        self.drafts[update.effective_user.id] = {"step": "category"}
        items = [(name, f"category:{code}") for code, name in self.categories.items()]
        rows = [items[i : i + 2] for i in range(0, len(items), 2)]
        rows.append([(t("zh-CN", "button.cancel"), "cancel")])
        await update.message.reply_text(
            t("zh-CN", "new.ask_category"), reply_markup=self.keyboard(rows)
        )

    async def text(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_user is not None and update.message is not None
        draft = self.drafts.get(update.effective_user.id)
        if draft is None or draft["step"] != "description":
            await update.message.reply_text(t("zh-CN", "hint.enterprise"))
            return
        draft.update(step="urgency", description=update.message.text or "")
        rows = [
            [
                (t("zh-CN", "urgency.normal"), "urgency:normal"),
                (t("zh-CN", "urgency.urgent"), "urgency:urgent"),
            ]
        ]
        await update.message.reply_text(
            t("zh-CN", "new.ask_urgency"), reply_markup=self.keyboard(rows)
        )

    async def pressed(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and update.effective_user is not None
        user_id = update.effective_user.id
        draft = self.drafts.setdefault(user_id, {"step": "category"})
        action, _, arg = (query.data or "").partition(":")
        if action == "category":
            await query.answer()
            draft.update(step="description", category=self.categories[arg])
            await context.bot.send_message(
                user_id, t("zh-CN", "new.ask_description", category=draft["category"])
            )
        elif action == "urgency":
            await query.answer()
            draft.update(step="confirm", urgency=t("zh-CN", f"urgency.{arg}"))
            text = t(
                "zh-CN",
                "new.confirm",
                category=draft["category"],
                urgency=draft["urgency"],
                description=draft["description"],
                attachments=0,
            )
            rows = [[(t("zh-CN", "button.submit"), "submit"), (t("zh-CN", "button.cancel"), "x")]]
            await context.bot.send_message(user_id, text, reply_markup=self.keyboard(rows))
        elif action == "submit":
            await query.answer(t("zh-CN", "new.submitted_short"))
            self.numbers += 1
            number = f"YZ-2611-{self.numbers:04d}"
            filed = {"number": number, "category": draft["category"]}
            when = {"response_due": "11月23日 09:10", "handling_due": "11月23日 11:00"}
            await context.bot.send_message(user_id, t("zh-CN", "ticket.filed", **filed, **when))
            card = t(
                "zh-CN",
                "ticket.card",
                **filed,
                **when,
                urgency=draft["urgency"],
                project="-",
                enterprise="-",
                contact=update.effective_user.full_name,
                phone="-",
                description=draft["description"],
                state=t("zh-CN", "state.open"),
                owner="-",
            )
            rows = [[(t("zh-CN", "button.claim"), f"claim:{number}")]]
            await context.bot.send_message(
                self.group_of[user_id], card, reply_markup=self.keyboard(rows)
            )
            self.drafts.pop(user_id, None)
        else:
            await query.answer()


# --- one system, in a child process ---------------------------------------------------------
class BotCpu:
    """CPU seconds since creation: of the bot's process (every thread of it, read from the
    kernel) and of this one (the emulator and the simulated enterprises)."""

    def __init__(self, bot: BotProcess) -> None:
        self.bot = bot
        self.bot0 = bot.cpu_seconds()
        self.here0 = time.process_time()

    def read(self) -> dict[str, float]:
        return {
            "bot_cpu_s": self.bot.cpu_seconds() - self.bot0,
            "emulator_cpu_s": time.process_time() - self.here0,
        }


async def run(system: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="squadbot-bench-") as folder:
        engine = zone_database(Path(folder))
        enterprises, groups = populate(engine, ENTERPRISES)
        thread = start_emulator(enterprises, groups)
        load: FilingLoad = await on_emulator(thread, FilingLoad, thread.emu, enterprises)
        bot = await BotProcess.start(
            {
                "system": system,
                "url": thread.url,
                "token": thread.emu.token,
                "database": str(Path(folder) / "squadbot.db"),
                "enterprises": [astuple(e) for e in enterprises],
                "handlers": "bench.intake:InMemoryFiling",
            }
        )
        store = engine if system == "squadbot" else None
        try:
            settle_measurer()
            cpu = BotCpu(bot)
            backlog = await on_emulator(thread, load.backlog, 1, 120.0)
            backlog.update(cpu.read())
            await wait_idle(thread, store)
            await on_emulator(thread, load.scatter, 60.0)
            await wait_idle(thread, store)
            seconds = SECONDS["quick" if os.environ.get(QUICK_ENV) == "1" else "full"]
            steady: dict[str, Any] = {}
            for rate in RATES:
                settle_measurer()
                cpu = BotCpu(bot)
                figures = await on_emulator(thread, load.open_loop, rate, seconds, 20.0)
                figures.update(cpu.read())
                steady[f"{rate:g}"] = figures
                await wait_idle(thread, store)
        finally:
            counted = await bot.stop()
        database = counted["database"]
        database["updates"] = backlog["injected"] + sum(f["injected"] for f in steady.values())
        filed = tickets_filed(engine) if system == "squadbot" else None
        stats = thread.call(lambda: dict(thread.emu.stats))
        calls = call_counts(thread)
        thread.stop()
        engine.dispose()
        return {
            "system": system,
            "storage": storage_note(Path(folder)),
            "backlog": backlog,
            "steady": steady,
            "extra_messages": load.extra,
            "tickets_filed": filed,
            "rss_before_mb": counted["rss_before_mb"],
            "peak_rss_mb": counted["peak_rss_mb"],
            "high_water_mb": counted["high_water_mb"],
            "emulator": stats,
            "button_answers_too_old": calls.get("answerCallbackQuery 400", 0),
            "calls": calls,
            "database": database,
        }


def cpu_rows(a: dict[str, Any], b: dict[str, Any]) -> list[list[Any]]:
    """CPU per update: steadier than wall time when the machine is shared."""

    def per_update(r: dict[str, Any], key: str) -> float:
        return float(r[key]) * 1000 / max(1, int(r["answered"]))

    bot = (per_update(a, "bot_cpu_s"), per_update(b, "bot_cpu_s"))
    emulator = (per_update(a, "emulator_cpu_s"), per_update(b, "emulator_cpu_s"))
    return [
        ["bot CPU ms per update (its process)", *bot, ratio(*bot)],
        ["emulator + load CPU ms per update", *emulator, ""],
    ]


def database_rows(database: dict[str, int]) -> list[list[Any]]:
    """Statements and commits per update, all phases, the lease writer's included."""
    updates = max(1, database["updates"])
    return [
        [f"SQL statements per update ({what})", database[key] / updates, "-", ""]
        for what, key in (("all", "statements"), ("of them PRAGMA", "pragmas"))
    ] + [["commits per update", database["commits"] / updates, "-", ""]]


# --- the report -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help=f"{SECONDS['quick']:g}s at each rate, not 20s"
    )
    args = parser.parse_args(argv)
    os.environ[QUICK_ENV] = "1" if args.quick else "0"
    print(f"intake: the filing flow {' -> '.join(FLOW)}, {ENTERPRISES} enterprises")
    print(f"machine: {machine_note()}")
    results = run_systems("bench.intake", LABELS, timeout=170)
    if results is None:
        return
    sq, pb = results["squadbot"], results["ptb"]
    print(
        f"squadbot: real Service (inbox, outbox, deadline timer), SystemClock, SQLite WAL + "
        f"synchronous=FULL ({sq['storage']}).\n"
        f"Each bot in a process of its own; the emulator and the enterprises in another.\n"
        f"Flood limits OFF in the emulator; squadbot pacing raised to "
        f"{describe_limits(UNPACED)},\nso Telegram flood pacing does not dominate."
    )
    a, b = sq["backlog"], pb["backlog"]
    rows: list[list[Any]] = [
        ["updates answered", a["answered"], b["answered"], ""],
        ["seconds, first update to last answer", a["elapsed_s"], b["elapsed_s"], ""],
        ["updates/s", a["per_second"], b["per_second"], ratio(a["per_second"], b["per_second"])],
        ["p50 ms (queueing included)", a["latency"]["p50_ms"], b["latency"]["p50_ms"], ""],
        *cpu_rows(a, b),
        ["tickets filed (all phases)", sq["tickets_filed"], "-", ""],
        *database_rows(sq["database"]),
    ]
    header = ["", LABELS["squadbot"], LABELS["ptb"], "squadbot/PTB"]
    print_table(
        f"(a) throughput: {ENTERPRISES} enterprises x 1 flow, next step on each answer",
        header,
        rows,
    )
    seconds = SECONDS["quick" if os.environ.get(QUICK_ENV) == "1" else "full"]
    rows = []
    verdicts: list[str] = []
    for rate in RATES:
        a, b = sq["steady"][f"{rate:g}"], pb["steady"][f"{rate:g}"]
        la, lb = a["latency"], b["latency"]
        cpu = [cpu_rows(a, b)[0][i] for i in (1, 2)]
        rows += [
            [f"{rate:g}/s: achieved updates/s", a["per_second"], b["per_second"], ""],
            ["  offers skipped (no enterprise free)", a["missed_offers"], b["missed_offers"], ""],
            ["  p50 ms", la["p50_ms"], lb["p50_ms"], ratio(la["p50_ms"], lb["p50_ms"])],
            ["  p99 ms", la["p99_ms"], lb["p99_ms"], ratio(la["p99_ms"], lb["p99_ms"])],
            ["  max ms", la["max_ms"], lb["max_ms"], ratio(la["max_ms"], lb["max_ms"])],
            ["  bot CPU ms per update", *cpu, ratio(*cpu)],
            ["  unexpected answers", a["unexpected"], b["unexpected"], ""],
        ]
        verdicts.append(
            f"{rate:g}/s: CPU {cpu[0] / cpu[1]:.2f}x the baseline (target <= {CPU_TARGET:g}x: "
            f"{'met' if cpu[0] <= CPU_TARGET * cpu[1] else 'NOT met'})"
        )
        if rate in P99_TARGET_MS:
            goal = P99_TARGET_MS[rate]
            verdicts.append(
                f"{rate:g}/s: p99 {la['p99_ms']:,.1f} ms (target < {goal:g} ms: "
                f"{'met' if la['p99_ms'] < goal else 'NOT met'})"
            )
    print_table(
        f"(b) latency, update available -> answer in the emulator, open-loop, {seconds:g}s "
        "at each rate",
        header,
        rows,
    )
    for verdict in verdicts:
        print(f"    {verdict}")
    rows = [
        ["RSS before the bot starts", sq["rss_before_mb"], pb["rss_before_mb"], ""],
        ["peak RSS (ru_maxrss)", sq["peak_rss_mb"], pb["peak_rss_mb"], ""],
        ["peak RSS (VmHWM, cross-check)", sq["high_water_mb"], pb["high_water_mb"], ""],
        [
            "attributable: peak - before",
            sq["peak_rss_mb"] - sq["rss_before_mb"],
            pb["peak_rss_mb"] - pb["rss_before_mb"],
            ratio(sq["peak_rss_mb"] - sq["rss_before_mb"], pb["peak_rss_mb"] - pb["rss_before_mb"]),
        ],
    ]
    print_table("(c) memory, MB (the bot's process)", header, rows)
    print(
        f"\nemulator: squadbot {sq['emulator']['requests']} requests, "
        f"{sq['emulator']['sent_messages']} messages; PTB {pb['emulator']['requests']} "
        f"requests, {pb['emulator']['sent_messages']} messages. "
        f"Run time {sq['wall_s']:.0f}s + {pb['wall_s']:.0f}s."
    )
    print(
        "(b) offers skipped: moments when all enterprises were waiting for an answer, i.e. "
        "the bot was not keeping up;"
    )
    print(
        "    the latency figures then include queueing behind the others. Unmatched "
        f"messages: squadbot {sq['extra_messages']}, PTB {pb['extra_messages']}."
    )
    print(
        f"button presses answered too late (answerCallbackQuery 400, query older than 15 s): "
        f"squadbot {sq['button_answers_too_old']}, PTB {pb['button_answers_too_old']}."
    )


if __name__ == "__main__":
    child_main(run, SYSTEMS)
