"""Several `squadbot run` processes, each its own OS process, on one fresh PostgreSQL database
against the Bot API emulator: tickets whose deadlines fall due while they run, a morning
digest due at start, walk-in enterprises opening their invites. Every update is handled
once, every alert is in the ledger once, every outbox row reaches Telegram once (counted in
what the emulator received), the digest goes out once. Then the process that polls
getUpdates is killed with SIGKILL while it holds leases: the others send what it had taken
within the lease time, one of them takes over getUpdates, and nothing else is repeated.
Three `run --webhook` processes behind one URL do the same through the webhook while 42
enterprise contacts file 2,000 tickets through the whole /new conversation and 500
deadlines fall due, one of them killed mid-run: CPU-bound, six and a half minutes on a
2-core machine shared with other work, about five alone there by its CPU time (see
WEBHOOK_FILINGS).

The processes run on the system clock (they are real processes); the deadlines are placed
seconds after their start by filing the tickets in the past, so nothing waits for a
deadline longer than the run itself takes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col, func, select

from bot.i18n import t
from bot.sandbox import BotApiEmulator
from bot.sandbox.records import StoredMessage
from bot.sandbox.script import fragment, ticket_number
from migrations.runner import upgrade
from models import filing
from models.desk import Desk
from models.invites import create_invite
from models.org import Membership, Person, Role
from models.people import Actor, active_memberships
from models.plumbing import AlertRecord, InboxUpdate, OutboxMessage, ScheduledRun
from models.ticket import Ticket
from models.zone.config import read_zone
from models.zone.load import load_and_apply
from tests.conftest import PG_DSN
from tests.harness import EXAMPLE_ZONE, ROOT, zone_variant

pytestmark = pytest.mark.postgres

PROCESSES = 3
TICKETS = 40
WALK_INS = 24
LEASE_SECONDS = 3  # SQUADBOT_LEASE_SECONDS of these runs
SPREAD = 0.25  # seconds between two tickets' response deadlines
STARTUP = 6.0  # the first response deadline falls due this long after the processes start
PERSON_CHATS = 500_000  # a bound person's Telegram id: this plus their id
WELCOME = "已作为企业联系人开通"
ALREADY_USED = "已被使用"


@dataclass
class Tally:
    """What the emulator received against what the database says was to be sent."""

    alert_ledger: int = 0
    alert_keys: int = 0
    alert_rows: int = 0
    alert_messages: int = 0
    rows_sent: int = 0
    messages: int = 0
    unsent_rows: int = 0
    digest_runs: int = 0
    digest_rows: int = 0
    digest_messages: int = 0
    updates_stored: int = 0
    updates_processed: int = 0
    welcomes: Counter[int] = field(default_factory=Counter)
    already_used: int = 0
    # (chat, message id) of every message no outbox row recorded: a second send of a row
    duplicates: list[tuple[int, int, str]] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"alerts in the ledger {self.alert_ledger} (distinct {self.alert_keys}); "
            f"alert rows {self.alert_rows}, alert messages received {self.alert_messages}; "
            f"rows sent {self.rows_sent}, messages received {self.messages}, duplicates "
            f"{len(self.duplicates)}; digest runs {self.digest_runs}, digest rows "
            f"{self.digest_rows}, digest messages {self.digest_messages}; updates stored "
            f"{self.updates_stored}, processed {self.updates_processed}, welcomed "
            f"{sum(self.welcomes.values())} for {len(self.welcomes)} walk-ins, "
            f"'already used' {self.already_used}"
        )


# --- the database and what is in it ------------------------------------------------------------


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A PostgreSQL database of its own (advisory locks and leases are per database), dropped
    afterwards whatever the processes left connected."""
    assert PG_DSN is not None
    name = f"squadbot_procs_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_DSN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield make_url(PG_DSN).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def prepare(engine: Engine, folder: Path, contacts_per_squad: int = 0) -> None:
    """The example zone with the digest due now, every person bound to a Telegram chat;
    with `contacts_per_squad`, more enterprise contacts in the zone file (`more_contacts`)."""
    upgrade(engine)
    changes = {'digest: "08:30"': 'digest: "00:00"', **more_contacts(contacts_per_squad)}
    load_and_apply(engine, zone_variant(folder, **changes))
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE person SET telegram_user_id = {PERSON_CHATS} + id"))


