"""Fairness between chats: 200 messages are queued for one squad group (which Telegram lets
the bot post to 20 times a minute), then an enterprise sends /help. How long until the answer
arrives in its private chat?

squadbot's dispatcher takes the due first message of every chat, higher lanes first
(bot/outbox/queue.py). The baseline, measured in the same run, is the selection squadbot used
before: the oldest 150 pending rows by id, one per chat, which a 200-message backlog to one
group fills entirely, so the answer waits until the backlog has shrunk below 150 (about two
and a half minutes at 20 a minute). Both run against the emulator with its flood limits on and
the outbox's real pacing.

    .venv/bin/python -m bench starvation            # about 4 minutes (the baseline's wait)
    .venv/bin/python -m bench.starvation --quick    # gives up on an answer after 20 s
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select as sql_select
from sqlmodel import Session

from bench.common import (
    Enterprise,
    child_main,
    describe_limits,
    machine_note,
    on_emulator,
    populate,
    print_table,
    ratio,
    run_systems,
    start_emulator,
    zone_database,
)
from bot.application import ZoneCache, build_application
from bot.i18n import t
from bot.outbox import Delivery, Limits
from bot.outbox.dispatcher import BATCH
from bot.outbox.queue import Ready
from bot.sandbox import BotApiEmulator
from bot.service import Service
from models.clock import SystemClock
from models.outbox import Due, enqueue
from models.plumbing import OutboxMessage

BACKLOG = 200
SYSTEMS = ("squadbot", "oldest-by-id")
LABELS = {"squadbot": "squadbot (ready heads, lanes)", "oldest-by-id": "oldest 150 by id"}
TIMEOUT = {"full": 240.0, "quick": 20.0}  # how long to wait for the answer
QUICK_ENV = "SQUADBOT_BENCH_STARVATION_QUICK"  # tells the children


class OldestById(Delivery):
    """The selection before: the oldest BATCH pending rows, whatever their chat or hold."""

    def _ready(self) -> Ready:
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        with Session(self.engine, expire_on_commit=False) as session:
            rows = [
                Due(*row)
                for row in session.connection().execute(
                    sql_select(*table.columns)
                    .where(table.c.state == "pending")
                    .order_by(table.c.id)
                    .limit(BATCH)
                )
            ]
        heads: dict[object, Due] = {}
        for row in rows:
            if row.channel != "webhook":
                heads.setdefault(row.chat_id, row)
        return Ready(list(heads.values()), [], more=True)  # read again after each pass


class Watch:
    """Runs on the emulator's loop: sends /help, stamps the answer and the group's messages."""

    def __init__(self, emu: BotApiEmulator, user: int, group: int) -> None:
        self.emu = emu
        self.user = user
        self.group = group
        self.needle = max(t("zh-CN", "help.enterprise").splitlines(), key=len)

    def helped(self) -> int:
        return sum(self.needle in (m.get("text") or "") for m in self.emu.sent(self.user))

    async def run(self, timeout: float) -> dict[str, Any]:
        before = self.helped()
        group_before = len(self.emu.sent(self.group))
        asked = time.perf_counter()
        self.emu.send_text(self.user, "/help")
        answered = None
        try:
            await self.emu.wait_for(lambda: self.helped() > before, timeout=timeout)
            answered = time.perf_counter() - asked
        except TimeoutError:
            pass
        sent = [m.get("text") or "" for m in self.emu.sent(self.group)]
        numbers = [int(text.rsplit("#", 1)[1]) for text in sent if "#" in text]
        return {
            "answer_s": answered,
            "group_delivered": len(sent) - group_before,
            "group_in_order": numbers == sorted(numbers),
            "waited_s": time.perf_counter() - asked,
            "http_429": self.emu.stats["http_429"],
        }


async def run(system: str) -> dict[str, Any]:
    quick = os.environ.get(QUICK_ENV) == "1"
    with tempfile.TemporaryDirectory(prefix="squadbot-bench-") as folder:
        engine = zone_database(Path(folder))
        enterprises, groups = populate(engine, 1)
        ent: Enterprise = enterprises[0]
        thread = start_emulator(enterprises, groups, flood_limits=True)
        url = thread.url
        app = build_application(
            thread.emu.token, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot"
        )
        service = Service(app, engine, SystemClock(), ZoneCache(), limits=Limits(), long_poll=10)
        if system == "oldest-by-id":
            service.delivery = OldestById(
                engine, app.bot, service.zone, clock=service.clock, limits=Limits()
            )
        await service.start()
        try:
            with Session(engine) as session:
                for n in range(BACKLOG):
                    enqueue(
                        session,
                        service.clock.now(),
                        chat_id=ent.group_chat_id,
                        template="thread.from_squad",
                        locale="zh-CN",
                        params={"number": "YZ-1", "name": "专班", "text": f"#{n}"},
                    )
                session.commit()
            service.delivery.poke()
            await asyncio.sleep(0.5)  # the group's burst goes out; the backlog remains
            watch: Watch = await on_emulator(
                thread, Watch, thread.emu, ent.user_id, ent.group_chat_id
            )
            figures: dict[str, Any] = await on_emulator(
                thread, watch.run, TIMEOUT["quick" if quick else "full"]
            )
        finally:
            await service.stop()
        thread.stop()
        engine.dispose()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.starvation", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"wait at most {TIMEOUT['quick']:g}s")
    args = parser.parse_args(argv)
    os.environ[QUICK_ENV] = "1" if args.quick else "0"
    print(f"starvation: {BACKLOG} messages queued for one group, then /help in a private chat")
    print(f"machine: {machine_note()}")
    results = run_systems("bench.starvation", LABELS, timeout=TIMEOUT["full"] + 60)
    if results is None:
        return
    sq, old = results["squadbot"], results["oldest-by-id"]
    print(
        "Emulator flood limits ON (30/s overall, 3 per 3 s per private chat, 20/min per group)."
        f"\nBoth pace with the defaults: {describe_limits(Limits())}."
    )
    sq_ms = sq["answer_s"] * 1000 if sq["answer_s"] is not None else None
    old_ms = old["answer_s"] * 1000 if old["answer_s"] is not None else None
    bound = old_ms if old_ms is not None else old["waited_s"] * 1000
    rows: list[list[Any]] = [
        [
            "/help -> answer, ms",
            sq_ms if sq_ms is not None else f"none in {sq['waited_s']:.0f}s",
            old_ms if old_ms is not None else f"none in {old['waited_s']:.0f}s",
            ratio(sq_ms, bound)
            + (f" ({bound / sq_ms:,.0f}x sooner" if sq_ms else " (")
            + (")" if old_ms is not None else ", at least)"),
        ],
        ["group messages delivered meanwhile", sq["group_delivered"], old["group_delivered"], ""],
        [
            "group messages in order",
            "yes" if sq["group_in_order"] else "NO",
            "yes" if old["group_in_order"] else "NO",
            "",
        ],
        ["429s received", sq["http_429"], old["http_429"], ""],
    ]
    print_table(
        "delivery delay behind a 200-message group backlog",
        ["", LABELS["squadbot"], LABELS["oldest-by-id"], "squadbot/baseline"],
        rows,
    )


if __name__ == "__main__":
    if "--system" in sys.argv:
        child_main(run, SYSTEMS)
    else:
        main()
