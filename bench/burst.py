"""Issue 3's outbound pacing figures: 600 enterprises each send /help within one second, each
needing an answer, against an emulator that answers 429 (with retry_after) past Telegram's
flood limits (30/s overall, 3 per 3 s per private chat, 20/min per group).

squadbot answers through its outbox with its real pacing (bot/outbox/pacing.py defaults): every
answer should arrive, in close to the 20 s that 30/s allows. The baseline is a plain PTB
Application with its stock Updater whose handler answers with `reply_text` directly: the
429s are raised in the handler and the answers dropped. The fair baseline is the same
Application behind python-telegram-bot's own `AIORateLimiter(max_retries=5)`, which paces
every call and retries a 429 after its retry_after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.error import RetryAfter
from telegram.ext import AIORateLimiter, Application, CommandHandler, ContextTypes

from bench.common import (
    BotLog,
    CpuMeter,
    Enterprise,
    child_main,
    describe_limits,
    machine_note,
    on_emulator,
    populate,
    print_table,
    ratio,
    run_systems,
    start_bot,
    start_emulator,
    wait_idle,
    zone_database,
)
from bot.i18n import t
from bot.outbox import Limits
from bot.sandbox import BotApiEmulator

ENTERPRISES = 600
QUICK_ENTERPRISES = 150  # --quick: a quarter of the burst, about 5 s of sending
QUICK_ENV = "SQUADBOT_BENCH_BURST_QUICK"  # tells the children
SPREAD = 1.0  # seconds over which the 600 messages arrive
CHUNKS = 20
TIMEOUT = 60.0  # give up waiting for answers after this long
SYSTEMS = ("squadbot", "ptb", "ptb-limiter")
LABELS = {
    "squadbot": "squadbot (outbox)",
    "ptb": "stock PTB, reply_text",
    "ptb-limiter": "PTB + AIORateLimiter(max_retries=5)",
}
TARGET_S = 21.0  # the 600 answers, first update to last answer; 30/s allows 20 s


class Burst:
    """Runs on the emulator's loop: sends the burst, then stamps each answer as it lands."""

    def __init__(self, emu: BotApiEmulator, enterprises: list[Enterprise]) -> None:
        self.emu = emu
        self.log = BotLog(emu)
        self.users = [e.user_id for e in enterprises]

    async def run(
        self, finished: Callable[[], bool], quiet: float, timeout: float
    ) -> dict[str, Any]:
        """Send the burst; collect answers until all arrived, or the bot says it has finished
        and `quiet` s pass with no new answer, or `timeout` s."""
        wanted = set(self.users)
        answered: dict[int, int] = {}
        first = time.perf_counter()
        step = len(self.users) / CHUNKS
        last_answer = first
        for n in range(CHUNKS):
            await asyncio.sleep(max(0.0, first + n * SPREAD / CHUNKS - time.perf_counter()))
            for user_id in self.users[round(n * step) : round((n + 1) * step)]:
                self.emu.send_text(user_id, "/help")
        sent = time.perf_counter() - first
        while time.perf_counter() - first < timeout and len(answered) < len(wanted):
            seen = await self.log.wait_new(0.5)
            for s in seen:
                if s.chat_id in wanted:
                    answered[s.chat_id] = answered.get(s.chat_id, 0) + 1
                    last_answer = s.at
            if not seen and finished() and time.perf_counter() > last_answer + quiet:
                break
        return {
            "sent_over_s": sent,
            "answered_chats": len(answered),
            "answers": sum(answered.values()),
            "duplicates": sum(n - 1 for n in answered.values()),
            "seconds_to_last": last_answer - first,
            "http_429": self.emu.stats["http_429"],
            "sent_messages": self.emu.stats["sent_messages"],
        }