def more_contacts(per_squad: int) -> dict[str, str]:
    """The zone variant's rewrites that give each squad with projects `per_squad` enterprise
    contacts, spread over its projects: new people, listed as their projects' contacts."""
    zone = yaml.safe_load(EXAMPLE_ZONE.read_text(encoding="utf-8"))
    listed = {project["code"]: project["contacts"] for project in zone["projects"]}
    changes: dict[str, str] = {}
    people: list[str] = []
    for squad in zone["squads"]:
        for n, code in enumerate(squad["projects"]):
            want = per_squad // len(squad["projects"]) + (n < per_squad % len(squad["projects"]))
            have = listed[code]
            more = [f"more.{code.lower()}.{i}" for i in range(len(have), want)]
            if not more:
                continue
            changes[f"contacts: [{', '.join(have)}]"] = f"contacts: [{', '.join(have + more)}]"
            people += [
                f'  - {{key: {key}, name: 联系人{key}, phone: "1370000{len(people) + i:04d}"}}'
                for i, key in enumerate(more)
            ]
    if people:
        changes["\nmanagers:"] = "\n" + "\n".join(people) + "\n\nmanagers:"
    return changes


def contacts(session: Session) -> list[Actor]:
    """Every enterprise contact of a project, so the tickets spread over the squads."""
    people = session.exec(
        select(Person)
        .join(Membership, col(Membership.person_id) == col(Person.id))
        .where(Membership.role == Role.ENTERPRISE, col(Membership.project_id).is_not(None))
        .order_by(col(Person.id))
    ).all()
    unique = {p.id: p for p in people}
    return [
        Actor(person=p, memberships=active_memberships(session, p.id or 0)) for p in unique.values()
    ]


def file_tickets(
    engine: Engine, first_due: datetime, count: int = TICKETS, spread: float = SPREAD
) -> None:
    """Tickets filed ten minutes (their response time) before their response deadline, one
    every `spread` seconds from `first_due`: each one's warning is due at once, its breach
    while the processes run."""
    with Session(engine, expire_on_commit=False) as session:
        zone = read_zone(session)
        response = zone.targets("water", "normal").response
        filers = contacts(session)
        for n in range(count):
            now = first_due + timedelta(seconds=n * spread) - response
            desk = Desk(session, now, zone)
            who = filers[n % len(filers)]
            filing.start_draft(desk, who)
            filing.choose_category(desk, who, "water")
            filing.describe(desk, who, f"第{n}号工地停水")
            filing.choose_urgency(desk, who, "normal")
            filing.submit(desk, who)
            session.commit()


def walk_in_codes(engine: Engine, first: int, count: int) -> dict[int, str]:
    with Session(engine) as session:
        codes = {
            user: create_invite(
                session, datetime.now(UTC), role="enterprise", ttl=timedelta(days=1)
            ).code
            for user in range(first, first + count)
        }
        session.commit()
    return codes


# --- the processes -----------------------------------------------------------------------------


def environment(emu: BotApiEmulator, database_url: str, data: Path, **more: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SQUADBOT_TELEGRAM_TOKEN": emu.token,
        "SQUADBOT_TELEGRAM_API_URL": emu.url,
        "SQUADBOT_DATABASE_URL": database_url,
        "SQUADBOT_LONG_POLL_SECONDS": "1",
        "SQUADBOT_BOT_USERNAME": "squadbot_test_bot",
        "SQUADBOT_DATA_DIR": str(data),
        "SQUADBOT_LEASE_SECONDS": str(LEASE_SECONDS),
        **more,
    }
    env.pop("SQUADBOT_ZONE_FILE", None)
    return env


async def start_processes(
    env: dict[str, str], logs: Path, roles: list[str | None]
) -> list[asyncio.subprocess.Process]:
    """One `squadbot run` per entry, with `--only` that entry when it is not None."""
    processes = []
    for n, only in enumerate(roles):
        log = (logs / f"squadbot-{n}.log").open("wb")
        command = ["-m", "bot.cli", "run", *(["--only", only] if only else [])]
        processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable, *command, env=env, cwd=ROOT, stdout=log, stderr=log
            )
        )
        log.close()
    return processes


async def stop_processes(processes: list[asyncio.subprocess.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.terminate()
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except TimeoutError:
            process.kill()
            await process.wait()


def poller(engine: Engine) -> str | None:
    """The process holding the getUpdates lock, by the name its leases carry."""
    with engine.connect() as conn:
        name = conn.execute(
            text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted"
                " AND a.datname = current_database()"
            )
        ).scalar()
    return None if name is None else str(name).removeprefix("squadbot ")


def leased_by(engine: Engine, owner: str) -> tuple[dict[int, datetime], dict[int, datetime]]:
    """The outbox rows and stored updates `owner` holds, still to be done, each with the
    end of its lease."""
    now = datetime.now(UTC)
    with Session(engine) as session:
        rows = session.exec(
            select(OutboxMessage.id, OutboxMessage.lease_until).where(
                OutboxMessage.lease_owner == owner,
                OutboxMessage.state == "pending",
                col(OutboxMessage.lease_until) > now,
            )
        ).all()
        updates = session.exec(
            select(InboxUpdate.id, InboxUpdate.lease_until).where(
                InboxUpdate.lease_owner == owner,
                col(InboxUpdate.processed_at).is_(None),
                col(InboxUpdate.lease_until) > now,
            )
        ).all()
    return (
        {i: until for i, until in rows if i is not None and until is not None},
        {i: until for i, until in updates if i is not None and until is not None},
    )


def pid_of(owner: str) -> int:
    return int(owner.split("/")[1])  # host/pid/random, as models.leases names a process


# --- counting ----------------------------------------------------------------------------------
def count(engine: Engine, model: Any, *where: Any) -> int:
    """Rows of `model` matching `where`."""
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(model).where(*where)).one())


