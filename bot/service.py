"""Running squadbot: the inbox fetch and processing loops, the outbox dispatcher and the
deadline timer on one event loop; APScheduler runs the minute sweep and, every minute, the
calendar jobs (the morning digest, the monthly ranking), which decide by the zone's clock
whether they are due. With a webhook (`bot.inbox.webhook`), Telegram posts the updates and
the receiver stores them instead of the fetch loop.

`roles` (`squadbot run --only`) picks what this process does: `updates` (getUpdates, the
stored updates, attachments), `outbox`, `timer` (deadlines and calendar jobs); all three by
default. Several processes may run on one PostgreSQL database: they share the work through
leases (models/leases.py) renewed by a heartbeat, and one of them polls getUpdates at a
time (bot/inbox/poller.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import Engine
from telegram.ext import Application

from bot import heap
from bot.application import ZoneCache, announce_commands
from bot.archive import Archive
from bot.health import HealthServer, Monitor, Thresholds
from bot.heartbeat import Heartbeat
from bot.inbox import Inbox, UpdateRunner, report_dead_letters
from bot.inbox.webhook import WebhookConfig, WebhookIntake
from bot.outage import StorageOutage
from bot.outbox import Delivery, Limits
from bot.settings import ROLES, parse_listen
from bot.supervision import Supervisor
from models.clock import Clock
from models.leases import DEFAULT_SECONDS, process_name, release_all
from models.plumbing import InboxUpdate, OutboxMessage
from models.throttle import FloodLimits
from models.ticket import Attachment
from scheduler.deadline_timer import DeadlineTimer
from scheduler.digests import CalendarJobs, MonthlyRanking

log = logging.getLogger(__name__)

CALENDAR_SECONDS = 60  # the calendar jobs look every minute whether one is due
# how long stopping lets the outbox's pass in flight finish: a send cancelled after Telegram
# took it but before its answer was read is not written down, and goes again at next start
OUTBOX_STOP_WAIT = 10.0


@dataclass
class Service:
    app: Application  # type: ignore[type-arg]
    engine: Engine
    clock: Clock
    zone: ZoneCache = field(default_factory=ZoneCache)
    limits: Limits | None = None
    long_poll: int = 30
    sweep_seconds: int = 60
    language: str = "zh-CN"
    data_dir: Path = Path("data")
    # publishes a month's ranking on the 1st (the statistics provide it); None: not yet
    monthly_ranking: MonthlyRanking | None = None
    # HOST:PORT for /healthz and /metrics (SQUADBOT_HEALTH_LISTEN); None: not served
    health_listen: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    # updates per user and wrong invite codes per account (SQUADBOT_FLOOD_*, ...)
    flood: FloodLimits = field(default_factory=FloodLimits)
    # `run --webhook URL --listen HOST:PORT`: Telegram posts the updates; None: polling
    webhook: WebhookConfig | None = None
    # what this process does (`run --only`), and how long its leases last unrenewed
    roles: frozenset[str] = frozenset(ROLES)
    lease_seconds: float = DEFAULT_SECONDS

    def __post_init__(self) -> None:
        # whether the database takes writes, as the inbox and the outbox find out (/healthz)
        self.outage = StorageOutage()
        owner, lease = process_name(), self.lease_seconds
        self.delivery = Delivery(
            self.engine,
            self.app.bot,
            self.zone,
            clock=self.clock,
            limits=self.limits,
            outage=self.outage,
            owner=owner,
            lease_seconds=lease,
        )
        self.timer = DeadlineTimer(self.engine, self.clock, self.zone, self.delivery.poke)
        self.calendar = CalendarJobs(
            self.engine,
            self.clock,
            self.zone,
            self.delivery.poke,
            monthly_ranking=self.monthly_ranking,
        )
        self.runner = UpdateRunner(
            self.app,
            self.engine,
            self.clock,
            self.zone,
            self._changed,
            limits=self.flood,
            outage=self.outage,
            owner=owner,
            armed=self.timer.armed,
        )
        self.runner.queued = self.delivery.hand
        # its units of work on the loop write down what the dispatcher sent (SQLite, one
        # process): one commit for both
        self.delivery.records_ride = self.runner.inline
        self.runner.unrecorded = self.delivery.take_unrecorded
        self.runner.recorded = self.delivery.recorded
        self.archive = Archive(
            self.engine,
            self.app.bot,
            self.data_dir / "attachments",
            clock=self.clock,
            owner=owner,
            lease_seconds=lease,
        )
        self.inbox = Inbox(
            self.app,
            self.engine,
            self.runner,
            self.clock,
            long_poll=self.long_poll,
            lease_seconds=lease,
        )
        self.heartbeat = Heartbeat(
            [self.inbox.leases, self.delivery.leases, self.archive.leases], lease
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.supervisor = Supervisor()
        self._scheduler: AsyncIOScheduler | None = None
        self.monitor = Monitor(self, self.thresholds)
        self.health: HealthServer | None = None
        # charts and ledgers asked for in the chat are written here, then sent by the outbox
        self.app.bot_data["reports_dir"] = self.data_dir / "reports"
        self.intake: WebhookIntake | None = None
        if self.webhook is not None and "updates" in self.roles:
            self.intake = WebhookIntake(
                self.app.bot,
                self.engine,
                self.clock,
                self.webhook,
                on_stored=self._received,
                on_api_answer=self._received,
            )

    def _received(self) -> None:
        """Telegram answered or posted: the health check's Bot API silence starts again."""
        self.inbox.last_success = time.monotonic()
        self.inbox.wake()

    def _changed(self) -> None:
        """A handling committed: the outbox and the archive look again; the deadline timer
        is told of a nearer alert time by the runner itself (`armed`), without a read."""
        self.delivery.poke()
        self.archive.poke()

    async def start(self) -> None:
        await self.app.initialize()
        await self.app.start()
        await announce_commands(self.app, self.language)
        if self.health_listen is not None:
            host, port = parse_listen(self.health_listen)
            self.health = HealthServer(self.monitor, host, port)
            await self.health.start()
        if self.engine.dialect.name == "sqlite":
            # one process per SQLite file: a lease in it is what a killed earlier run left
            release_all(self.engine, (InboxUpdate, OutboxMessage, Attachment))
        loops = self._loops()
        intake = self.intake
        if intake is not None:  # Telegram posts the updates: no getUpdates
            loops.pop("inbox-fetch", None)
            loops["webhook-watch"] = (intake.watch_forever, lambda: intake.stopping)
            await intake.start()
        if "updates" in self.roles:
            report_dead_letters(self.engine)
        if "timer" in self.roles:
            # a digest or ranking missed while the bot was down goes out now, first of all
            await asyncio.to_thread(self.calendar.tick)
        self._tasks = [
            asyncio.create_task(self.supervisor.keep_running(name, run, stopping), name=name)
            for name, (run, stopping) in loops.items()
        ]
        if "timer" in self.roles:
            self._schedule()
        sweep = f"; deadline sweep every {self.sweep_seconds}s" if "timer" in self.roles else ""
        pace = self.delivery.pacer.limits.per_second
        sending = f"; sending at most {pace:g} messages/s" if "outbox" in self.roles else ""
        log.info(
            "running: %s%s%s; leases of %gs", ", ".join(loops), sweep, sending, self.lease_seconds
        )

    def _loops(self) -> dict[str, tuple[Callable[[], Awaitable[None]], Callable[[], bool]]]:
        """The supervised loops of this process's roles, and the heartbeat."""
        loops: dict[str, tuple[Callable[[], Awaitable[None]], Callable[[], bool]]] = {}
        if "updates" in self.roles:
            loops["inbox-fetch"] = (self.inbox.fetch_forever, lambda: self.inbox.stopping)
            loops["inbox-process"] = (self.inbox.process_forever, lambda: self.inbox.stopping)
        if "outbox" in self.roles:
            loops["outbox"] = (self.delivery.run_forever, lambda: self.delivery.stopping)
        if "timer" in self.roles:
            loops["deadline-timer"] = (self.timer.run_forever, lambda: self.timer.stopping)
        if "updates" in self.roles:
            loops["attachments"] = (self.archive.run_forever, lambda: self.archive.stopping)
        loops["leases"] = (self.heartbeat.run_forever, lambda: self.heartbeat.stopping)
        return loops

    def _schedule(self) -> None:
        # UTC: the sweep is an interval and needs no local zone (nor tzlocal's guess at one)
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_job(
            self.timer.sweep,
            "interval",
            seconds=self.sweep_seconds,
            id="deadline-sweep",
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.add_job(
            self.calendar.tick,
            "interval",
            seconds=CALENDAR_SECONDS,
            id="calendar-jobs",
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.start()

    async def stop(self) -> None:
        if self.intake is not None:
            await self.intake.stop()  # deleteWebhook, then the last stores answered
        if self.health is not None:
            await self.health.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        self.inbox.stop()
        self.delivery.stop()
        self.timer.stop()
        self.archive.stop()
        self.heartbeat.stop()
        outbox = [task for task in self._tasks if task.get_name() == "outbox"]
        if outbox:  # told to stop, it ends after the pass it is in
            await asyncio.wait(outbox, timeout=OUTBOX_STOP_WAIT)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.runner.handling.close()
        self.delivery.write_down()  # no unit of work is left to carry it
        await self.runner.answers.close()
        self.heartbeat.let_go()
        await self.app.stop()
        await self.app.shutdown()

    async def run_until_stopped(self, stop: asyncio.Event) -> None:
        await self.start()
        frozen = heap.settle()  # started: what lives now lives as long as the process
        log.debug("%d objects built at start-up left out of garbage collection", frozen)
        try:
            await stop.wait()
        finally:
            await self.stop()
