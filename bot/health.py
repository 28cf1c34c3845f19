"""The running bot's health check and metrics, served over plain HTTP when
SQUADBOT_HEALTH_LISTEN is set.

`/healthz` answers JSON: the database reachable and taking writes (as the inbox and the
outbox last found: a full or read-only disk still answers reads), its schema at the newest
migration, the outbox backlog and how long its oldest undelivered message has waited, the
seconds since getUpdates last answered, how late the deadline timer is, and the supervised
loops that keep failing. It answers 503 when any of them crosses its threshold
(`Thresholds`, from the SQUADBOT_HEALTH_MAX_* settings), 200 otherwise. `/metrics` is the
Prometheus text format from a registry of the service's own, so two services in one process
never share counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from alembic.script import ScriptDirectory
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, text
from sqlmodel import Session, col, select

from migrations.runner import alembic_config, current
from models.plumbing import AlertRecord, OutboxMessage
from models.ticket import Ticket, TicketAlarm

if TYPE_CHECKING:
    from bot.service import Service

log = logging.getLogger(__name__)

HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Thresholds:
    """Past any of these /healthz answers 503."""

    api_silence: float = 120.0  # seconds without a successful getUpdates, beyond its long poll
    outbox_age: float = 600.0  # seconds the oldest undelivered message has waited
    outbox_backlog: int = 1000  # undelivered messages
    timer_lag: float = 300.0  # seconds the most overdue unfired alert is late


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Monitor:
    """What /healthz and /metrics read from one running Service."""

    def __init__(self, service: Service, thresholds: Thresholds | None = None) -> None:
        self.service = service
        self.thresholds = thresholds or Thresholds()
        self.started = time.monotonic()
        self.registry = CollectorRegistry(auto_describe=True)
        self.updates = Counter(
            "squadbot_updates_handled",
            "Updates taken from the inbox, by outcome (done, dead, busy, ...)",
            ["outcome"],
            registry=self.registry,
        )
        self.handling = Histogram(
            "squadbot_update_handling_seconds",
            "Time to handle one update, its transaction included",
            buckets=HANDLING_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_ServiceCollector(self))
        service.inbox.on_handled = self.handled
        self._head = ScriptDirectory.from_config(alembic_config(service.engine)).get_current_head()

    def handled(self, outcome: str, seconds: float) -> None:
        self.updates.labels(outcome=outcome).inc()
        self.handling.observe(seconds)

    def api_silence(self) -> float:
        """Seconds since getUpdates last answered (since this process began polling, before
        the first answer); 0 while another process polls, or this one takes no updates."""
        inbox = self.service.inbox
        if not inbox.polling:
            return 0.0
        last = inbox.last_success
        since = inbox.polling_since if inbox.polling_since is not None else self.started
        return time.monotonic() - (since if last is None else last)

    def _database(self) -> dict[str, Any]:
        engine = self.service.engine
        now = self.service.clock.now()
        with Session(engine) as session:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
            pending = session.exec(
                select(func.count(), func.min(OutboxMessage.created_at)).where(
                    col(OutboxMessage.state) == "pending"
                )
            ).one()
            next_alert = session.exec(select(func.min(TicketAlarm.next_alert_at))).one()
        backlog, oldest = int(pending[0]), pending[1]
        age = 0.0 if oldest is None else max(0.0, (now - _aware(oldest)).total_seconds())
        lag = 0.0 if next_alert is None else max(0.0, (now - _aware(next_alert)).total_seconds())
        revision = current(engine)
        return {
            "database": True,
            "schema": revision,
            "schema_head": self._head,
            "migrations_at_head": revision == self._head,
            "outbox_backlog": backlog,
            "outbox_oldest_age_seconds": round(age, 3),
            "timer_lag_seconds": round(lag, 3),
        }

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, the JSON body); reads the database, so call it off the event loop."""
        limits = self.thresholds
        problems: list[str] = []
        body: dict[str, Any]
        try:
            body = self._database()
        except Exception as exc:
            body = {"database": False, "database_error": f"{type(exc).__name__}: {exc}"[:300]}
            problems.append("database unreachable")
        else:
            if not body["migrations_at_head"]:
                problems.append("database schema is not at the newest migration")
            if body["outbox_backlog"] > limits.outbox_backlog:
                problems.append(f"outbox backlog above {limits.outbox_backlog}")
            if body["outbox_oldest_age_seconds"] > limits.outbox_age:
                problems.append(f"oldest undelivered message older than {limits.outbox_age:g}s")
            if body["timer_lag_seconds"] > limits.timer_lag:
                problems.append(f"deadline timer late by more than {limits.timer_lag:g}s")
        refusing = self.service.outage.problem()
        body["database_writable"] = refusing is None
        if refusing is not None:
            body["database_write_error"] = self.service.outage.reason
            problems.append(refusing)
        silence = self.api_silence()
        body["bot_api_silence_seconds"] = round(silence, 3)
        body["polling"] = self.service.inbox.polling
        if silence > limits.api_silence + self.service.long_poll:
            problems.append(f"no successful Bot API call for more than {limits.api_silence:g}s")
        failing = self.service.supervisor.failing()
        body["failing_loops"] = {s.name: s.last_error for s in failing}
        if failing:
            problems.append("loops keep failing: " + ", ".join(s.name for s in failing))
        body["problems"] = problems
        body["status"] = "ok" if not problems else "unhealthy"
        return not problems, body

    def metrics(self) -> bytes:
        return generate_latest(self.registry)


