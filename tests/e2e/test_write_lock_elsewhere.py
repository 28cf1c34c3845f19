"""Another process holds the SQLite write lock (a backup, a report, an operator's shell):
the bot's event loop goes on. The update waits for the lock in the handlers' thread, the
first messages of the chats with something queued go out while it is held (a chat's next
message waits until the first is written down as sent), and the update is handled once
the lock goes."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import time
import traceback

from sqlmodel import Session

from models.outbox import enqueue
from tests.e2e.builders import raw_message
from tests.harness import Harness

HELD = 2.5  # seconds the other process keeps the lock after the queued messages went out
MENU = "请选择问题类别"


class LoopBeat:
    """How long the event loop goes without a turn for a 20 ms sleep, while it runs; a
    watcher thread writes down where the loop's thread stood whenever it has gone half a
    second without a turn, so a stall names the code that held it."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.stalls: list[str] = []
        self._beating = True
        self._last = time.perf_counter()
        self._loop_thread = threading.get_ident()
        self._task = asyncio.create_task(self._beat())
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    async def _beat(self) -> None:
        while self._beating:
            await asyncio.sleep(0.02)
            now = time.perf_counter()
            self.gaps.append(now - self._last)
            self._last = now

    def _watch(self) -> None:
        seen = None
        while self._beating:
            time.sleep(0.05)
            last = self._last
            if last != seen and time.perf_counter() - last > 0.5:
                seen = last  # once a stall
                frame = sys._current_frames().get(self._loop_thread)
                if frame is not None:
                    self.stalls.append("".join(traceback.format_stack(frame)[-12:]))

    async def stop(self) -> float:
        """The longest gap."""
        self._beating = False
        await self._task
        self._watcher.join()
        return max(self.gaps)

    def named(self, longest: float) -> str:
        where = "\n--- stalled at:\n".join(["", *self.stalls]) if self.stalls else ""
        return f"the event loop stood still for {longest:.2f} s{where}"


def lock_database(h: Harness) -> sqlite3.Connection:
    path = h.engine.url.database
    assert path
    locker = sqlite3.connect(path, isolation_level=None, timeout=5)
    locker.execute("BEGIN EXCLUSIVE")
    return locker


async def test_a_write_lock_held_elsewhere_stalls_only_the_updates(harness: Harness) -> None:
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.join("yang.fan", "enterprise", project="HV01")
    await h.join("zhou.jun", "member", squad="PV")
    ent = h.ids["qian.hao"]
    chats = [h.ids[key] for key in ("qian.hao", "yang.fan", "zhou.jun")]
    await h.settle()
    since = {chat: len(h.emu.sent(chat)) for chat in chats}
    with Session(h.engine) as session:
        for n, chat in enumerate(chats):
            enqueue(
                session,
                h.clock.now(),
                chat_id=chat,
                template="thread.from_squad",
                locale="zh-CN",
                params={"number": "YZ-1", "name": "专班", "text": f"#{n}"},
            )
        session.commit()

    def queued_out() -> int:
        return sum(
            "#" in (m.get("text") or "") for chat in chats for m in h.emu.sent(chat)[since[chat] :]
        )

    locker = lock_database(h)
    beat = LoopBeat()
    try:
        h.emu.send_text(ent, "/new")  # to be stored and handled: waits for the lock
        h.service.delivery.poke()
        await h.emu.wait_for(lambda: queued_out() == 3, timeout=4.0)
        await asyncio.sleep(HELD)
        assert not any(MENU in t for t in h.texts(ent)[since[ent] :])  # the update waits
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        longest = await beat.stop()
    # without the lock in the way of the loop, no turn waited anywhere near the lock's time
    assert longest < 1.0, beat.named(longest)
    # the batch was tried on the loop, met the lock, and waited for it in a worker thread
    assert h.service.inbox.stores_waited >= 1
    await h.emu.wait_for(lambda: any(MENU in t for t in h.texts(ent)[since[ent] :]), timeout=15.0)
    await h.settle()
    assert sum(MENU in t for t in h.texts(ent)[since[ent] :]) == 1  # handled once
    assert queued_out() == 3  # each sent once


async def test_an_update_tried_on_the_loop_moves_to_the_thread_when_the_store_is_locked(
    harness: Harness,
) -> None:
    """On SQLite a unit of work is tried on the bot's loop without waiting for any lock; a
    write lock held elsewhere sends it, with nothing of the try kept, to the handlers'
    thread, where it waits while the loop goes on; it is handled once, when the lock
    goes."""
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    ent = h.ids["qian.hao"]
    await h.settle()
    runner = h.service.runner
    assert runner.inline and runner.hurried_busy == 0
    since = len(h.texts(ent))
    await runner.handle(raw_message(ent, "/new", update_id=7001))  # no lock: on the loop
    assert runner.hurried_busy == 0
    h.service.delivery.poke()
    await h.emu.wait_for(lambda: any(MENU in t for t in h.texts(ent)[since:]), timeout=5.0)

    locker = lock_database(h)

    def unlock() -> None:
        locker.execute("ROLLBACK")
        locker.close()

    beat = LoopBeat()
    asyncio.get_running_loop().call_later(1.0, unlock)
    since = len(h.texts(ent))
    started = time.perf_counter()
    try:
        outcome = await runner.handle(raw_message(ent, "/new", update_id=7002))
    finally:
        longest = await beat.stop()
    assert outcome == "done"
    assert runner.hurried_busy == 1  # tried on the loop, then handled in the thread
    assert time.perf_counter() - started >= 0.9  # it waited for the lock...
    assert longest < 0.5, beat.named(longest)  # ...there
    h.service.delivery.poke()
    await h.emu.wait_for(lambda: any(MENU in t for t in h.texts(ent)[since:]), timeout=5.0)
    assert sum(MENU in t for t in h.texts(ent)[since:]) == 1  # the try left nothing behind