RESPONSE_BREACH = (AlertRecord.deadline == "response", AlertRecord.level == "breach")
PENDING = (OutboxMessage.state == "pending",)
# stored updates still to be handled: neither processed nor given up on
WAITING = (col(InboxUpdate.processed_at).is_(None), col(InboxUpdate.dead_at).is_(None))


def settled(engine: Engine, codes: dict[int, str], emu: BotApiEmulator) -> bool:
    """Every breach fired, nothing left to send, every walk-in welcomed."""
    breaches = count(engine, AlertRecord, *RESPONSE_BREACH)
    pending = count(engine, OutboxMessage, *PENDING)
    unprocessed = count(engine, InboxUpdate, *WAITING)
    welcomed = sum(any(WELCOME in (m.get("text") or "") for m in emu.sent(user)) for user in codes)
    return breaches == TICKETS and pending == 0 and unprocessed == 0 and welcomed == len(codes)


def tally(engine: Engine, emu: BotApiEmulator, codes: dict[int, str]) -> Tally:
    found = Tally()
    with Session(engine) as session:
        found.alert_ledger = session.exec(select(func.count()).select_from(AlertRecord)).one()
        found.alert_keys = len(
            set(
                session.exec(
                    select(
                        AlertRecord.ticket_id,
                        AlertRecord.deadline,
                        AlertRecord.level,
                        AlertRecord.cycle,
                    )
                ).all()
            )
        )
        rows = session.exec(
            select(OutboxMessage).where(
                OutboxMessage.channel == "telegram", col(OutboxMessage.edit_of).is_(None)
            )
        ).all()
        found.digest_runs = session.exec(
            select(func.count())
            .select_from(ScheduledRun)
            .where(col(ScheduledRun.key).startswith("digest:"))
        ).one()
        found.updates_stored = session.exec(select(func.count()).select_from(InboxUpdate)).one()
        found.updates_processed = session.exec(
            select(func.count())
            .select_from(InboxUpdate)
            .where(col(InboxUpdate.processed_at).is_not(None))
        ).one()
    recorded: dict[tuple[int, int], str] = {}
    for row in rows:
        if row.state != "sent":
            found.unsent_rows += 1
            continue
        found.rows_sent += 1
        found.alert_rows += row.template.startswith("alert.")
        found.digest_rows += row.template.startswith("digest.")
        if row.message_id is not None and row.chat_id is not None:
            recorded[(row.chat_id, row.message_id)] = row.template
    messages = emu.sent()
    found.messages = len(messages)
    # a message no row recorded repeats the one a row did with the same first text
    template_of: dict[tuple[int, str], str] = {}
    for message in messages:
        key = (message["chat"]["id"], message["message_id"])
        if key in recorded:
            template_of[(key[0], first_text(message))] = recorded[key]
    for message in messages:
        chat, text_ = message["chat"]["id"], first_text(message)
        template = recorded.get((chat, message["message_id"]))
        if template is None:
            template = template_of.get((chat, text_), "?")
            found.duplicates.append((chat, message["message_id"], template))
        found.alert_messages += template.startswith("alert.")
        found.digest_messages += template.startswith("digest.")
    for user in codes:
        for message in emu.sent(user):
            said = message.get("text") or ""
            found.welcomes[user] += WELCOME in said
            found.already_used += ALREADY_USED in said
    return found


def first_text(message: dict[str, Any]) -> str:
    """The text a message was sent with, before any edit."""
    for edit in message.get("edits") or []:
        old = edit.get("old") or {}
        if "text" in old:
            return str(old["text"] or "")
    return str(message.get("text") or message.get("caption") or "")


# --- the runs ----------------------------------------------------------------------------------


async def emulator_with_people(engine: Engine, *walk_ins: dict[int, str]) -> BotApiEmulator:
    emu = await BotApiEmulator().start()
    with Session(engine) as session:
        for person in session.exec(select(Person)).all():
            emu.add_user(PERSON_CHATS + (person.id or 0), person.name)
    for codes in walk_ins:
        for user in codes:
            emu.add_user(user, f"企业{user}")
    return emu


