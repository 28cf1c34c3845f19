"""Shared plumbing for the benchmarks: a zone database with simulated enterprises, the Bot API
emulator on its own thread, a follower of what the bot posts there, squadbot and a stock
python-telegram-bot Application to compare it with, memory and percentile figures, tables.

Each system under test runs in a child process of its own (`python -m bench.<name> --system
X`), so that its peak RSS is its own and nothing one run leaves behind skews the next; the
parent prints the figures side by side.

Long on purpose: every benchmark stands on this one set of parts, so none repeats them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from telegram.ext import Application, ApplicationBuilder, BaseRateLimiter

from bot import heap
from bot.application import ZoneCache, build_application
from bot.outbox import Limits
from bot.sandbox import BotApiEmulator, EmulatorThread
from bot.service import Service
from migrations.runner import upgrade
from models.clock import SystemClock
from models.db import make_engine
from models.org import Membership, Person, Project, Role, Squad
from models.plumbing import InboxUpdate, OutboxMessage
from models.ticket import Ticket
from models.zone.load import load_and_apply

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ZONE = ROOT / "examples" / "zone.yaml"
FIRST_USER_ID = 700_001
FIRST_GROUP_ID = -1_000_000_900_001

# Pacing so loose that Telegram's flood limits never hold a message back: for measuring the
# bot's own cost, with the emulator's flood limits off as well.
UNPACED = Limits(
    per_second=100_000,
    private_per_second=100_000,
    private_burst=100_000,
    group_per_minute=6_000_000,
    group_burst=100_000,
)


# --- memory -----------------------------------------------------------------------------------
def rss_mb() -> float:
    """Resident set size now."""
    with open("/proc/self/statm") as handle:
        resident = int(handle.read().split()[1])
    return resident * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def high_water_mb() -> float:
    """The kernel's VmHWM: like ru_maxrss, but never carried over from the parent at exec."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return math.nan


class CpuMeter:
    """CPU seconds since creation: of the bot (every thread of the process but the
    emulator's, which also runs the load) and of the whole process."""

    def __init__(self, emulator: EmulatorThread) -> None:
        self.emulator = emulator
        self.emulator0 = emulator.cpu_seconds()
        self.process0 = time.process_time()

    def read(self) -> dict[str, float]:
        process = time.process_time() - self.process0
        return {
            "bot_cpu_s": process - (self.emulator.cpu_seconds() - self.emulator0),
            "process_cpu_s": process,
        }


def machine_note() -> str:
    """Other work on the machine skews every timing here: say how busy it was."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.1f} (1 min) / {five:.1f} (5 min)"


# --- figures ----------------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """Count, p50, p99 and max, in milliseconds."""
    return {
        "count": len(seconds),
        "p50_ms": percentile(seconds, 50) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "max_ms": max(seconds) * 1000 if seconds else math.nan,
    }


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.2f}x"


def cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain text table: first column left-aligned, figures right-aligned."""
    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in text_rows)) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = (v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    print(f"\n{title}")
    print(line([str(h) for h in header]))
    print("  ".join("-" * w for w in widths))
    for row in text_rows:
        print(line(row))


def describe_limits(limits: Limits) -> str:
    return (
        f"{limits.per_second:g}/s overall, {limits.private_per_second:g}/s per private chat "
        f"(burst {limits.private_burst:g}), {limits.group_per_minute:g}/min per group"
    )


def storage_note(path: Path) -> str:
    """Where the SQLite file lives, since fsync cost (synchronous=FULL) depends on it."""
    best = ("?", "?")
    with open("/proc/mounts") as mounts:
        for entry in mounts:
            device, mount, kind = entry.split()[:3]
            if str(path).startswith(mount) and len(mount) >= len(best[0]):
                best = (mount, f"{kind} on {device}")
    return best[1]


# --- the zone and its enterprises ---------------------------------------------------------------
@dataclass(frozen=True)
class Enterprise:
    user_id: int  # Telegram user id, which is also the private chat id
    name: str
    group_chat_id: int  # the group of the squad that serves the enterprise's project


def zone_database(folder: Path) -> Engine:
    """A migrated SQLite database (WAL, synchronous=FULL) with the example zone loaded."""
    engine = make_engine(f"sqlite:///{folder / 'squadbot.db'}")
    upgrade(engine)
    load_and_apply(engine, EXAMPLE_ZONE)
    return engine


def populate(engine: Engine, count: int) -> tuple[list[Enterprise], dict[int, str]]:
    """Bind every squad to a group chat and add `count` enterprise contacts, spread over the
    projects, as if each had redeemed an invite. Returns them and the groups (id -> title)."""
    enterprises: list[Enterprise] = []
    groups: dict[int, str] = {}
    with Session(engine) as session:
        squads = session.exec(select(Squad).order_by(col(Squad.id))).all()
        group_of: dict[int | None, int] = {}
        intake_group = None
        for n, squad in enumerate(squads):
            squad.group_chat_id = FIRST_GROUP_ID - n
            session.add(squad)
            group_of[squad.id] = squad.group_chat_id
            groups[squad.group_chat_id] = squad.name
            if squad.is_intake:
                intake_group = squad.group_chat_id
        projects = session.exec(select(Project).order_by(col(Project.id))).all()
        for i in range(count):
            project = projects[i % len(projects)]
            user_id = FIRST_USER_ID + i
            name = f"企业联系人{i + 1:03d}"
            person = Person(key=f"bench.enterprise.{i + 1:03d}", name=name)
            person.telegram_user_id = user_id
            session.add(person)
            session.flush()
            assert person.id is not None
            session.add(
                Membership(
                    person_id=person.id,
                    role=Role.ENTERPRISE,
                    project_id=project.id,
                    source="invite",
                )
            )
            group = group_of.get(project.squad_id, intake_group)
            assert group is not None
            enterprises.append(Enterprise(user_id, name, group))
        session.commit()
    return enterprises, groups


def tickets_filed(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(Ticket)).one())


