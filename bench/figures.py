"""How long do the managers' figures take, and how much memory, with 10k and 100k tickets
in the month?

For each store (SQLite in WAL mode, and PostgreSQL when SQUADBOT_TEST_POSTGRES_DSN is set)
and each size, a fresh child process loads the month (and as many tickets the month
before, which the ranking compares with), then times what the chat commands do:

    /stats    the figures of the month (models.figures.stats) and the message's params,
              as the handler builds them; then its two charts, apart
    /ranking  the ranking with the month before (models.ranking.ranking); its chart apart
    export    the whole .xlsx ledger (bot.reports.export.write_workbook)

The baseline is the same store before the tickets kept their figures: the child loads the
tickets at migration 0007 and first times /stats and /ranking as they were computed then
(bench/figures_before.py); then it migrates the store to the head (timed: what 0008 costs
at that size), gathers statistics again, and times today's code. Both must give the same
figures, or the child fails. The ratio before / now is printed per store and size.

Each step is timed cold (first run) and warm (median of the next runs); peak RSS is the
child's high-water mark after the step, so it includes everything before it (the
high-water mark is reset after the baseline, so today's steps do not carry its peak).

    .venv/bin/python -m bench.figures            # 10k and 100k, on each store
    .venv/bin/python -m bench.figures --quick    # 10k only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.children import run_child

ROOT = Path(__file__).resolve().parent.parent
ZONE_FILE = ROOT / "examples" / "zone.yaml"
SH = ZoneInfo("Asia/Shanghai")
YEAR, MONTH = 2026, 11
CHUNK = 5000
WARM_RUNS = 5
TARGETS = {"stats": 0.300, "export": 10.0}  # seconds at 100k
BEFORE = "0007"  # the baseline's migration: before the tickets kept their figures


# --- the load ---------------------------------------------------------------------------


def load_month(engine: Any, n: int, year: int, month: int, seed: int, first_id: int) -> None:
    """N tickets filed over the month, spread over the zone's squads and categories, with
    the mix a busy zone shows: most answered and resolved in time, some late, some open,
    plans, rework, ratings, and alert-ledger rows for what went late."""
    from sqlmodel import Session, select

    from models.org import Category, Person, Squad
    from models.plumbing import AlertRecord
    from models.ticket import Ticket

    with Session(engine) as session:
        squads = [s.id for s in session.exec(select(Squad)).all()]
        categories = [c.code for c in session.exec(select(Category)).all()]
        person = session.exec(select(Person)).first()
        assert person is not None
        enterprise = person.id
    rng = random.Random(seed)
    start = datetime(year, month, 1, tzinfo=SH).astimezone(UTC)
    following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=SH).astimezone(UTC)
    span = (following - start).total_seconds()
    tickets = Ticket.__table__  # type: ignore[attr-defined]
    ledger = AlertRecord.__table__  # type: ignore[attr-defined]
    weights = [1 + (i % 4) for i in range(len(squads))]
    # tickets are numbered in the order they are filed, as the bot numbers them
    moments = sorted(start + timedelta(seconds=rng.random() * span) for _ in range(n))
    for lo in range(0, n, CHUNK):
        rows, alerts = [], []
        for i in range(lo, min(n, lo + CHUNK)):
            tid = first_id + i
            filed = moments[i]
            row = _ticket(rng, tid, filed, enterprise, rng.choices(squads, weights)[0])
            row["category_code"] = categories[i % len(categories)]
            rows.append(row)
            if row["first_response_at"] is None or row["first_response_at"] > row["response_due"]:
                alerts.append(_alert(tid, "response", "breach", row["response_due"]))
            resolved = row["resolved_at"]
            if resolved is not None and resolved > row["resolve_due"]:
                alerts.append(_alert(tid, "handling", "warning", row["handling_due"]))
                alerts.append(_alert(tid, "handling", "breach", row["handling_due"]))
        with engine.begin() as conn:
            conn.execute(tickets.insert(), rows)
            if alerts:
                conn.execute(ledger.insert(), alerts)


def _ticket(
    rng: random.Random, tid: int, filed: datetime, enterprise: int | None, squad: int | None
) -> dict[str, Any]:
    minute = timedelta(minutes=1)
    answered = rng.random() < 0.97
    first = filed + minute * (rng.uniform(1, 9) if rng.random() < 0.85 else rng.uniform(11, 60))
    roll = rng.random()
    resolved = None
    if answered and roll < 0.8:
        resolved = filed + minute * rng.uniform(20, 115)
    elif answered and roll < 0.93:
        resolved = filed + minute * rng.uniform(125, 600)
    plan = answered and rng.random() < 0.1
    closed = resolved is not None and rng.random() < 0.7
    state = "closed" if closed else "resolved" if resolved else "claimed" if answered else "open"
    return {
        "id": tid,
        "number": f"B-{tid:07d}",
        "project_id": None,
        "squad_id": squad,
        "enterprise_id": enterprise,
        "category_code": "other",
        "urgency": "urgent" if rng.random() < 0.2 else "normal",
        "description": "施工现场临时停水，需要尽快恢复供水以便浇筑混凝土",
        "state": state,
        "owner_id": enterprise if answered else None,
        "language": "zh-CN",
        "cycle": 1 if closed and rng.random() < 0.05 else 0,
        "created_at": filed,
        "updated_at": filed,
        "first_response_at": first if answered else None,
        "response_due": filed + 10 * minute,
        "handling_due": filed + 120 * minute,
        "handling_started": filed,
        "plan_required": plan,
        "plan_due": filed + 20 * 60 * minute if plan else None,
        "plan_target": filed + timedelta(days=7) if plan else None,
        "plan_agreed_at": filed + 20 * 60 * minute if plan else None,
        "plan_agreed_due": filed + timedelta(days=1) if plan else None,
        "paused_at": None,
        "handling_remaining_s": None,
        "resolved_at": resolved,
        "resolve_due": filed + 120 * minute if resolved else None,
        "closed_at": resolved + timedelta(hours=3) if closed and resolved else None,
        "rating": rng.choice((3, 4, 4, 5, 5, 5)) if closed and rng.random() < 0.8 else None,
    }


def _alert(tid: int, deadline: str, level: str, due: datetime) -> dict[str, Any]:
    return {
        "ticket_id": tid,
        "deadline": deadline,
        "level": level,
        "cycle": 0,
        "due_at": due,
        "fired_at": due,
    }


# --- one child: one store, one size ---------------------------------------------------------


def high_water_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_high_water() -> None:
    """From here on, VmHWM is the peak since now (Linux: 5 > clear_refs)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def gather_statistics(engine: Any, db: str) -> None:
    """As a running zone's store would be: statistics gathered (and, on PostgreSQL, the
    visibility map that index-only scans need, which autovacuum keeps)."""
    if db == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE ticket")
            conn.exec_driver_sql("VACUUM ANALYZE alertrecord")