async def open_invites(emu: BotApiEmulator, codes: dict[int, str]) -> None:
    for user, code in codes.items():
        emu.send_text(user, f"/start {code}")
        await asyncio.sleep(0.05)


async def test_processes_on_one_database_do_everything_once(
    fresh_database: str, tmp_path: Path
) -> None:
    engine = create_engine(fresh_database)
    prepare(engine, tmp_path)
    codes = walk_in_codes(engine, 7000, WALK_INS)
    emu = await emulator_with_people(engine, codes)
    try:
        file_tickets(engine, datetime.now(UTC) + timedelta(seconds=STARTUP))
        env = environment(emu, fresh_database, tmp_path / "data")
        processes = await start_processes(env, tmp_path, [None] * PROCESSES)
        try:
            await open_invites(emu, codes)
            await emu.wait_for(lambda: settled(engine, codes, emu), timeout=120, recheck=0.5)
            await asyncio.sleep(2 * LEASE_SECONDS)  # a late second send would land by now
        finally:
            await stop_processes(processes)
        found = tally(engine, emu, codes)
    finally:
        await emu.stop()
        engine.dispose()
    print(found.line())
    assert found.alert_ledger == found.alert_keys == 2 * TICKETS  # response warning, breach
    assert found.unsent_rows == 0
    assert found.duplicates == [], found.line()
    assert found.messages == found.rows_sent
    assert found.alert_messages == found.alert_rows > 0
    assert found.digest_runs == 1 and found.digest_messages == found.digest_rows > 0
    assert found.updates_stored == found.updates_processed == len(codes)
    assert found.welcomes == Counter(dict.fromkeys(codes, 1)), found.welcomes
    assert found.already_used == 0
    token_free(tmp_path)


SLACK = 5.0  # seconds beyond the lease for the others to notice, send, and write it down


