"""`python -m bench [name ...]`: run the named benchmarks (all of them by default) and print
their figures; `python -m bench list` names them. Figures only: nothing here asserts."""

from __future__ import annotations

import importlib
import inspect
import sys
import time

BENCHMARKS = {
    "intake": "issue 2: filing-flow throughput, latency at 50 updates/s, peak RSS",
    "burst": "issue 3: 600 answers under Telegram's flood limits, outbox vs stock PTB",
    "deadlines": "issue 3: alert lateness at 1k/10k/100k open tickets, catch-up after restart",
    "starvation": "a private answer behind a 200-message group backlog, fair heads vs by id",
    "figures": "the managers' figures: /stats, /ranking, the monthly export at 10k/100k tickets",
    "scaling": "filings/s and p50/p99 through the webhook at rising load, to the p99 500 ms knee",
}


def run(name: str) -> None:
    entry = importlib.import_module(f"bench.{name}").main
    if inspect.signature(entry).parameters:
        entry([])  # its own command line, with defaults
    else:
        entry()


def main(argv: list[str]) -> int:
    if argv in (["list"], ["--list"], ["-l"]):
        for name, what in BENCHMARKS.items():
            print(f"{name:10} {what}")
        return 0
    unknown = [name for name in argv if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    for name in argv or list(BENCHMARKS):
        started = time.monotonic()
        print(f"=== bench {name} ===", flush=True)
        run(name)
        print(f"=== {name}: {time.monotonic() - started:.0f}s ===\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