async def wait_idle(thread: EmulatorThread, engine: Engine | None, timeout: float = 60.0) -> bool:
    """Until the emulator holds no update and, for squadbot, the inbox and outbox are empty."""

    def idle() -> bool:
        if thread.call(thread.emu.pending_updates) != 0:
            return False
        if engine is None:
            return True
        with Session(engine) as session:
            unhandled = session.exec(
                select(InboxUpdate.update_id).where(col(InboxUpdate.processed_at).is_(None))
            ).first()
            unsent = session.exec(
                select(OutboxMessage.id).where(OutboxMessage.state == "pending")
            ).first()
        return unhandled is None and unsent is None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(idle):
            return True
        await asyncio.sleep(0.05)
    return False


# --- the emulator -------------------------------------------------------------------------------
def start_emulator(
    enterprises: Sequence[Enterprise], groups: dict[int, str], **options: Any
) -> EmulatorThread:
    thread = EmulatorThread(**options).start()

    def people() -> None:
        for e in enterprises:
            thread.emu.add_user(e.user_id, e.name, language_code="zh-hans")
        for chat_id, title in groups.items():
            thread.emu.add_group(chat_id, title)

    thread.call(people)
    return thread


def settle_measurer() -> None:
    """Before a measured phase: the measuring process (the emulator's thread and the
    simulated people) collects and freezes what it holds, as the bot does once started
    (bot/heap.py). Its message log grows by thousands of messages a run, and a full
    collection walking it stopped the emulator for 114-155 ms in the middle of a phase: the
    answers that arrived meanwhile were stamped late, and counted against whichever bot was
    measured. Between phases, while nothing is measured."""
    heap.settle()