async def kill_the_poller_while_it_sends(
    engine: Engine, processes: list[asyncio.subprocess.Process]
) -> str:
    """SIGKILL the process that polls getUpdates at a moment it holds outbox leases (its
    sends take a while: the emulator answers late); returns its name."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        owner = poller(engine)
        if owner is not None and leased_by(engine, owner)[0]:
            victim = next(p for p in processes if p.pid == pid_of(owner))
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            return owner
        await asyncio.sleep(0.02)
    raise AssertionError("the poller never held an outbox lease")


async def test_a_killed_process_leaves_its_work_to_the_others_within_the_lease(
    fresh_database: str, tmp_path: Path
) -> None:
    engine = create_engine(fresh_database)
    prepare(engine, tmp_path)
    before = walk_in_codes(engine, 7000, WALK_INS // 2)
    after = walk_in_codes(engine, 8000, WALK_INS // 2)
    emu = await emulator_with_people(engine, before, after)
    emu.answer_sending_after(0.3)
    try:
        file_tickets(engine, datetime.now(UTC) + timedelta(seconds=STARTUP))
        env = environment(emu, fresh_database, tmp_path / "data")
        processes = await start_processes(env, tmp_path, [None] * PROCESSES)
        try:
            await open_invites(emu, before)
            killed = await kill_the_poller_while_it_sends(engine, processes)
            killed_at = datetime.now(UTC)
            rows, updates = leased_by(engine, killed)
            await emu.wait_for(lambda: poller(engine) not in (None, killed), 60, recheck=0.1)
            took_over = (datetime.now(UTC) - killed_at).total_seconds()
            await open_invites(emu, after)  # only a new poller can hear these
            codes = before | after
            await emu.wait_for(lambda: settled(engine, codes, emu), timeout=120, recheck=0.5)
            await asyncio.sleep(2 * LEASE_SECONDS)
        finally:
            await stop_processes(processes)
        found = tally(engine, emu, codes)
    finally:
        await emu.stop()
    print(f"killed {killed} holding {len(rows)} message(s), {len(updates)} update(s); polling")
    print(f"taken over after {took_over:.1f}s; {found.line()}")
    with Session(engine) as session:
        taken = session.exec(select(OutboxMessage).where(col(OutboxMessage.id).in_(rows))).all()
        handled = session.exec(select(InboxUpdate).where(col(InboxUpdate.id).in_(updates))).all()
    engine.dispose()
    assert rows and took_over < LEASE_SECONDS + SLACK
    # what it held went out after its lease had run out (nobody took it before), and
    # within the lease and a little
    limit = killed_at + timedelta(seconds=LEASE_SECONDS + SLACK)
    for r in taken:
        assert r.id is not None and r.state == "sent" and r.sent_at is not None
        assert rows[r.id] <= r.sent_at <= limit, (r.id, rows[r.id], r.sent_at, limit)
    for u in handled:
        assert u.id is not None and u.processed_at is not None
        assert updates[u.id] <= u.processed_at <= limit
    # only a message in flight when it died may have arrived twice
    chats = {r.chat_id for r in taken}
    assert len(found.duplicates) <= len(rows)
    assert {chat for chat, _message, _template in found.duplicates} <= chats, found.duplicates
    assert found.unsent_rows == 0
    assert found.alert_ledger == found.alert_keys == 2 * TICKETS
    assert found.digest_runs == 1
    assert found.updates_stored == found.updates_processed == len(codes)
    assert found.already_used == 0
    assert all(found.welcomes[user] == 1 or user in chats for user in codes), found.welcomes
    assert all(found.welcomes[user] >= 1 for user in codes)
    token_free(tmp_path)


async def test_roles_split_over_processes_each_do_their_part(
    fresh_database: str, tmp_path: Path
) -> None:
    """`run --only updates` and `run --only outbox,timer`: together they do everything, each
    runs its own loops only; their logs are JSON lines."""
    engine = create_engine(fresh_database)
    prepare(engine, tmp_path)
    codes = walk_in_codes(engine, 7000, 6)
    emu = await emulator_with_people(engine, codes)
    try:
        file_tickets(engine, datetime.now(UTC) + timedelta(seconds=STARTUP), count=8)
        env = environment(emu, fresh_database, tmp_path / "data", SQUADBOT_LOG_FORMAT="json")
        processes = await start_processes(env, tmp_path, ["updates", "outbox,timer"])
        try:
            await open_invites(emu, codes)

            def done() -> bool:
                breaches = count(engine, AlertRecord, AlertRecord.level == "breach")
                return breaches == 8 and settled_but_alerts(engine, codes, emu)

            await emu.wait_for(done, timeout=120, recheck=0.5)
        finally:
            await stop_processes(processes)
        found = tally(engine, emu, codes)
    finally:
        await emu.stop()
        engine.dispose()
    assert found.duplicates == [] and found.unsent_rows == 0 and found.alert_rows > 0
    assert found.welcomes == Counter(dict.fromkeys(codes, 1)) and found.already_used == 0
    assert found.digest_runs == 1
    loops = [running_loops(tmp_path / f"squadbot-{n}.log") for n in range(2)]
    assert loops == [
        ["inbox-fetch", "inbox-process", "attachments", "leases"],
        ["outbox", "deadline-timer", "leases"],
    ]
    token_free(tmp_path)


def settled_but_alerts(engine: Engine, codes: dict[int, str], emu: BotApiEmulator) -> bool:
    """Nothing left to send or handle, every walk-in welcomed."""
    pending = count(engine, OutboxMessage, *PENDING)
    unprocessed = count(engine, InboxUpdate, col(InboxUpdate.processed_at).is_(None))
    welcomed = sum(any(WELCOME in (m.get("text") or "") for m in emu.sent(u)) for u in codes)
    return pending == 0 and unprocessed == 0 and welcomed == len(codes)


def running_loops(log: Path) -> list[str]:
    """The loops a process said it runs, from its JSON log lines (each one must parse)."""
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    said = str(next(e["message"] for e in lines if e["message"].startswith("running: ")))
    return said.removeprefix("running: ").split(";")[0].split(", ")


def token_free(folder: Path) -> None:
    secret = BotApiEmulator().token.partition(":")[2]
    for log in folder.glob("squadbot-*.log"):
        assert secret not in log.read_text(encoding="utf-8", errors="replace"), log


# --- behind one webhook ------------------------------------------------------------------------

# /new conversations, five updates each through the webhook: 10,000 updates and some 19,300
# messages (each filing's five answers and its card to every member of the squad, the
# deadlines' tickets, cards and alerts). A contact files one conversation after another and
# Telegram's pace of a message a second per chat holds each of them back, so 42 file at
# once (WEBHOOK_CONTACTS per squad): enough to keep three processes busy, few enough that
# the one killed holds a few dozen updates at most. The run is then CPU-bound: 350 to 390
# CPU seconds in the three bot processes (35-39 ms an update, its answers and cards
# included), 70-85 in this one (the emulator, its webhook posts, the contacts) and about
# 100 in PostgreSQL, 510-570 in all. Measured on a 2-core machine that other work shared (a
# third of it or more): 388 s, 395 s, 403 s; alone there, by that CPU time, about five
# minutes. The earlier 450 filings by the example zone's 17 contacts, at Telegram's 30
# messages a second per process, took three minutes; at that pace 2,000 would take ten.
WEBHOOK_FILINGS = 2000
WEBHOOK_CONTACTS = 6  # enterprise contacts per squad with projects: 42 in the example zone
# messages a second each process may send in all: Telegram's 30 a bot would make the run
# wait on the outbox, and the emulator's flood limits are off; each chat keeps its pace
WEBHOOK_SEND_PER_SECOND = 1000
WEBHOOK_DEADLINES = 500  # response deadlines falling due while the processes run
WEBHOOK_SPREAD = 0.04  # seconds between two of those deadlines
WEBHOOK_URL = "https://bot.example.test/telegram/updates"
WEBHOOK_SECRET = "several-Receivers_share-one-secret-0123456789"
KILL_AFTER = 0.3  # the share of the filings acknowledged before one process is killed
STEP_TIMEOUT = 90.0  # seconds for the bot's next message in a conversation
WATER = {"zh-CN": "临时停水", "en": "Temporary water outage"}  # the category's button


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_receivers(
    env: dict[str, str], logs: Path, ports: list[int]
) -> list[asyncio.subprocess.Process]:
    """One `squadbot run --webhook URL --listen 127.0.0.1:PORT` per port."""
    processes = []
    for n, port in enumerate(ports):
        log = (logs / f"squadbot-{n}.log").open("wb")
        command = ["-m", "bot.cli", "run", "--webhook", WEBHOOK_URL]
        processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                *command,
                *("--listen", f"127.0.0.1:{port}"),
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        )
        log.close()
    return processes


def button(message: dict[str, Any], label: str) -> str:
    for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
        for key in row:
            if label in key["text"]:
                return str(key["callback_data"])
    raise AssertionError(f"no button {label!r} in {message.get('reply_markup')}")


class Replies:
    """The bot's messages sorted by chat as they reach the emulator, read from its log in
    place: each contact waits on its own chat alone. (`emu.sent(chat)` goes through the
    whole log and copies the chat's messages on each call, and `emu.wait_for` calls it
    again at every change: that grows with the log times the contacts waiting, and at 450
    filings by 17 contacts already tripled the CPU of this process, the emulator's.)"""

    def __init__(self, emu: BotApiEmulator, explain: Callable[[int], str] | None = None) -> None:
        self.emu = emu
        self.log = emu.bot_log
        self.read = 0
        self.chats: dict[int, list[StoredMessage]] = {}
        self.arrived: dict[int, asyncio.Event] = {}
        self.explain = explain  # where a chat's conversation stands, for a step that timed out

    async def follow(self) -> None:
        """Sort each new message to its chat and wake whoever waits there; until cancelled."""
        while True:
            await self.emu.wait_for(lambda: len(self.log) > self.read, timeout=3600)
            fresh = self.log[self.read :]
            self.read += len(fresh)
            for stored in fresh:
                chat = stored.message["chat"]["id"]
                self.chats.setdefault(chat, []).append(stored)
                if chat in self.arrived:
                    self.arrived[chat].set()

    def count(self, chat: int) -> int:
        return len(self.chats.get(chat, []))

    async def after(self, chat: int, seen: int, needle: str) -> dict[str, Any]:
        """The first message in `chat` after its first `seen` ones whose text has `needle`."""
        arrived = self.arrived.setdefault(chat, asyncio.Event())
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            for stored in self.chats.get(chat, [])[seen:]:
                if needle in (stored.message.get("text") or ""):
                    return stored.message
            seen = self.count(chat)
            if time.monotonic() > deadline:
                where = ""
                if self.explain is not None:
                    try:
                        where = f"; {self.explain(chat)}"
                    except Exception as exc:  # the timeout is the failure to report
                        where = f"; (where the chat stands could not be read: {exc!r})"
                raise TimeoutError(f"no {needle!r} in chat {chat} within {STEP_TIMEOUT}s{where}")
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), timeout=1.0)


