"""How late do SLA alerts reach the outbox, and at what cost, with 1k / 10k / 100k open tickets?

The deadline timer (one timer on the earliest `next_alert_at`, the product's design) runs
against the same load as two baselines: a sweep every 60 s (what the reference helpdesks do)
and one APScheduler 3 date job per ticket in the default memory job store. A last run times
the catch-up after a restart with every deadline of the last hour missed, against the same
catch-up through the object path (`fire_due_batch`: the due tickets as ORM objects, their
points one by one, one SQLAlchemy statement per table) as its baseline.

Lateness of an alert = the wall-clock moment its outbox rows were committed (an ORM
`after_commit` hook, the moment the dispatcher can see them) minus the alert's due time.
Every measurement runs in a fresh subprocess, so CPU and peak RSS belong to that run alone.

    .venv/bin/python -m bench.deadlines            # about 9 minutes
    .venv/bin/python -m bench.deadlines --quick    # about 1.5 minutes
    .venv/bin/python -m bench.deadlines --catch-up 100000   # the catch-up alone, about 2 minutes
    .venv/bin/python -m bench.deadlines --catch-up 100000 --runs 5   # ours 5 times, about 2 minutes

Long on purpose: the product's timer and both baselines are driven here against one load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ZONE_FILE = ROOT / "examples" / "zone.yaml"
CHUNK = 5000
TAIL_S = 2.0  # ours and APScheduler keep running this long after the window closes
HOUR = 3600.0


# --- the load ------------------------------------------------------------------------------


def build_template(folder: Path) -> Path:
    """A migrated database with the example zone, every person reachable on Telegram (so
    alerts really produce outbox rows, as for people who joined through their invite)."""
    from sqlalchemy import text

    from migrations.runner import upgrade
    from models.db import make_engine
    from models.zone.load import load_and_apply

    path = folder / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    load_and_apply(engine, ZONE_FILE)
    with engine.begin() as conn:
        conn.execute(text("UPDATE person SET telegram_user_id = 700000 + id"))
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def load_tickets(
    engine: Any, n: int, first_due: float, span: float, last_up: float, watch: tuple[float, float]
) -> tuple[int, list[tuple[int, str, float]]]:
    """N claimed tickets with handling deadlines uniform over [first_due, first_due + span].

    Each ticket's alerts come from the product's own policy (`alert_points`): the warning at
    80% of the 2 h handling time, the breach at the deadline, supervision an hour later.
    Alerts due before `last_up` (when the bot was last running) are already in the ledger,
    so each ticket's alarm (`ticketalarm`) is exactly what `refresh_next_alert` would store.
    Inserted with core executemany in chunks, so the load does not inflate the run's peak RSS.

    Returns how many alerts are pending before `watch[1]`, and those due inside `watch`."""
    from sqlmodel import Session, col, select

    from models.lifecycle import State
    from models.org import Membership, Project, Role
    from models.plumbing import AlertRecord
    from models.sla.policy import DeadlineKind, alert_points
    from models.ticket import Ticket, TicketAlarm
    from models.zone.config import read_zone

    with Session(engine) as session:
        zone = read_zone(session)
        squad_people: dict[int, list[int]] = {}
        contacts: dict[int, list[int]] = {}
        for m in session.exec(select(Membership).where(col(Membership.active))).all():
            if m.role in (Role.MEMBER, Role.LEAD) and m.squad_id is not None:
                squad_people.setdefault(m.squad_id, []).append(m.person_id)
            elif m.role == Role.ENTERPRISE and m.project_id is not None:
                contacts.setdefault(m.project_id, []).append(m.person_id)
        projects = [
            (p.id, p.squad_id)
            for p in session.exec(select(Project).order_by(col(Project.id))).all()
            if p.squad_id is not None and p.id in contacts
        ]
        categories = [c.code for c in session.exec(select(_category_table())).all()]
    rng = random.Random(n)
    ticket_table = Ticket.__table__  # type: ignore[attr-defined]
    ledger_table = AlertRecord.__table__  # type: ignore[attr-defined]
    alarm_table = TicketAlarm.__table__  # type: ignore[attr-defined]
    pending = 0
    watched: list[tuple[int, str, float]] = []
    for lo in range(0, n, CHUNK):
        tickets, ledger, alarms = [], [], []
        for tid in range(lo + 1, min(n, lo + CHUNK) + 1):
            project_id, squad_id = projects[tid % len(projects)]
            category = categories[tid % len(categories)]
            targets = zone.targets(category, "normal")
            due = _utc(first_due + rng.random() * span)
            start = due - targets.handling
            calendar = zone.calendar_for(targets)  # as Desk.calendar(ticket) does
            points = alert_points(DeadlineKind.HANDLING, start, due, targets, calendar)
            future = [p for p in points if p.at.timestamp() >= last_up]
            for p in points:
                if p.at.timestamp() < last_up:
                    ledger.append(
                        {
                            "ticket_id": tid,
                            "deadline": p.kind.value,
                            "level": p.level.value,
                            "cycle": 0,
                            "due_at": p.due,
                            "fired_at": p.at,
                        }
                    )
                elif p.at.timestamp() <= watch[1]:
                    pending += 1
                    if p.at.timestamp() > watch[0]:
                        watched.append((tid, p.level.value, p.at.timestamp()))
            people = squad_people[squad_id]
            tickets.append(
                {
                    "id": tid,
                    "number": f"BN-{tid:07d}",
                    "project_id": project_id,
                    "squad_id": squad_id,
                    "enterprise_id": contacts[project_id][tid % len(contacts[project_id])],
                    "category_code": category,
                    "urgency": "normal",
                    "description": f"load ticket {tid}",
                    "state": State.CLAIMED.value,
                    "owner_id": people[tid % len(people)],
                    "language": "zh-CN",
                    "cycle": 0,
                    "created_at": start,
                    "updated_at": start + timedelta(minutes=2),
                    "first_response_at": start + timedelta(minutes=2),
                    "response_due": start + targets.response,
                    "handling_due": due,
                    "handling_started": start,
                    "plan_required": False,
                }
            )
            if future:
                alarms.append({"ticket_id": tid, "next_alert_at": min(p.at for p in future)})
        with engine.begin() as conn:
            conn.execute(ticket_table.insert(), tickets)
            if alarms:
                conn.execute(alarm_table.insert(), alarms)
            if ledger:
                conn.execute(ledger_table.insert(), ledger)
    return pending, watched


def _category_table() -> Any:
    from models.org import Category

    return Category


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# --- measuring, inside a run ---------------------------------------------------------------


class CommitLog:
    """The wall-clock time each alert's outbox rows became committed, i.e. visible to the
    dispatcher. Keyed (ticket, level); the first commit wins (there is only one)."""

    def __init__(self) -> None:
        self.first: dict[tuple[int, str], float] = {}

    def install(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.orm import Session as OrmSession

        event.listen(OrmSession, "pending_to_persistent", self._persisted)
        event.listen(OrmSession, "do_orm_execute", self._executed)
        event.listen(OrmSession, "after_commit", self._committed)

    def _persisted(self, session: Any, instance: Any) -> None:
        self._note(session, getattr(instance, "dedupe_key", None))

    def _executed(self, state: Any) -> None:
        """Outbox rows written in bulk (one statement for many rows) carry their keys in the
        statement's parameters rather than as objects."""
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) != "outboxmessage" or not state.is_insert:
            return
        params = state.parameters
        for row in params if isinstance(params, list) else [params or {}]:
            self._note(state.session, row.get("dedupe_key"))

    def _note(self, session: Any, key: str | None) -> None:
        if key and key.startswith("alert:"):
            session.info.setdefault("bench_alerts", []).append(key)

    def _committed(self, session: Any) -> None:
        keys = session.info.pop("bench_alerts", None)
        if keys:
            now = time.time()
            for key in keys:
                _, tid, _deadline, level, *_ = key.split(":")
                self.first.setdefault((int(tid), level), now)


def rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def sleep_until(ts: float) -> None:
    delay = ts - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def open_window(planned: float) -> tuple[float, float]:
    """The measured stretch opens at the first deadline, or when set-up is done if later."""
    start = max(planned, time.time())
    await sleep_until(start)
    return start, time.process_time()


def close_window(t_start: float, t_end: float, cpu0: float) -> dict[str, Any]:
    return {
        "t_start": t_start,
        "t_end": t_end,
        "cpu_s": time.process_time() - cpu0,
        "run_s": time.time() - t_start,
    }


async def run_ours(engine: Any, zone: Any, planned: float, window: float) -> dict[str, Any]:
    """The product's arrangement (bot/service.py): the timer task plus the minute sweep."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from models.clock import SystemClock
    from scheduler.deadline_timer import DeadlineTimer

    timer = DeadlineTimer(engine, SystemClock(), zone)
    t_start, cpu0 = await open_window(planned)
    sweeper = AsyncIOScheduler()
    sweeper.add_job(timer.sweep, "interval", seconds=60, max_instances=1, coalesce=True)
    sweeper.start()
    task = asyncio.create_task(timer.run_forever())
    await sleep_until(t_start + window + TAIL_S)
    timer.stop()
    sweeper.shutdown(wait=False)
    await task
    return close_window(t_start, t_start + window, cpu0)


async def run_sweep(
    engine: Any, zone: Any, planned: float, window: float, period: float
) -> dict[str, Any]:
    """Baseline (a): nothing but a sweep every `period` seconds."""
    from models.clock import SystemClock
    from scheduler.deadline_timer import DeadlineTimer

    timer = DeadlineTimer(engine, SystemClock(), zone)
    ticks = max(1, round(window / period))
    t_start, cpu0 = await open_window(planned)
    for k in range(ticks + 1):
        await sleep_until(t_start + k * period)
        timer.fire_due()
    return close_window(t_start, t_start + ticks * period, cpu0)


async def run_apscheduler(engine: Any, zone: Any, planned: float, window: float) -> dict[str, Any]:
    """Baseline (b): one date job per ticket in the default MemoryJobStore, default executor;
    each job fires its ticket's due alerts and adds the job for the ticket's next alert."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from sqlmodel import Session, col, select

    from models.alerts import fire_due_batch
    from models.clock import SystemClock
    from models.desk import Desk
    from models.ticket import Ticket, TicketAlarm

    clock = SystemClock()
    scheduler = AsyncIOScheduler()
    trouble = {"misfired": 0, "errors": 0}

    def count(ev: Any) -> None:
        trouble["errors" if ev.code == EVENT_JOB_ERROR else "misfired"] += 1

    def fire_ticket(ticket_id: int) -> None:
        with Session(engine, expire_on_commit=False) as session:
            ticket = session.get(Ticket, ticket_id)
            if ticket is None:
                return
            fire_due_batch(Desk(session, clock.now(), zone(session)), [ticket])
            session.commit()
        if ticket.next_alert_at is not None:
            scheduler.add_job(fire_ticket, "date", run_date=ticket.next_alert_at, args=[ticket_id])

    scheduler.add_listener(count, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    scheduler.start()
    query = select(col(TicketAlarm.ticket_id), col(TicketAlarm.next_alert_at))
    rss0, cpu0, wall0 = rss_now_mb(), time.process_time(), time.perf_counter()
    jobs = 0
    with engine.connect() as conn:
        for tid, at in conn.execute(query):
            scheduler.add_job(fire_ticket, "date", run_date=at, args=[tid])
            jobs += 1
    for _ in range(3):  # let the scheduler process the wake-ups the adds queued
        await asyncio.sleep(0)
    added = {
        "jobs": jobs,
        "add_s": time.perf_counter() - wall0,
        "add_cpu_s": time.process_time() - cpu0,
        "add_rss_mb": rss_now_mb() - rss0,
    }
    t_start, cpu0 = await open_window(planned)
    await sleep_until(t_start + window + TAIL_S)
    scheduler.shutdown(wait=True)
    return close_window(t_start, t_start + window, cpu0) | added | trouble


async def child_window(spec: dict[str, Any]) -> dict[str, Any]:
    from bot.application import ZoneCache
    from models.db import make_engine

    log = CommitLog()
    log.install()
    engine = make_engine(f"sqlite:///{spec['db']}")
    n, window, mode = spec["n"], spec["window"], spec["mode"]
    planned = time.time() + spec["lead"]  # the first deadline
    began = time.perf_counter()
    watch = (planned, planned + window + spec["period"] + 300)  # room for a late start
    _, watched = load_tickets(engine, n, planned, HOUR, planned, watch)
    load_s = time.perf_counter() - began
    zone = ZoneCache(ttl=5.0)
    if mode == "ours":
        run = await run_ours(engine, zone, planned, window)
    elif mode == "sweep":
        run = await run_sweep(engine, zone, planned, window, spec["period"])
    else:
        run = await run_apscheduler(engine, zone, planned, window)
    late, missed = [], 0
    for tid, level, at in watched:
        if not run["t_start"] < at <= run["t_end"]:
            continue
        done = log.first.get((tid, level))
        if done is None:
            missed += 1
        else:
            late.append(done - at)
    engine.dispose()
    return run | {
        "mode": mode,
        "n": n,
        "late": late,
        "missed": missed,
        "peak_rss_mb": peak_rss_mb(),
        "load_s": load_s,
        "setup_overrun_s": run["t_start"] - planned,
    }


def _object_timer() -> Any:
    """The baseline's timer: its firing loads every due ticket as an object and fires them
    through `fire_due_batch`, in one transaction; the rest of the sweep is the product's."""
    from models.alerts import due_tickets, fire_due_batch
    from models.desk import open_desk
    from scheduler.deadline_timer import DeadlineTimer

    class ObjectTimer(DeadlineTimer):
        def fire_due(self) -> int:
            with open_desk(self.engine, self.clock, self.zone) as desk:
                due = due_tickets(desk.session, desk.now, limit=10_000_000)
                fired = len(fire_due_batch(desk, due))
            self.fired += fired
            return fired

    return ObjectTimer


def child_catch_up(spec: dict[str, Any]) -> dict[str, Any]:
    """Every deadline of the last hour passed while the bot was down; then one start-up sweep
    (`spec["path"]` "set": the product's; "objects": the baseline, the same sweep with the
    alerts fired through `fire_due_batch`)."""
    from bot.application import ZoneCache
    from models.clock import SystemClock
    from models.db import make_engine
    from scheduler.deadline_timer import DeadlineTimer

    engine = make_engine(f"sqlite:///{spec['db']}")
    now = time.time()
    pending, _ = load_tickets(engine, spec["n"], now - HOUR, HOUR, now - HOUR, (now, now))
    t_start = time.time()
    print("LOADED " + json.dumps({"pending": pending, "t_start": t_start}), flush=True)
    objects = spec.get("path") == "objects"
    kind = _object_timer() if objects else DeadlineTimer
    timer = kind(engine, SystemClock(), ZoneCache(ttl=5.0))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    timer.sweep()
    seconds = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    left = timer.next_due()
    claimed, _, _ = ledger_since(engine, _utc(t_start))
    queued = queued_since(engine, _utc(t_start))
    engine.dispose()
    return {
        "n": spec["n"],
        "pending": pending,
        "claimed": claimed,
        "fired": timer.fired,
        "queued": queued,
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_mb": peak_rss_mb(),
        "still_due": left is not None and left.timestamp() <= t_start,
    }


# --- the driver ----------------------------------------------------------------------------


@dataclass
class Plan:
    sizes: list[int]
    windows: dict[int, float]
    period: float
    catch_up_n: int
    catch_up_cap: float


def run_child(
    spec: dict[str, Any], timeout: float, log: Path, cap: float | None = None
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """One measurement in a fresh interpreter. With `cap`, the run is stopped `cap` seconds
    after it reports LOADED; returns (None, the LOADED record) when it had to be stopped."""
    cmd = [sys.executable, "-m", "bench.deadlines", "--child", json.dumps(spec)]
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        loaded: dict[str, Any] = {}
        started = time.monotonic()
        early: list[str] = []
        for line in proc.stdout:
            early.append(line)
            if line.startswith("LOADED "):
                loaded = json.loads(line[7:])
                started = time.monotonic()
                if cap is not None:
                    timeout = cap
                break
        try:
            out, _ = proc.communicate(timeout=max(0.1, timeout - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None, loaded
    for line in early + out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:]), loaded
    sys.stderr.write(log.read_text()[-4000:])
    raise SystemExit(f"run {spec['mode']} n={spec['n']} failed (exit {proc.returncode})")


def fresh_db(template: Path, folder: Path, name: str) -> Path:
    target = folder / f"{name}.db"
    shutil.copy(template, target)
    return target


def ledger_since(engine: Any, since: datetime) -> tuple[int, int, datetime | None]:
    """Ledger rows claimed since `since` (one per alert point; fired_at = the start of the
    batch that claimed it), those of all but the last batch, and that last batch's start."""
    from sqlmodel import Session, col, func, select

    from models.plumbing import AlertRecord

    fired_at = col(AlertRecord.fired_at)
    with Session(engine) as session:
        claimed = session.exec(select(func.count()).where(fired_at >= since)).one()
        last = session.exec(select(func.max(AlertRecord.fired_at))).one()
        before_last = 0
        if last is not None and last > since:
            before_last = session.exec(
                select(func.count()).where(fired_at >= since, fired_at < last)
            ).one()
    return claimed, before_last, last


def queued_since(engine: Any, since: datetime) -> dict[str, Any]:
    """The outbox rows queued since `since`: how many, to how many chats and webhooks, the
    most to one chat, and how long Telegram's limits (bot/outbox/pacing.py: 28/s overall,
    1/s a private chat, 20/min a group) take to let them all out, webhooks aside."""
    from sqlmodel import Session, col, func, select

    from bot.outbox.pacing import Limits
    from models.plumbing import OutboxMessage

    limits = Limits()
    created = col(OutboxMessage.created_at)
    with Session(engine) as session:
        per_chat = session.exec(
            select(OutboxMessage.chat_id, func.count())
            .where(created >= since, OutboxMessage.channel == "telegram")
            .group_by(col(OutboxMessage.chat_id))
        ).all()
        hooks = session.exec(
            select(func.count()).where(created >= since, OutboxMessage.channel == "webhook")
        ).one()
        digests = session.exec(
            select(func.count()).where(
                created >= since, col(OutboxMessage.template).startswith("alert.storm.")
            )
        ).one()
    telegram = sum(n for _, n in per_chat)
    slowest = max(
        (
            n / (limits.group_per_minute / 60 if (chat or 0) < 0 else limits.private_per_second)
            for chat, n in per_chat
        ),
        default=0.0,
    )
    return {
        "rows": telegram + hooks,
        "telegram": telegram,
        "webhook": hooks,
        "digests": digests,
        "chats": len(per_chat),
        "most_to_one_chat": max((n for _, n in per_chat), default=0),
        "delivery_s": max(telegram / limits.per_second, slowest),
    }


def catch_up_progress(db: Path, loaded: dict[str, Any], cap: float) -> dict[str, Any]:
    """The catch-up outran its cap: extrapolate from the batches that had finished."""
    from models.db import make_engine

    since = _utc(loaded["t_start"])
    engine = make_engine(f"sqlite:///{db}")
    claimed, done, last = ledger_since(engine, since)
    engine.dispose()
    span = (last - since).total_seconds() if last is not None and done else 0.0
    rate = done / span if span > 0 else claimed / cap
    return {
        "pending": loaded["pending"],
        "claimed": claimed,
        "capped_at": cap,
        "seconds": loaded["pending"] / rate if rate else float("inf"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.deadlines", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1k and 10k, short windows")
    parser.add_argument(
        "--catch-up",
        type=int,
        metavar="N",
        help="only the catch-up after a restart, with N open tickets (e.g. 100000)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        metavar="K",
        help="with --catch-up: the product's catch-up K times (median beside the baseline)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        if spec["mode"] == "catch_up":
            result = child_catch_up(spec)
        else:
            result = asyncio.run(child_window(spec))
        print("RESULT " + json.dumps(result), flush=True)
        return
    if args.catch_up:
        report_catch_up(args.catch_up, max(1, args.runs))
        return
    if args.quick:
        plan = Plan([1000, 10000], {1000: 10.0, 10000: 10.0}, 5.0, 10000, 15.0)
    else:
        plan = Plan(
            [1000, 10000, 100000], {1000: 30.0, 10000: 30.0, 100000: 60.0}, 60.0, 100000, 45.0
        )
    report(plan)


def report(plan: Plan) -> None:
    folder = Path(tempfile.mkdtemp(prefix="squadbot-bench-deadlines-"))
    started = time.perf_counter()
    from bench.common import machine_note, storage_note

    before = machine_note()
    try:
        template = build_template(folder)
        results: dict[tuple[int, str], dict[str, Any]] = {}
        for n in plan.sizes:
            window = plan.windows[n]
            for mode in ("ours", "sweep", "aps"):
                spec = {
                    "mode": mode,
                    "n": n,
                    "window": window,
                    "period": plan.period,
                    "lead": 1.0 + n * (250e-6 if mode == "aps" else 150e-6),
                    "db": str(fresh_db(template, folder, f"{mode}-{n}")),
                }
                log = folder / f"{mode}-{n}.log"
                result, _ = run_child(spec, window + plan.period + 600, log)
                assert result is not None
                results[(n, mode)] = result
                print(f"  .. n={n:>6} {mode:5} done", file=sys.stderr, flush=True)
        db = fresh_db(template, folder, "catch-up")
        spec = {"mode": "catch_up", "n": plan.catch_up_n, "db": str(db)}
        catch, loaded = run_child(spec, 900, folder / "catch-up.log", cap=plan.catch_up_cap)
        if catch is None:
            catch = catch_up_progress(db, loaded, plan.catch_up_cap)
        print_report(plan, results, catch)
        print(f"\nMachine before: {before}; after: {machine_note()}.")
        took = time.perf_counter() - started
        print(f"SQLite files on {storage_note(folder)}; bench time {took:.0f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report_catch_up(n: int, runs: int = 1) -> None:
    """The product's catch-up `runs` times, each on a load of its own in a fresh process,
    then the object path once; a sweep's time moves from run to run, so with several runs
    each is printed, and the median is the figure set beside the baseline."""
    folder = Path(tempfile.mkdtemp(prefix="squadbot-bench-catch-up-"))
    from bench.common import machine_note, ratio, storage_note

    before = machine_note()
    try:
        template = build_template(folder)
        found: dict[str, list[dict[str, Any]]] = {"set": [], "objects": []}
        for path, count in (("set", runs), ("objects", 1)):
            for run in range(count):
                db = fresh_db(template, folder, f"catch-up-{path}-{run}")
                spec = {"mode": "catch_up", "n": n, "db": str(db), "path": path}
                log = folder / f"catch-up-{path}-{run}.log"
                catch, loaded = run_child(spec, 900, log, cap=300.0)
                if catch is None:
                    catch = catch_up_progress(db, loaded, 300.0)
                    print(f"{path}: NOT finished in 300 s: about {catch['seconds']:.0f} s in all")
                    return
                if catch["claimed"] < catch["pending"]:
                    raise SystemExit(f"the {path} catch-up left alerts unfired: {catch}")
                found[path].append(catch)
        mine = sorted(found["set"], key=lambda catch: float(catch["seconds"]))
        ours, base = mine[len(mine) // 2], found["objects"][0]
        print_catch_up(n, ours)
        if runs > 1:
            times = ", ".join(f"{catch['seconds']:.2f}" for catch in found["set"])
            print(
                f"  {runs} runs, each on a load of its own: {times} s (min"
                f" {mine[0]['seconds']:.2f}, median {ours['seconds']:.2f}, max"
                f" {mine[-1]['seconds']:.2f}); the lines above are the median run's"
            )
        print(
            "\nBaseline in the same run, the object path (fire_due_batch: ORM tickets,"
            " pending_points one by one, one SQLAlchemy statement per table):\n"
            f"  {base['claimed']} ledger rows in {base['seconds']:.2f} s ({base['cpu_s']:.2f}"
            f" CPU s, peak RSS {base['peak_rss_mb']:.1f} MB); {base['queued']['rows']} messages"
            "\nRatios, baseline / ours (above 1: ours is better): "
            f"time {ratio(base['seconds'], ours['seconds'])}, CPU"
            f" {ratio(base['cpu_s'], ours['cpu_s'])}, peak RSS"
            f" {ratio(base['peak_rss_mb'], ours['peak_rss_mb'])}"
        )
        print(f"\nMachine before: {before}; after: {machine_note()}.")
        print(f"SQLite files on {storage_note(folder)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def print_catch_up(n: int, catch: dict[str, Any]) -> None:
    q = catch["queued"]
    print(
        f"Catch-up after a restart: {n} open tickets, {catch['pending']} alert points fell due"
        " while the bot was down (the last hour), one start-up sweep:\n"
        f"  ledger: {catch['claimed']} rows in {catch['seconds']:.2f} s"
        f" ({catch['cpu_s']:.2f} CPU s, peak RSS {catch['peak_rss_mb']:.1f} MB)"
        + ("; SOME STILL DUE" if catch["still_due"] else "")
        + f"\n  outbox: {q['rows']} messages queued ({q['telegram']} Telegram to {q['chats']}"
        f" chats, {q['webhook']} webhook posts; {q['digests']} storm digests);"
        f" at most {q['most_to_one_chat']} to one chat\n"
        f"  delivery under Telegram's limits: about {q['delivery_s']:.0f} s"
    )


NAMES = {"ours": "timer (ours)", "sweep": "sweep every {p:g} s", "aps": "APScheduler job/ticket"}


def print_report(
    plan: Plan,
    results: dict[tuple[int, str], dict[str, Any]],
    catch: dict[str, Any],
) -> None:
    from bench.common import latency_summary, print_table, ratio

    windows = ", ".join(f"{n}: {w:g} s" for n, w in plan.windows.items())
    spans = {max(1, round(w / plan.period)) * plan.period for w in plan.windows.values()}
    lines = [
        "Deadline alerts with N open (claimed) tickets, handling deadlines uniform over the next",
        "hour: a warning at 80% of the 2 h (1 outbox row, to the owner), a breach at the deadline",
        "(4 rows: the lead and the managers). SQLite, WAL, synchronous=FULL.",
        "Lateness = commit of an alert's outbox rows - its due time, over the alerts due in the",
        f"measured window: {windows}; the sweep baseline ticks every {plan.period:g} s, measured"
        f" over {', '.join(f'{x:g}' for x in sorted(spans))} s.",
        "CPU s: the window (+2 s, or until the last sweep is done); CPU %: the same per wall",
        "second, which the ratios compare. RSS: the run's peak; imports alone are about 70 MB,",
        "and the tickets are loaded in the same process.",
    ]
    print("\n".join(lines))
    rows, summaries = [], {}
    for (n, mode), r in results.items():
        summary = summaries[(n, mode)] = latency_summary(r["late"])
        rows.append(
            [
                n,
                NAMES[mode].format(p=plan.period),
                summary["count"],
                r["missed"],
                summary["p50_ms"],
                summary["p99_ms"],
                summary["max_ms"],
                f"{r['cpu_s']:.2f}",
                100 * _busy(r),
                r["peak_rss_mb"],
            ]
        )
    header = [
        "N",
        "approach",
        "alerts",
        "missed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "CPU s",
        "CPU %",
        "RSS MB",
    ]
    print_table("Alert lateness", header, rows)
    for (n, mode), r in results.items():
        if mode == "aps":
            print(
                f"  APScheduler, {n}: adding {r['jobs']} jobs took {r['add_s']:.2f} s"
                f" ({r['add_cpu_s']:.2f} CPU s) and +{r['add_rss_mb']:.1f} MB RSS; jobs misfired"
                f" (skipped by APScheduler) {r['misfired']}, job errors {r['errors']}"
            )
        if mode == "ours":
            print(f"  {n} tickets loaded in {r['load_s']:.1f} s (core executemany, 5000 a chunk)")
        if r.get("setup_overrun_s", 0) > 0.05:
            print(f"  {mode} {n}: set-up overran the planned start by {r['setup_overrun_s']:.2f} s")
    ratio_rows = []
    for n in plan.sizes:
        ours = results[(n, "ours")]
        for mode in ("sweep", "aps"):
            base = results[(n, mode)]
            ratio_rows.append(
                [
                    n,
                    NAMES[mode].format(p=plan.period),
                    ratio(summaries[(n, mode)]["p99_ms"], summaries[(n, "ours")]["p99_ms"]),
                    ratio(_busy(base), _busy(ours)),
                    ratio(base["peak_rss_mb"], ours["peak_rss_mb"]),
                ]
            )
    print_table(
        "Ratios, baseline / ours (above 1: ours is better)",
        ["N", "baseline", "p99 lateness", "CPU %", "peak RSS"],
        ratio_rows,
    )
    capped = "capped_at" in catch
    print(
        f"\nCatch-up after a restart: {plan.catch_up_n} open tickets, {catch['pending']} alert"
        " points fell due while the bot was down (the last hour), one start-up sweep:"
    )
    if capped:
        print(
            f"  NOT finished: stopped {catch['capped_at']:.0f} s into the sweep with"
            f" {catch['claimed']} claimed; at that rate about {catch['seconds']:.0f} s in all"
        )
    else:
        print(
            f"  {catch['claimed']} claimed in {catch['seconds']:.2f} s ({catch['cpu_s']:.2f} CPU s,"
            f" peak RSS {catch['peak_rss_mb']:.1f} MB); {catch['fired']} alerts sent (a warning"
            " whose deadline has passed too is dropped for its breach)"
            + ("; SOME STILL DUE" if catch["still_due"] else "")
        )
    big = max(plan.sizes)
    p99_big = summaries[(big, "ours")]["p99_ms"]
    rss = max(r["peak_rss_mb"] for (_, m), r in results.items() if m == "ours")
    rss = max(rss, catch.get("peak_rss_mb", 0.0))
    targets = [
        (f"p99 lateness < 1 s at {big} tickets", f"{p99_big:.1f} ms", p99_big < 1000),
        ("peak RSS < 300 MB (timer runs, catch-up)", f"{rss:.1f} MB", rss < 300),
        (
            f"catch-up < 2 s at {plan.catch_up_n} tickets",
            f"{catch['seconds']:.1f} s",
            catch["seconds"] < 2 and not capped,
        ),
    ]
    print("\nTargets:")
    for label, value, ok in targets:
        print(f"  {label:<42}{value:>12}   reached: {'yes' if ok else 'no'}")
    if big < 100000:
        print("  (quick mode: the p99 and catch-up targets are stated for 100k tickets)")


def _busy(run: dict[str, Any]) -> float:
    """CPU seconds per wall second of the measured stretch."""
    return float(run["cpu_s"] / run["run_s"]) if run["run_s"] > 0 else float("nan")


if __name__ == "__main__":
    main()