class DirectAnswers:
    """The stock way: answer in the handler; a 429 raises RetryAfter and the answer is lost."""

    def __init__(self) -> None:
        self.handled = 0
        self.dropped = 0

    def install(self, app: Application) -> None:  # type: ignore[type-arg]
        app.add_handler(CommandHandler("help", self.help))
        app.add_error_handler(self.error)

    async def help(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        try:
            await update.message.reply_text(t("zh-CN", "help.enterprise"))
        finally:
            self.handled += 1

    async def error(self, _update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Only counts: PTB would otherwise log each dropped answer; nothing is retried."""
        if isinstance(context.error, RetryAfter):
            self.dropped += 1


def burst_size() -> int:
    return QUICK_ENTERPRISES if os.environ.get(QUICK_ENV) == "1" else ENTERPRISES


async def run(system: str) -> dict[str, Any]:
    size = burst_size()
    with tempfile.TemporaryDirectory(prefix="squadbot-bench-") as folder:
        engine = zone_database(Path(folder))
        enterprises, groups = populate(engine, size)
        thread = start_emulator(enterprises, groups, flood_limits=True)
        burst: Burst = await on_emulator(thread, Burst, thread.emu, enterprises)
        direct = DirectAnswers()
        limiter = AIORateLimiter(max_retries=5) if system == "ptb-limiter" else None
        bot = await start_bot(
            system, thread, engine, limits=Limits(), install=direct.install, rate_limiter=limiter
        )

        def finished() -> bool:
            """squadbot retries until every answer is out; the baseline is done when its
            handler has run for every update, whether the answer got through or not."""
            return system != "squadbot" and direct.handled >= size

        try:
            await wait_idle(thread, bot.store)
            before = thread.call(lambda: dict(thread.emu.stats))
            cpu = CpuMeter(thread)
            figures: dict[str, Any] = await on_emulator(thread, burst.run, finished, 2.0, TIMEOUT)
            figures.update(cpu.read())
        finally:
            await bot.stop()
        thread.stop()
        engine.dispose()
    figures["http_429"] -= before["http_429"]
    figures["sent_messages"] -= before["sent_messages"]
    if bot.service is not None:
        figures["retry_afters_seen"] = bot.service.delivery.retry_afters
    else:
        figures["handled"] = direct.handled
        figures["raised_and_dropped"] = direct.dropped
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_ENTERPRISES} enterprises, not {ENTERPRISES}"
    )
    args = parser.parse_args(argv)
    os.environ[QUICK_ENV] = "1" if args.quick else "0"
    size = burst_size()
    print(f"burst: {size} enterprises each send /help within {SPREAD:g}s")
    print(f"machine: {machine_note()}")
    results = run_systems("bench.burst", LABELS, timeout=150)
    if results is None:
        return
    sq, pb, lim = results["squadbot"], results["ptb"], results["ptb-limiter"]
    print(
        "Emulator flood limits ON: 429 + retry_after past 30/s overall, 3 per 3 s per private "
        f"chat, 20/min per group.\nsquadbot paces with its defaults: {describe_limits(Limits())}."
    )
    header = ["", LABELS["squadbot"], LABELS["ptb"], LABELS["ptb-limiter"], "squadbot/limiter"]

    def row(label: str, key: str, compare: bool = False) -> list[Any]:
        return [label, sq[key], pb[key], lim[key], ratio(sq[key], lim[key]) if compare else ""]

    rows: list[list[Any]] = [
        row("updates sent, over seconds", "sent_over_s"),
        row(f"answers delivered (of {size})", "answered_chats", compare=True),
        ["answers lost", *(size - r["answered_chats"] for r in (sq, pb, lim)), ""],
        row("duplicate answers", "duplicates"),
        row("rejected calls (429s, emulator http_429)", "http_429"),
        ["  ... retried by the outbox", sq["retry_afters_seen"], "-", "-", ""],
        [
            "  ... raised in the handler and dropped",
            "-",
            pb["raised_and_dropped"],
            lim["raised_and_dropped"],
            "",
        ],
        row("seconds, first update to last answer", "seconds_to_last", compare=True),
        [
            "answers/s over that time",
            *(r["answered_chats"] / r["seconds_to_last"] for r in (sq, pb, lim)),
            "",
        ],
        row("process CPU seconds", "process_cpu_s", compare=True),
    ]
    print_table("outbound pacing under flood limits", header, rows)
    full = sq["answered_chats"] == size
    target = TARGET_S * size / ENTERPRISES
    met = full and sq["seconds_to_last"] <= target and sq["http_429"] == 0
    beats = sq["seconds_to_last"] < lim["seconds_to_last"]
    print(
        f"\ntarget (all {size} delivered in at most {target:g} s, 0 rejected calls): "
        f"{'met' if met else 'NOT met'} ({sq['answered_chats']} in "
        f"{sq['seconds_to_last']:.1f}s, {sq['http_429']} rejected; "
        f"{size / 30:.0f}s is the floor at 30/s)"
    )
    print(
        f"against AIORateLimiter(max_retries=5): {'faster' if beats else 'NOT faster'} "
        f"({sq['seconds_to_last']:.1f}s vs {lim['seconds_to_last']:.1f}s; "
        f"{lim['answered_chats']} delivered, {lim['http_429']} rejected)"
    )


if __name__ == "__main__":
    child_main(run, SYSTEMS)