def timed(step: Callable[[], object], warm: int = WARM_RUNS) -> dict[str, float]:
    """Wall time cold and warm (median), and this process's CPU time warm: on a busy
    machine the CPU time is the steadier figure (for PostgreSQL it leaves out the
    server's own work)."""
    started = time.perf_counter()
    step()
    cold = time.perf_counter() - started
    runs, cpu = [], []
    for _ in range(warm):
        started, cpu_started = time.perf_counter(), time.process_time()
        step()
        runs.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return {
        "cold_s": cold,
        "warm_s": statistics.median(runs) if runs else cold,
        "cpu_s": statistics.median(cpu) if cpu else float("nan"),
        "rss_mb": high_water_mb(),
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import create_engine
    from sqlmodel import Session

    from bench import figures_before as before
    from bot.reports import charts
    from bot.reports.export import namer, write_workbook
    from handlers.figure_lines import block, squad_line
    from migrations.runner import upgrade
    from models import figures
    from models.db import make_engine
    from models.periods import month_period
    from models.ranking import ranking
    from models.zone.config import read_zone
    from models.zone.load import load_and_apply

    n = spec["n"]
    folder = Path(spec["folder"])
    if spec["db"] == "sqlite":
        engine = make_engine(f"sqlite:///{folder / 'figures.db'}")
    else:
        options = {"options": f"-csearch_path={spec['schema']}"}
        engine = create_engine(spec["dsn"], connect_args=options)
    upgrade(engine, BEFORE)
    load_and_apply(engine, ZONE_FILE)
    started = time.perf_counter()
    load_month(engine, n, YEAR, MONTH - 1, seed=n + 1, first_id=1)
    load_month(engine, n, YEAR, MONTH, seed=n, first_id=n + 1)
    gather_statistics(engine, spec["db"])
    loaded = time.perf_counter() - started
    with Session(engine) as session:
        zone = read_zone(session)
    period = month_period(YEAR, MONTH, SH)
    now = datetime(YEAR, MONTH + 1, 5, tzinfo=SH).astimezone(UTC)
    result: dict[str, Any] = {"load_s": loaded, "start_rss_mb": high_water_mb()}
    found: dict[str, Any] = {}

    def stats_before() -> None:
        with Session(engine) as session:
            found["stats_before"] = before.stats(session, period, now)

    def ranking_before() -> None:
        with Session(engine) as session:
            found["ranking_before"] = before.ranking(session, period, now, zone.ranking)

    result["stats_before"] = timed(stats_before)
    result["ranking_before"] = timed(ranking_before)
    started = time.perf_counter()
    upgrade(engine)
    result["migrate_s"] = time.perf_counter() - started
    gather_statistics(engine, spec["db"])
    reset_high_water()

    def stats() -> None:
        with Session(engine) as session:
            figured = found["stats"] = figures.stats(session, period, now)
            [block(figured.total), *(squad_line(f) for f in figured.squads)]

    def stats_charts() -> None:
        with Session(engine) as session:
            days = figures.daily(session, period, now)
            mix = figures.category_mix(session, period)
            names = namer(figures.category_names(session))
        charts.daily_chart(days, period, "zh-CN", folder / "daily.png")
        charts.category_chart(mix, period, "zh-CN", names, folder / "categories.png")

    def ranked() -> Any:
        with Session(engine) as session:
            found["ranking"] = ranking(session, period, now, zone.ranking)
            return found["ranking"]

    def ranking_chart() -> None:
        charts.ranking_chart(ranked(), "zh-CN", folder / "ranking.png")

    def export() -> None:
        write_workbook(
            engine,
            period,
            now,
            folder / "ledger.xlsx",
            scope=None,
            rules=zone.ranking,
            locale="zh-CN",
            tz=SH,
        )

    result["stats"] = timed(stats)
    result["stats_charts"] = timed(stats_charts, warm=2)
    result["ranking"] = timed(ranked)
    result["ranking_chart"] = timed(ranking_chart, warm=2)
    result["export"] = timed(export, warm=1 if n <= 10_000 else 0)
    result["export_mb"] = (folder / "ledger.xlsx").stat().st_size / 2**20
    engine.dispose()
    for name in ("stats", "ranking"):
        if found[name] != found[f"{name}_before"]:
            raise AssertionError(f"{name}: the figures differ from the baseline's")
    return result


# --- the parent ---------------------------------------------------------------------------


def run_case(db: str, n: int, dsn: str | None) -> dict[str, Any] | None:
    folder = Path(tempfile.mkdtemp(prefix=f"squadbot-bench-figures-{db}-"))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = None
    if db == "postgresql":
        from sqlalchemy import create_engine

        admin = create_engine(dsn or "")
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    spec = {"db": db, "n": n, "folder": str(folder), "dsn": dsn, "schema": schema}
    try:
        return run_child("bench.figures", "--child", spec, 3600, f"{db} {n}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if admin is not None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            admin.dispose()


def report(sizes: list[int]) -> None:
    from bench.common import machine_note, print_table, ratio

    dsn = os.environ.get("SQUADBOT_TEST_POSTGRES_DSN")
    stores = ["sqlite"] + (["postgresql"] if dsn else [])
    if not dsn:
        print("PostgreSQL skipped: SQUADBOT_TEST_POSTGRES_DSN is not set")
    before = machine_note()
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for db in stores:
        for n in sizes:
            print(f"  running {db} with {n:,} tickets a month ...", file=sys.stderr, flush=True)
            found = run_case(db, n, dsn)
            if found is not None:
                results[(db, n)] = found
    steps = (
        ("stats_before", "/stats figures, before"),
        ("stats", "/stats figures"),
        ("stats_charts", "/stats 2 charts"),
        ("ranking_before", "/ranking, before"),
        ("ranking", "/ranking"),
        ("ranking_chart", "/ranking chart"),
        ("export", "export .xlsx"),
    )
    rows = []
    for (db, n), r in results.items():
        for key, label in steps:
            step = r[key]
            target = TARGETS.get(key)
            note = ""
            if target is not None and n >= 100_000:
                note = "ok" if step["warm_s"] <= target else f"over {target:g} s"
            rows.append(
                [
                    f"{db} {n:,}",
                    label,
                    step["cold_s"] * 1000,
                    step["warm_s"] * 1000,
                    step["cpu_s"] * 1000,
                    step["rss_mb"],
                    note,
                ]
            )
    print_table(
        "Figures per command (ms; peak RSS of the child after the step; "
        "before: the same tickets at migration 0007, as computed then)",
        ["store, tickets/month", "step", "cold", "warm", "warm CPU", "peak RSS MB", "target"],
        rows,
    )
    ratios = []
    for (db, n), r in results.items():
        for key in ("stats", "ranking"):
            now, then = r[key], r[f"{key}_before"]
            ratios.append(
                [
                    f"{db} {n:,}",
                    f"/{key}",
                    ratio(then["warm_s"], now["warm_s"]),
                    ratio(then["cpu_s"], now["cpu_s"]),
                ]
            )
    print_table(
        "Ratios, before / now, same store and run (above 1: now is faster; the same figures)",
        ["store, tickets/month", "command", "warm", "warm CPU"],
        ratios,
    )
    for (db, n), r in results.items():
        print(
            f"{db} {n:,}: loading 2 months took {r['load_s']:.0f} s; RSS after loading "
            f"{r['start_rss_mb']:.0f} MB; migration 0008 took {r['migrate_s']:.1f} s; "
            f"the ledger is {r['export_mb']:.1f} MB"
        )
    print(f"\nMachine before: {before}; after: {machine_note()}.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.figures", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10k tickets only")
    parser.add_argument("--sizes", help="comma-separated ticket counts, e.g. 100000")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child(json.loads(args.child))
        print("RESULT " + json.dumps(result), flush=True)
        return
    sizes = [10_000] if args.quick else [10_000, 100_000]
    if args.sizes:
        sizes = [int(size) for size in args.sizes.split(",")]
    report(sizes)


if __name__ == "__main__":
    main()