class Filer:
    """An enterprise contact filing tickets one /new conversation after another, each step
    answered by whichever process the webhook's post reached."""

    def __init__(self, emu: BotApiEmulator, replies: Replies, chat: int, lang: str) -> None:
        self.emu = emu
        self.replies = replies
        self.chat = chat
        self.lang = lang  # the language the bot speaks to them, the labels they tap
        self.acknowledged: list[str] = []

    async def next(self, key: str) -> dict[str, Any]:
        """The bot's next message `key` in the chat: the first after those already there
        (called right after the step it answers, before any post could carry that step)."""
        seen = self.replies.count(self.chat)
        return await self.replies.after(self.chat, seen, fragment(self.lang, key))

    def press(self, message: dict[str, Any], label: str) -> None:
        data = button(message, label)
        self.emu.press(self.chat, message["chat"]["id"], message["message_id"], data)

    async def file(self, count: int, first: int) -> None:
        for n in range(first, first + count):
            self.emu.send_text(self.chat, "/new")
            self.press(await self.next("new.ask_category"), WATER[self.lang])
            await self.next("new.ask_description")
            self.emu.send_text(self.chat, f"第{n}号网关停水")
            self.press(await self.next("new.ask_urgency"), t(self.lang, "urgency.normal"))
            self.press(await self.next("new.confirm"), t(self.lang, "button.submit"))
            self.acknowledged.append(ticket_number(str((await self.next("ticket.filed"))["text"])))