class _ServiceCollector(Collector):
    """Figures read when scraped: the service's counters and the database's state."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        service = self.monitor.service
        delivery = service.delivery
        failures = CounterMetricFamily(
            "squadbot_outbox_send_failures",
            "Messages given up on, by channel and reason",
            labels=["channel", "reason"],
        )
        robots = CounterMetricFamily(
            "squadbot_webhook_failures",
            "Alerts a webhook robot never took, by reason",
            labels=["reason"],
        )
        for (channel, reason), count in sorted(delivery.failures.items()):
            failures.add_metric([channel, reason], count)
            if channel == "webhook":
                robots.add_metric([reason], count)
        yield failures
        yield robots
        yield CounterMetricFamily("squadbot_outbox_sent", "Messages delivered", value=delivery.sent)
        yield CounterMetricFamily(
            "squadbot_telegram_429",
            "429 Too Many Requests answers to sending",
            value=delivery.retry_afters,
        )
        yield GaugeMetricFamily(
            "squadbot_bot_api_silence_seconds",
            "Seconds since getUpdates last answered",
            value=self.monitor.api_silence(),
        )
        loops = GaugeMetricFamily(
            "squadbot_loop_failing",
            "1 when a supervised loop keeps failing",
            labels=["loop"],
        )
        for name, state in sorted(service.supervisor.loops.items()):
            loops.add_metric([name], 1.0 if state.failing else 0.0)
        yield loops
        yield GaugeMetricFamily(
            "squadbot_database_writable",
            "1 while the database takes writes (0 while it refuses them: away, full, read-only)",
            value=0.0 if service.outage.down else 1.0,
        )
        yield from self._from_database()

    def _from_database(self) -> Iterator[Metric]:
        service = self.monitor.service
        try:
            with Session(service.engine) as session:
                states = session.exec(
                    select(Ticket.state, func.count()).group_by(col(Ticket.state))
                ).all()
                levels = session.exec(
                    select(AlertRecord.level, func.count()).group_by(col(AlertRecord.level))
                ).all()
            report = self.monitor._database()
        except Exception as exc:
            log.warning("metrics: the database cannot be read: %s", exc)
            yield GaugeMetricFamily("squadbot_database_up", "1 when the database answers", 0)
            return
        yield GaugeMetricFamily("squadbot_database_up", "1 when the database answers", 1)
        tickets = GaugeMetricFamily("squadbot_tickets", "Tickets by state", labels=["state"])
        for state, count in sorted(states):
            tickets.add_metric([str(state)], count)
        yield tickets
        alerts = CounterMetricFamily(
            "squadbot_alerts_fired", "Alerts fired (the alert ledger), by level", labels=["level"]
        )
        for level, count in sorted(levels):
            alerts.add_metric([str(level)], count)
        yield alerts
        yield GaugeMetricFamily(
            "squadbot_outbox_backlog", "Undelivered messages", value=report["outbox_backlog"]
        )
        yield GaugeMetricFamily(
            "squadbot_outbox_oldest_age_seconds",
            "Seconds the oldest undelivered message has waited",
            value=report["outbox_oldest_age_seconds"],
        )
        yield GaugeMetricFamily(
            "squadbot_timer_lag_seconds",
            "Seconds the most overdue unfired alert is late",
            value=report["timer_lag_seconds"],
        )


class HealthServer:
    """A tiny HTTP/1.1 server for GET /healthz and GET /metrics; one request per connection."""

    def __init__(self, monitor: Monitor, host: str, port: int) -> None:
        self.monitor = monitor
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("health and metrics on http://%s:%d/healthz and /metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
            method, _, rest = head.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            status, kind, body = await self._answer(method, path)
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}.get(
                status, "Service Unavailable"
            )
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
            )
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception as exc:
            log.warning("health endpoint: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"GET only\n"
        if path == "/healthz":
            healthy, report = await asyncio.to_thread(self.monitor.report)
            body = json.dumps(report, ensure_ascii=False, indent=1).encode() + b"\n"
            return (200 if healthy else 503), "application/json", body
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, await asyncio.to_thread(self.monitor.metrics)
        return 404, "text/plain; charset=utf-8", b"/healthz or /metrics\n"
