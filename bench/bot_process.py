"""A bot under test in a process of its own, as it runs in a zone: the Bot API server (here
the emulator, with the simulated people) is another program, so the bot's interpreter lock,
processor and memory are the bot's alone, and its CPU is read from the kernel.

`python -m bench.bot_process SPEC` starts the system SPEC names (JSON: "system", "url",
"token", "database", "enterprises", and for the baseline "handlers": "module:Class", built
with the enterprises, whose `install` adds its handlers), prints `READY {json}` once it
polls, runs until a line `STOP` (or the end of input) arrives, stops, and prints
`RESULT {json}`: what only the bot's process can count (the database statements of
squadbot, its memory). `BotProcess` is the other end, used by the benchmark.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    UNPACED,
    Enterprise,
    RepeatedLogs,
    StatementCount,
    high_water_mb,
    peak_rss_mb,
    rss_mb,
    start_squadbot_at,
    start_stock_ptb_at,
    stop_stock_ptb,
)
from bot import heap
from models.db import make_engine

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds_of(pid: int) -> float:
    """User and system CPU of every thread of process `pid` so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # after the name: state is field 3, utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class BotProcess:
    """The benchmark's handle on a bot in its own process."""

    process: asyncio.subprocess.Process
    ready: dict[str, Any]

    @classmethod
    async def start(cls, spec: dict[str, Any], timeout: float = 60.0) -> BotProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.bot_process",
            json.dumps(spec),
            cwd=Path(__file__).resolve().parent.parent,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        ready = await asyncio.wait_for(cls._line(process, "READY "), timeout)
        return cls(process, ready)

    @staticmethod
    async def _line(process: asyncio.subprocess.Process, prefix: str) -> dict[str, Any]:
        assert process.stdout is not None
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"the bot's process ended before saying {prefix.strip()}")
            if line.startswith(prefix):
                found: dict[str, Any] = json.loads(line.removeprefix(prefix))
                return found

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.pid)

    async def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        """Tell it to stop; what it counted."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"STOP\n")
        await self.process.stdin.drain()
        self.process.stdin.close()
        try:
            result = await asyncio.wait_for(self._line(self.process, "RESULT "), timeout)
        finally:
            await asyncio.wait_for(self.process.wait(), timeout)
        return result


# --- the bot's side ---------------------------------------------------------------------
async def run(spec: dict[str, Any]) -> dict[str, Any]:
    system = spec["system"]
    enterprises = [Enterprise(*e) for e in spec["enterprises"]]
    engine = make_engine(f"sqlite:///{spec['database']}") if system == "squadbot" else None
    rss_before = rss_mb()
    counted = StatementCount()
    if engine is not None:
        service = await start_squadbot_at(spec["url"], spec["token"], engine, UNPACED)
        app = None
    else:
        module, _, name = spec["handlers"].partition(":")
        handlers = getattr(importlib.import_module(module), name)(enterprises)
        service = None
        app = await start_stock_ptb_at(spec["url"], spec["token"], handlers.install)
    heap.settle()  # as `Service.run_until_stopped` does once started
    print("READY " + json.dumps({"pid": os.getpid()}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "STOP":
            break
    if service is not None:
        await service.stop()
    if app is not None:
        await stop_stock_ptb(app)
    database = counted.stop()
    if engine is not None:
        engine.dispose()
    return {
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "high_water_mb": high_water_mb(),
        "database": database,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    logs = RepeatedLogs()
    logging.basicConfig(level=logging.WARNING, handlers=[logs])
    try:
        result = asyncio.run(run(spec))
    finally:
        logs.report()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