def where_chat_stands(
    engine: Engine, emu: BotApiEmulator, killed: dict[str, Any], chat: int
) -> str:
    """The chat's updates not yet handled and its messages not yet sent, as the store has
    them, and what the emulator still holds for the webhook: said when a step times out."""
    now = datetime.now(UTC)
    with Session(engine) as session:
        updates = session.exec(
            select(InboxUpdate)
            .where(InboxUpdate.chat_id == chat)
            .order_by(col(InboxUpdate.id).desc())
            .limit(3)
        ).all()
        rows = session.exec(
            select(OutboxMessage).where(OutboxMessage.chat_id == chat, *PENDING)
        ).all()
    queued = [u for u in emu.queued_updates() if str(chat) in json.dumps(u)]
    return (
        f"at {now:%H:%M:%S.%f}, killed {killed or 'none yet'}; last updates stored "
        + str(
            [
                (u.id, u.update_id, u.received_at, u.processed_at, u.lease_owner, u.lease_until)
                for u in updates
            ]
        )
        + "; pending messages "
        + str(
            [
                (r.id, r.template, r.lease_owner, r.lease_until, r.next_attempt_at, r.last_error)
                for r in rows
            ]
        )
        + f"; {len(queued)} update(s) of the chat still with the emulator; webhook stats "
        f"{dict(emu.stats)}, last error {emu.webhook_last_error}"
    )


def lease_holders(engine: Engine) -> dict[str, int]:
    """The processes holding outbox rows or stored updates still to be done: how many each."""
    now = datetime.now(UTC)
    held: Counter[str] = Counter()
    with Session(engine) as session:
        for owner in session.exec(
            select(OutboxMessage.lease_owner).where(
                OutboxMessage.state == "pending", col(OutboxMessage.lease_until) > now
            )
        ).all():
            held[str(owner)] += 1
        for owner in session.exec(
            select(InboxUpdate.lease_owner).where(
                col(InboxUpdate.processed_at).is_(None), col(InboxUpdate.lease_until) > now
            )
        ).all():
            held[str(owner)] += 1
    return dict(held)


