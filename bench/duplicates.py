"""Duplicates under a run of Bot API faults: how often does a person see a message twice?

A burst of numbered messages is queued for many private chats and sent by the real outbox
against the emulator while it fails each send at random (seeded, so a run repeats), with:
- drops: Telegram delivers the message, then the answer is lost (a 5xx after the fact, as
  when a send times out after it arrived);
- others: 500, 502, 503, 504 and 429 before anything is delivered;
- a mix of both.
The figures: faults injected, duplicates seen (messages in the chats beyond the rows the
outbox sent), duplicates per drop, per 1,000 messages, whether every chat got its messages in
order, and the run's time against the same burst with no faults (the baseline, measured
first in the same run).

    .venv/bin/python -m bench duplicates            # 20 chats x 25 messages, 7 runs
    .venv/bin/python -m bench.duplicates --quick    # 5 chats x 20 messages, 4 runs
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, func, select

from bench.common import UNPACED, machine_note, print_table, ratio, zone_database
from bot.sandbox.records import SENDING_METHODS
from bot.sandbox.script import start_session
from models.clock import FakeClock
from models.outbox import enqueue
from models.plumbing import OutboxMessage

DROPS = [(500, True), (502, True), (504, True)]
OTHERS = [(500, False), (502, False), (503, False), (504, False), (429, False)]
FIRST_CHAT = 810_001
SEED = 20


@dataclass(frozen=True)
class Case:
    label: str
    rate: float
    faults: list[tuple[int, bool]]


FULL = [
    Case("no faults (baseline)", 0.0, []),
    Case("drops, 5%", 0.05, DROPS),
    Case("drops, 10%", 0.10, DROPS),
    Case("drops, 20%", 0.20, DROPS),
    Case("others, 10%", 0.10, OTHERS),
    Case("others, 20%", 0.20, OTHERS),
    Case("mixed, 20%", 0.20, DROPS + OTHERS),
]
QUICK = [FULL[0], FULL[2], FULL[4], FULL[6]]


async def run_case(case: Case, chats: int, per_chat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="squadbot-bench-") as folder:
        engine = zone_database(Path(folder))
        session = await start_session(
            engine, FakeClock(), limits=UNPACED, data_dir=Path(folder) / "data"
        )
        emu = session.emu
        ids = [FIRST_CHAT + n for n in range(chats)]
        for chat in ids:
            emu.add_user(chat, f"企业{chat}")
        rate = emu.fail_at_random(case.rate, case.faults, seed=SEED) if case.faults else None
        started = time.perf_counter()
        try:
            with Session(engine) as db:
                for n in range(per_chat):
                    for chat in ids:
                        enqueue(
                            db,
                            session.clock.now(),
                            chat_id=chat,
                            template="thread.from_squad",
                            locale="zh-CN",
                            params={"number": "YZ-1", "name": "专班", "text": f"#{n:03d}"},
                        )
                db.commit()
            session.service.delivery.poke()

            def pending() -> int:
                with Session(engine) as db:
                    return int(
                        db.exec(
                            select(func.count())
                            .select_from(OutboxMessage)
                            .where(col(OutboxMessage.state) == "pending")
                        ).one()
                    )

            while pending():
                await asyncio.sleep(0.05)
            seconds = time.perf_counter() - started
            in_order = True
            for chat in ids:
                seen = [str(m.get("text", "")).rsplit("#", 1)[-1] for m in emu.sent(chat)]
                folded = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
                in_order = in_order and folded == [f"{n:03d}" for n in range(per_chat)]
            with Session(engine) as db:
                sent = int(
                    db.exec(
                        select(func.count())
                        .select_from(OutboxMessage)
                        .where(col(OutboxMessage.state) == "sent")
                    ).one()
                )
            injected = rate.injected if rate is not None else {}
            drops = sum(n for (m, _s, a), n in injected.items() if a and m in SENDING_METHODS)
            others = sum(n for (_m, _s, a), n in injected.items() if not a)
        finally:
            emu.stop_failing()
            await session.stop()
    messages = chats * per_chat
    duplicates = len(emu.sent()) - sent
    return {
        "label": case.label,
        "messages": messages,
        "drops": drops,
        "others": others,
        "duplicates": duplicates,
        "per_drop": duplicates / drops if drops else None,
        "per_1000": duplicates * 1000 / messages,
        "in_order": in_order,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.duplicates", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 chats x 20 messages, 4 runs")
    args = parser.parse_args(argv)
    chats, per_chat = (5, 20) if args.quick else (20, 25)
    cases = QUICK if args.quick else FULL
    print(f"duplicates: {chats} chats x {per_chat} messages through the outbox, faults seeded")
    print(f"machine: {machine_note()}")
    results = [asyncio.run(run_case(case, chats, per_chat)) for case in cases]
    baseline = results[0]["seconds"]
    rows = [
        [
            r["label"],
            r["drops"],
            r["others"],
            r["duplicates"],
            r["per_drop"],
            r["per_1000"],
            "yes" if r["in_order"] else "NO",
            r["seconds"],
            ratio(r["seconds"], baseline),
        ]
        for r in results
    ]
    print_table(
        "messages seen twice, by the faults met on the way",
        [
            "faults (rate per call)",
            "drops",
            "other faults",
            "duplicates",
            "dup/drop",
            "dup per 1000 msgs",
            "in order",
            "seconds",
            "time/baseline",
        ],
        rows,
    )
    print(
        "\nA drop is a send Telegram delivered whose answer was lost; the outbox cannot tell "
        "it from one that never arrived, so it sends again: one duplicate per drop, next to "
        "the first. No other fault makes one."
    )


if __name__ == "__main__":
    main()
