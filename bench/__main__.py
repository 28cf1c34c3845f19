"""`python -m bench [--quick] [name ...]`: run the named benchmarks (all of them by default)
and print their figures; `python -m bench list` names them with how long each takes. Before
it starts it says how long the whole run will take; `--quick` runs each benchmark's short
mode. Figures only: nothing here asserts."""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    what: str
    minutes: float  # about how long the full run takes on a quiet 2-core machine
    quick_minutes: float  # ... and its --quick mode


BENCHMARKS = {
    "intake": Benchmark(
        "filing-flow throughput, CPU per update, latency at 20/50/100 updates/s, peak RSS",
        4.0,
        1.5,
    ),
    "burst": Benchmark(
        "600 answers under Telegram's flood limits: outbox vs stock PTB vs AIORateLimiter",
        1.0,
        0.5,
    ),
    "deadlines": Benchmark(
        "alert lateness at 1k/10k/100k open tickets, catch-up after restart", 9.0, 1.5
    ),
    "starvation": Benchmark(
        "a private answer behind a 200-message group backlog, fair heads vs by id", 3.0, 1.0
    ),
    "figures": Benchmark(
        "the managers' figures: /stats, /ranking, the monthly export at 10k/100k tickets",
        6.0,
        1.0,
    ),
    "duplicates": Benchmark(
        "messages seen twice under a run of Bot API faults, by kind of fault", 1.0, 0.3
    ),
    "transport": Benchmark(
        "CPU and time of one Bot API call: PTB's stock httpx request vs squadbot's transport",
        0.5,
        0.2,
    ),
    "scaling": Benchmark(
        "filings/s and p50/p99 through the webhook at rising load, the knee, 1..N processes",
        8.0,
        3.0,
    ),
}


def run(name: str, quick: bool) -> None:
    entry = importlib.import_module(f"bench.{name}").main
    if inspect.signature(entry).parameters:
        entry(["--quick"] if quick else [])  # its own command line
    else:
        entry()


def plan(names: list[str], quick: bool) -> str:
    minutes = [
        (name, BENCHMARKS[name].quick_minutes if quick else BENCHMARKS[name].minutes)
        for name in names
    ]
    total = sum(m for _, m in minutes)
    parts = ", ".join(f"{name} ~{m:g} min" for name, m in minutes)
    mode = "quick mode" if quick else "full run; --quick (make bench QUICK=1) takes less"
    return f"about {total:g} minutes ({parts}); {mode}"


def main(argv: list[str]) -> int:
    if argv in (["list"], ["--list"], ["-l"]):
        for name, bench in BENCHMARKS.items():
            print(
                f"{name:10} {bench.what} (~{bench.minutes:g} min, quick ~{bench.quick_minutes:g})"
            )
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="each benchmark's short mode")
    parser.add_argument("names", nargs="*", metavar="name", help=", ".join(BENCHMARKS))
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    names = args.names or list(BENCHMARKS)
    print(f"bench: {plan(names, args.quick)}", flush=True)
    began = time.monotonic()
    for name in names:
        started = time.monotonic()
        print(f"=== bench {name} ===", flush=True)
        run(name, args.quick)
        print(f"=== {name}: {time.monotonic() - started:.0f}s ===\n", flush=True)
    print(f"bench: done in {(time.monotonic() - began) / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
