"""The running bot on a SQLite file checkpoints its log in a worker thread: its own
connections never do while it runs, and SQLite's own checkpoints are back once it stops."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.builders import help_is_answered
from tests.harness import start_harness
from tests.unit.test_checkpoints import automatic


async def test_the_bot_checkpoints_its_log_off_the_event_loop(tmp_path: Path) -> None:
    h = await start_harness(tmp_path)
    try:
        checkpoints = h.service.checkpoints
        assert checkpoints is not None
        assert automatic(h.engine) == 0
        await h.join("qian.hao", "enterprise", project="PV01")
        await h.settle()
        await help_is_answered(h, "qian.hao")
        runs = checkpoints.runs
        checkpoints.poke()
        await h.emu.wait_for(lambda: checkpoints.runs > runs, timeout=8.0)
        assert checkpoints.frames > 0  # what the bot wrote, copied into the database file
    finally:
        await h.stop()
    assert automatic(h.engine) == 1000