async def kill_one_holding_leases(
    engine: Engine, processes: list[asyncio.subprocess.Process]
) -> str:
    """SIGKILL a process at a moment it holds leases; returns its name."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for owner in lease_holders(engine):
            victim = next((p for p in processes if p.pid == pid_of(owner)), None)
            if victim is not None and leased_by(engine, owner) != ({}, {}):
                victim.send_signal(signal.SIGKILL)
                await victim.wait()
                return owner
        await asyncio.sleep(0.02)
    raise AssertionError("no process ever held a lease")


def webhook_settled(engine: Engine, deadlines: int, filings: int) -> bool:
    """Every breach fired, every filing in, nothing left to send or handle."""
    breaches = count(engine, AlertRecord, *RESPONSE_BREACH)
    tickets = count(engine, Ticket)
    pending = count(engine, OutboxMessage, *PENDING)
    unprocessed = count(engine, InboxUpdate, *WAITING)
    return breaches == deadlines and tickets == deadlines + filings and pending == unprocessed == 0


async def test_three_webhook_receivers_behind_one_url_file_everything_once(
    fresh_database: str, tmp_path: Path
) -> None:
    """Three `run --webhook` processes behind one URL (the emulator, standing for the reverse
    proxy, posts to them in turn); enterprise contacts file WEBHOOK_FILINGS tickets through
    the whole /new conversation while WEBHOOK_DEADLINES response deadlines fall due; one
    process is SIGKILLed with leases in hand once KILL_AFTER of the filings are in, and the
    other two finish: every ticket filed once, every alert once in the ledger and once as a
    message, every outbox row sent once but a message in flight when the process died."""
    engine = create_engine(fresh_database)
    prepare(engine, tmp_path, contacts_per_squad=WEBHOOK_CONTACTS)
    with Session(engine) as session:
        filers_chats = [
            (
                PERSON_CHATS + (a.person.id or 0),
                "en" if (a.person.language or "").startswith("en") else "zh-CN",
            )
            for a in contacts(session)
        ]
    emu = await emulator_with_people(engine)
    ports = [free_port() for _ in range(PROCESSES)]
    emu.route_webhooks(*(f"http://127.0.0.1:{port}" for port in ports))
    killing: dict[str, Any] = {}
    replies = Replies(emu, lambda chat: where_chat_stands(engine, emu, killing, chat))
    following = asyncio.create_task(replies.follow())
    filers = [Filer(emu, replies, chat, lang) for chat, lang in filers_chats]
    shares = [
        WEBHOOK_FILINGS // len(filers) + (n < WEBHOOK_FILINGS % len(filers))
        for n in range(len(filers))
    ]
    started = time.monotonic()
    try:
        file_tickets(
            engine,
            datetime.now(UTC) + timedelta(seconds=STARTUP),
            count=WEBHOOK_DEADLINES,
            spread=WEBHOOK_SPREAD,
        )
        env = environment(
            emu,
            fresh_database,
            tmp_path / "data",
            SQUADBOT_WEBHOOK_SECRET=WEBHOOK_SECRET,
            SQUADBOT_SEND_PER_SECOND=str(WEBHOOK_SEND_PER_SECOND),
        )
        processes = await start_receivers(env, tmp_path, ports)
        try:
            await emu.wait_for(lambda: emu.webhook_url == WEBHOOK_URL, timeout=60)
            filing_ = asyncio.gather(
                *(
                    f.file(share, sum(shares[:n]))
                    for n, (f, share) in enumerate(zip(filers, shares, strict=True))
                )
            )
            await emu.wait_for(
                lambda: sum(len(f.acknowledged) for f in filers) >= KILL_AFTER * WEBHOOK_FILINGS,
                timeout=STEP_TIMEOUT * 4,
                recheck=0.2,
            )
            killed = await kill_one_holding_leases(engine, processes)
            killed_at = datetime.now(UTC)
            killing.update(process=killed, at=f"{killed_at:%H:%M:%S.%f}")
            rows, updates = leased_by(engine, killed)
            await filing_
            await emu.wait_for(
                lambda: webhook_settled(engine, WEBHOOK_DEADLINES, WEBHOOK_FILINGS),
                timeout=180,
                recheck=0.5,
            )
            await asyncio.sleep(2 * LEASE_SECONDS)  # a late second send would land by now
        finally:
            await stop_processes(processes)
        found = tally(engine, emu, {})
        posts = emu.stats["webhook_posts"]
    finally:
        following.cancel()
        await emu.stop()
    took = time.monotonic() - started
    with Session(engine) as session:
        taken = session.exec(select(OutboxMessage).where(col(OutboxMessage.id).in_(rows))).all()
        handled = session.exec(select(InboxUpdate).where(col(InboxUpdate.id).in_(updates))).all()
        numbers = session.exec(select(Ticket.number)).all()
        ledger_alerts = session.exec(
            select(func.count()).select_from(AlertRecord).where(AlertRecord.level == "breach")
        ).one()
    engine.dispose()
    acknowledged = [number for f in filers for number in f.acknowledged]
    taken_over = max(
        [(r.sent_at - killed_at).total_seconds() for r in taken if r.sent_at is not None]
        + [(u.processed_at - killed_at).total_seconds() for u in handled if u.processed_at]
    )
    print(
        f"{WEBHOOK_FILINGS} filings by {len(filers)} contacts, {WEBHOOK_DEADLINES} deadlines, "
        f"{posts} webhook posts, {took:.0f}s; killed {killed} holding {len(rows)} message(s), "
        f"{len(updates)} update(s), all done {taken_over:.1f}s after; {found.line()}"
    )
    # no ticket lost or doubled
    assert len(acknowledged) == len(set(acknowledged)) == WEBHOOK_FILINGS
    assert len(numbers) == len(set(numbers)) == WEBHOOK_FILINGS + WEBHOOK_DEADLINES
    assert set(acknowledged) <= set(numbers)
    # each alert once in the ledger, once as a message
    assert ledger_alerts == WEBHOOK_DEADLINES
    assert found.alert_ledger == found.alert_keys == 2 * WEBHOOK_DEADLINES
    repeated_alerts = sum(template.startswith("alert.") for _c, _m, template in found.duplicates)
    assert found.unsent_rows == 0 and found.alert_messages - repeated_alerts == found.alert_rows > 0
    # what the killed process held was done by the others after its lease, within it and a
    # little; only a message in flight when it died may have arrived twice
    assert rows or updates
    limit = killed_at + timedelta(seconds=LEASE_SECONDS + SLACK)
    for r in taken:
        assert r.id is not None and r.state == "sent" and r.sent_at is not None
        assert rows[r.id] <= r.sent_at <= limit, (r.id, rows[r.id], r.sent_at, limit)
    for u in handled:
        assert u.id is not None and u.processed_at is not None
        assert updates[u.id] <= u.processed_at <= limit
    assert len(found.duplicates) <= len(rows), found.duplicates
    assert {chat for chat, _m, _t in found.duplicates} <= {r.chat_id for r in taken}
    assert found.messages == found.rows_sent + len(found.duplicates)
    token_free(tmp_path)
    for n in range(PROCESSES):
        log = (tmp_path / f"squadbot-{n}.log").read_text(encoding="utf-8")
        assert f"; sending at most {WEBHOOK_SEND_PER_SECOND} messages/s;" in log
