"""Running squadbot: the inbox fetch and processing loops, the outbox dispatcher and the
deadline timer on one event loop; APScheduler runs the minute sweep and, every minute, the
calendar jobs (the morning digest, the monthly ranking), which decide by the zone's clock
whether they are due. With a webhook (`bot.inbox.webhook`), Telegram posts the updates and
the receiver stores them instead of the fetch loop."""

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

from bot.application import ZoneCache, announce_commands
from bot.archive import Archive
from bot.health import HealthServer, Monitor, Thresholds
from bot.inbox import Inbox, UpdateRunner, report_dead_letters
from bot.inbox.webhook import WebhookConfig, WebhookIntake
from bot.outage import StorageOutage
from bot.outbox import Delivery, Limits
from bot.settings import parse_listen
from bot.supervision import Supervisor
from models.clock import Clock
from models.throttle import FloodLimits
from scheduler.deadline_timer import DeadlineTimer
from scheduler.digests import CalendarJobs, MonthlyRanking

log = logging.getLogger(__name__)

CALENDAR_SECONDS = 60  # the calendar jobs look every minute whether one is due


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

    def __post_init__(self) -> None:
        # whether the database takes writes, as the inbox and the outbox find out (/healthz)
        self.outage = StorageOutage()
        self.delivery = Delivery(
            self.engine,
            self.app.bot,
            self.zone,
            clock=self.clock,
            limits=self.limits,
            outage=self.outage,
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
        )
        self.archive = Archive(self.engine, self.app.bot, self.data_dir / "attachments")
        self.inbox = Inbox(self.app, self.engine, self.runner, self.clock, long_poll=self.long_poll)
        self._tasks: list[asyncio.Task[None]] = []
        self.supervisor = Supervisor()
        self._scheduler: AsyncIOScheduler | None = None
        self.monitor = Monitor(self, self.thresholds)
        self.health: HealthServer | None = None
        # charts and ledgers asked for in the chat are written here, then sent by the outbox
        self.app.bot_data["reports_dir"] = self.data_dir / "reports"
        self.intake: WebhookIntake | None = None
        if self.webhook is not None:
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
        self.delivery.poke()
        self.timer.poke()
        self.archive.poke()

    async def start(self) -> None:
        await self.app.initialize()
        await self.app.start()
        await announce_commands(self.app, self.language)
        if self.health_listen is not None:
            host, port = parse_listen(self.health_listen)
            self.health = HealthServer(self.monitor, host, port)
            await self.health.start()
        report_dead_letters(self.engine)
        loops: dict[str, tuple[Callable[[], Awaitable[None]], Callable[[], bool]]] = {
            "inbox-fetch": (self.inbox.fetch_forever, lambda: self.inbox.stopping),
            "inbox-process": (self.inbox.process_forever, lambda: self.inbox.stopping),
            "outbox": (self.delivery.run_forever, lambda: self.delivery.stopping),
            "deadline-timer": (self.timer.run_forever, lambda: self.timer.stopping),
            "attachments": (self.archive.run_forever, lambda: self.archive.stopping),
        }
        intake = self.intake
        if intake is not None:  # Telegram posts the updates: no getUpdates
            del loops["inbox-fetch"]
            loops["webhook-watch"] = (intake.watch_forever, lambda: intake.stopping)
            await intake.start()
        # a digest or ranking missed while the bot was down goes out now, before anything else
        await asyncio.to_thread(self.calendar.tick)
        self._tasks = [
            asyncio.create_task(self.supervisor.keep_running(name, run, stopping), name=name)
            for name, (run, stopping) in loops.items()
        ]
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
        log.info("running: %s; deadline sweep every %ds", ", ".join(loops), self.sweep_seconds)

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
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.runner.handling.close()
        await self.runner.answers.close()
        await self.app.stop()
        await self.app.shutdown()

    async def run_until_stopped(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
