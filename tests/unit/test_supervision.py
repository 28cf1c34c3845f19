"""Loops are restarted, and a failure that repeats is logged once in full, then summarised."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.supervision import KEEPS_FAILING, Supervisor
from models.quiet_log import QuietLog, problem_key


def test_one_bad_row_retried_for_eight_seconds_writes_a_few_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    quiet = QuietLog(logging.getLogger("t"), interval=60.0, monotonic=lambda: now[0])
    caplog.set_level(logging.ERROR, logger="t")
    error = ValueError("row 7 is bad")
    written = 0
    for _ in range(1500):  # every 5 ms for 8 seconds
        written += quiet.error(problem_key("outbox", error), "failed: %s", error, exc_info=error)
        now[0] += 8 / 1500
    assert written == 1 and len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None
    now[0] += 60
    assert quiet.error(problem_key("outbox", error), "failed: %s", error, exc_info=error)
    summary = caplog.records[-1]
    assert "1499 more like this" in summary.getMessage()
    assert summary.exc_info is None  # the traceback only once


def test_different_problems_are_each_logged() -> None:
    quiet = QuietLog(logging.getLogger("t"), monotonic=lambda: 0.0)
    assert quiet.warning("a", "x")
    assert quiet.warning("b", "y")
    assert not quiet.warning("a", "x")


async def test_a_failing_loop_is_restarted_with_backoff_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor(first_delay=0.001, max_delay=0.004)
    runs = {"n": 0}
    stop = asyncio.Event()

    async def loop() -> None:
        runs["n"] += 1
        if runs["n"] <= KEEPS_FAILING + 2:
            raise RuntimeError("boom")
        await stop.wait()

    caplog.set_level(logging.ERROR)
    task = asyncio.create_task(supervisor.keep_running("demo", loop, stop.is_set))
    for _ in range(500):
        if runs["n"] > KEEPS_FAILING + 2:
            break
        await asyncio.sleep(0.005)
    state = supervisor.state("demo")
    assert state.running and state.restarts == KEEPS_FAILING + 2
    assert state.failing and supervisor.failing() == [state]
    assert sum("keeps failing" in r.getMessage() for r in caplog.records) == 1
    assert sum(r.exc_info is not None for r in caplog.records) == 1
    stop.set()
    await asyncio.wait_for(task, 1.0)


async def test_a_loop_that_returns_while_running_is_started_again() -> None:
    supervisor = Supervisor(first_delay=0.001, max_delay=0.001)
    runs = {"n": 0}
    stopping = {"yes": False}

    async def loop() -> None:
        runs["n"] += 1
        if runs["n"] == 3:
            stopping["yes"] = True

    await asyncio.wait_for(
        supervisor.keep_running("short", loop, lambda: stopping["yes"]), timeout=1.0
    )
    assert runs["n"] == 3
    assert "returned while running" in (supervisor.state("short").last_error or "")