async def on_emulator(thread: EmulatorThread, fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn` on the emulator's loop without blocking this (the bot's) loop."""
    return await asyncio.to_thread(thread.call, fn, *args)


@dataclass(frozen=True)
class Seen:
    """A message the bot posted, stamped (perf_counter) when the follower noticed it."""

    at: float
    chat_id: int
    message_id: int
    buttons: tuple[tuple[str, ...], ...]  # callback_data of the inline keyboard, by row


class BotLog:
    """Follows the bot's messages as they reach the emulator. Runs on the emulator's loop and
    wakes on each of its state changes, so a message is stamped within a loop turn of its
    arrival. Reads the emulator's message log in place: `sent()` copies the whole log on each
    call, which at thousands of messages would cost the bot (same GIL) more than the bot's own
    work."""

    def __init__(self, emu: BotApiEmulator) -> None:
        self.emu = emu
        self._log = emu.bot_log
        self.cursor = len(self._log)

    async def wait_new(self, timeout: float) -> list[Seen]:
        with contextlib.suppress(TimeoutError):
            await self.emu.wait_for(lambda: len(self._log) > self.cursor, timeout=timeout)
        now = time.perf_counter()
        fresh = self._log[self.cursor :]
        self.cursor += len(fresh)
        seen = []
        for stored in fresh:
            message = stored.message
            rows = message.get("reply_markup", {}).get("inline_keyboard", [])
            buttons = tuple(tuple(str(b.get("callback_data")) for b in row) for row in rows)
            seen.append(Seen(now, message["chat"]["id"], message["message_id"], buttons))
        return seen


# --- the systems under test ---------------------------------------------------------------------
async def start_squadbot(thread: EmulatorThread, engine: Engine, limits: Limits) -> Service:
    """The real Service: inbox, outbox dispatcher, deadline timer, on this loop."""
    service = await start_squadbot_at(thread.url, thread.emu.token, engine, limits)
    heap.settle()  # as `Service.run_until_stopped` does once started
    return service


async def start_squadbot_at(url: str, token: str, engine: Engine, limits: Limits) -> Service:
    """The real Service against the Bot API server at `url`, started on this loop."""
    app = build_application(token, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot")
    service = Service(app, engine, SystemClock(), ZoneCache(), limits=limits, long_poll=10)
    await service.start()
    return service


async def start_stock_ptb(
    thread: EmulatorThread,
    install: Callable[[Application], None],  # type: ignore[type-arg]
    rate_limiter: BaseRateLimiter[Any] | None = None,
) -> Application:  # type: ignore[type-arg]
    """A plain python-telegram-bot Application polling with its stock Updater (and, when
    given, one of PTB's own rate limiters in front of every Bot API call)."""
    return await start_stock_ptb_at(thread.url, thread.emu.token, install, rate_limiter)


async def start_stock_ptb_at(
    url: str,
    token: str,
    install: Callable[[Application], None],  # type: ignore[type-arg]
    rate_limiter: BaseRateLimiter[Any] | None = None,
) -> Application:  # type: ignore[type-arg]
    """`start_stock_ptb` against the Bot API server at `url`."""
    builder = (
        ApplicationBuilder().token(token).base_url(f"{url}/bot").base_file_url(f"{url}/file/bot")
    )
    if rate_limiter is not None:
        builder = builder.rate_limiter(rate_limiter)
    app = builder.build()
    install(app)
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0.0, timeout=10)
    return app


async def stop_stock_ptb(app: Application) -> None:  # type: ignore[type-arg]
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    await app.stop()
    await app.shutdown()


class StatementCount:
    """The database statements and commits of every engine in the process from now on (the
    bot's own and its lease writer): a figure that does not move with the machine's speed."""

    def __init__(self) -> None:
        self.statements = self.commits = self.pragmas = 0
        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "commit", self._commit)

    def _statement(self, _conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        self.statements += 1
        if sql.lstrip()[:6].upper() == "PRAGMA":
            self.pragmas += 1

    def _commit(self, _conn: Any) -> None:
        self.commits += 1

    def stop(self) -> dict[str, int]:
        event.remove(Engine, "before_cursor_execute", self._statement)
        event.remove(Engine, "commit", self._commit)
        return {"statements": self.statements, "commits": self.commits, "pragmas": self.pragmas}


class RepeatedLogs(logging.Handler):
    """Collects log records and prints each distinct one once, with its count, at the end:
    a loaded bot logs the same warning hundreds of times, which would bury the figures."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        self.seen[line] = self.seen.get(line, 0) + 1

    def report(self) -> None:
        for line, count in sorted(self.seen.items(), key=lambda item: -item[1]):
            print(f"    {line}" + (f"  (x{count})" if count > 1 else ""), file=sys.stderr)


def call_counts(thread: EmulatorThread) -> dict[str, int]:
    """Bot API calls the emulator answered, as 'method status' -> count."""

    def count() -> dict[str, int]:
        counts: dict[str, int] = {}
        for method, _params, status in thread.emu.calls:
            key = f"{method} {status}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    result: dict[str, int] = thread.call(count)
    return result


@dataclass
class RunningBot:
    """Either system under test, started on this loop against the emulator."""

    system: str
    service: Service | None = None
    app: Application | None = None  # type: ignore[type-arg]

    @property
    def store(self) -> Engine | None:
        """The database to wait on before calling the bot idle (squadbot only)."""
        return self.service.engine if self.service is not None else None

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
        if self.app is not None:
            await stop_stock_ptb(self.app)


async def start_bot(
    system: str,
    thread: EmulatorThread,
    engine: Engine,
    *,
    limits: Limits,
    install: Callable[[Application], None],  # type: ignore[type-arg]
    rate_limiter: BaseRateLimiter[Any] | None = None,
) -> RunningBot:
    """'squadbot': the real Service paced by `limits`; anything else: stock PTB + `install`
    (behind `rate_limiter` when given)."""
    if system == "squadbot":
        return RunningBot(system, service=await start_squadbot(thread, engine, limits))
    return RunningBot(system, app=await start_stock_ptb(thread, install, rate_limiter))


# --- processes ------------------------------------------------------------------------------
def child_main(
    run: Callable[[str], Coroutine[Any, Any, dict[str, Any]]], systems: Sequence[str]
) -> None:
    """Entry point of a child: run one system, print its figures as one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", choices=systems, required=True)
    args = parser.parse_args()
    logs = RepeatedLogs()
    logging.basicConfig(level=logging.WARNING, handlers=[logs])
    try:
        result = asyncio.run(run(args.system))
    finally:
        logs.report()
    print(json.dumps(result))


def run_system(module: str, system: str, timeout: float) -> dict[str, Any]:
    """Run one system in a child process; its stderr passes through, stdout carries JSON."""
    print(f"  running {system} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, "--system", system],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"{system} did not finish within {timeout:.0f}s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": f"{system} exited with {done.returncode}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_s"] = time.monotonic() - started
    return result


def run_systems(
    module: str, labels: dict[str, str], timeout: float
) -> dict[str, dict[str, Any]] | None:
    """Each system in a child process of its own; None (after saying why) if any failed."""
    results = {system: run_system(module, system, timeout=timeout) for system in labels}
    for system, result in results.items():
        if "error" in result:
            print(f"{labels[system]}: {result['error']}")
    return None if any("error" in r for r in results.values()) else results
