"""The outbox dispatcher: sends what the domain queued, in order per chat, paced to
Telegram's limits; honours 429 retry_after, retries transient failures with backoff (with
jitter) forever, and marks permanent failures (blocked bot, unknown chat) and reports them
to the squad lead. Each pass takes the due first row of every chat, higher lanes first
(bot/outbox/queue.py), so no chat's backlog delays another chat. Rows, and the holds on
them, survive restarts because they live in the database until sent.

Several processes may dispatch from one database: each leases the rows it is about to send
(models/leases.py) and sends only those it won, so a row goes out once, and a chat whose
first row one process holds is left alone by the others. Pacing is per process: with
several dispatchers a busy chat may be sent to faster than one would, and Telegram's 429
answers, which hold the chat for every process, are what slows them down; the overall rate
of each is SQUADBOT_SEND_PER_SECOND, which several processes share out between them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session
from telegram import InputFile, ReplyParameters
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.i18n import t
from bot.outage import StorageOutage
from bot.outbox.bookkeeping import OutboxLedger, after_sent
from bot.outbox.pacing import Limits, Pacer, Sending
from bot.outbox.queue import PERSIST_AT_LEAST, Holds, Ready, outbox_leases, ready, ready_of
from bot.outbox.rendering import CAPTION_LIMIT, TELEGRAM_LIMIT, Rendering, clip, markup
from bot.outbox.robots import Alert, WebhookError, WebhookTarget, deliver
from bot.sending_bot import SendingBot
from models.clock import Clock, SystemClock
from models.db import is_transient
from models.leases import DEFAULT_SECONDS, one_process_store, process_name
from models.log_context import about
from models.outbox import Due
from models.quiet_log import QuietLog, problem_key
from models.zone.config import ZoneConfig

log = logging.getLogger(__name__)

MAX_BACKOFF = 300.0
BATCH = 150
# A pass keeps sending, paced, for about this long before it reads the queue again, so the
# reads cost little of Telegram's 30/s ...
PASS_SPAN = 1.0
# ... unless a row was queued meanwhile (a poke): then it reads the queue again once it has
# sent for this long, so a new answer, in any chat and any lane, waits at most about this
# long behind a full window.
FRESH_READ = 0.1
# Sent rows are written down in the transaction of the next update handled on the loop
# (`take_unrecorded`), one commit for both, when one comes within this long; else by the
# dispatcher itself. A process killed meanwhile sends these rows again when it restarts.
RECORD_WITHIN = 0.1
# Posts of one alert to a robot that fails it (hangs, answers 5xx or garbage, or refuses it
# with an error code in a 200) before it is marked failed and the squad's lead told: with
# the backoff, a few minutes of trying. A robot's own "wait" (a rate limit) is no attempt.
ROBOT_ATTEMPTS = 10


def upload(path: str) -> InputFile:
    """A file written for an outbox row (a chart, a ledger), sent as its bytes. A file that
    is gone cannot come back: the row fails, with the reason, like any row that can never
    be sent."""
    return InputFile(Path(path).read_bytes(), filename=Path(path).name)


def backoff(attempts: int, spread: Callable[[], float] = random.random) -> float:
    """Seconds before retrying a row that failed `attempts` times: doubling from 0.5 s to
    five minutes, each drawn between half and all of that so retries do not move in step."""
    ceiling = min(MAX_BACKOFF, 0.5 * 2.0 ** min(attempts, 12))
    return ceiling * (0.5 + 0.5 * spread())


def _number_of(row: Due) -> str | None:
    """The ticket number a row's parameters name, for the log lines about it."""
    try:
        number = json.loads(row.params or "{}").get("number")
    except (ValueError, AttributeError):
        return None
    return number if isinstance(number, str) else None


def failure_reason(error: str) -> str:
    """A permanent failure's kind, few enough to label a metric with."""
    text = error.lower()
    for needle, reason in (
        ("blocked", "blocked"),
        ("forbidden", "forbidden"),
        ("chat not found", "chat_not_found"),
        ("not a number", "bad_chat_id"),
        ("message to edit not found", "edit_not_found"),
        ("http ", "http_status"),
        ("bad request", "bad_request"),
    ):
        if needle in text:
            return reason
    return "other"


class Delivery:
    def __init__(
        self,
        engine: Engine,
        bot: SendingBot,
        zone: Callable[[Session], ZoneConfig],
        *,
        clock: Clock | None = None,
        limits: Limits | None = None,
        http: httpx.AsyncClient | None = None,
        outage: StorageOutage | None = None,
        owner: str | None = None,
        lease_seconds: float = DEFAULT_SECONDS,
    ) -> None:
        self.engine = engine
        self.bot = bot
        self.zone = zone
        self.clock = clock or SystemClock()
        self.pacer = Pacer(limits)
        self.http = http
        self._wake = asyncio.Event()
        self.rendering = Rendering(engine)
        self.ledger = OutboxLedger(engine, self.clock)
        self._stopping = False
        self._quiet = QuietLog(log)
        self.holds = Holds(engine, self.clock)
        self.leases = outbox_leases(
            engine,
            self.clock,
            owner or process_name(),
            lease_seconds,
            solo=one_process_store(engine),
        )
        self._robots_busy: set[str] = set()  # robot URLs a task is posting to
        self._robot_holds: dict[str, float] = {}  # robot URL -> monotonic end of its hold
        self.robot_attempts = ROBOT_ATTEMPTS
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self.outage = outage or StorageOutage()
        # rows handed over by the handling that queued them (`hand`), for the next pass
        self._handed: list[Due] = []
        self.handed_passes = 0  # passes that took handed rows without reading the queue
        # sent, not yet written down: left for a handling to write (`records_ride`), or
        # refused by the database; written before the queue is read again
        self._unrecorded: dict[int, tuple[Due, int | None]] = {}
        self._unrecorded_at: float | None = None  # monotonic: when the oldest was sent
        # whether a handling on this loop writes the sent rows down (`take_unrecorded`):
        # set by the service when its units of work run on the loop (SQLite, one process)
        self.records_ride = False
        self.record_within = RECORD_WITHIN
        self.sent = 0
        self.retry_afters = 0
        # messages given up on, by channel and reason (for the metrics)
        self.failures: Counter[tuple[str, str]] = Counter()

    def poke(self) -> None:
        self._wake.set()

    def hand(self, rows: tuple[Due, ...]) -> None:
        """Rows a handling just committed, as it wrote them: the next pass takes them
        without reading the queue when they are all that is pending (`_handed_only`)."""
        if self.leases.solo:
            self._handed.extend(rows)

    def take_unrecorded(self) -> list[tuple[Due, int | None]]:
        """The sent rows not yet written down, for a unit of work on this loop to write in
        its own transaction (bookkeeping.write_sent); it tells `recorded` how that went.
        Until then they stay leased, so no pass sends them again."""
        if not self.records_ride or not self._unrecorded:
            return []
        rows = list(self._unrecorded.values())
        self._unrecorded, self._unrecorded_at = {}, None
        return rows

    def recorded(self, rows: list[tuple[Due, int | None]], written: bool) -> None:
        """The rows `take_unrecorded` gave: committed, or not (then the dispatcher writes
        them down itself, at once)."""
        if written:
            self._written_down(rows)
            return
        for row, message_id in rows:
            self._unrecorded.setdefault(row.id, (row, message_id))
        self._unrecorded_at = time.monotonic() - self.record_within
        self.poke()

    def write_down(self) -> None:
        """At stop: what was sent and is not written down yet, written now if the database
        takes it (else those rows are sent again at the next start)."""
        if not self._unrecorded:
            return
        try:
            self._record_sent([])
        except Exception as exc:
            log.warning("%d sent messages not written down at stop: %s", len(self._unrecorded), exc)

    def _record_due(self) -> float | None:
        """Seconds until the rows left for a handling must be written down by the
        dispatcher; None when none are waiting."""
        if not self._unrecorded or self._unrecorded_at is None:
            return None
        return self._unrecorded_at + self.record_within - time.monotonic()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    # --- the loop -----------------------------------------------------------------------
    async def run_forever(self) -> None:
        while not self._stopping:
            self._wake.clear()  # a poke from now on is news to this pass or the wait after it
            try:
                pause = await self.pass_once()
            except Exception as exc:  # the dispatcher must outlive any one bad pass
                if is_transient(exc):
                    self.outage.refused(exc)
                else:
                    self._quiet.error(
                        problem_key("outbox-pass", exc), "outbox pass failed: %s", exc, exc_info=exc
                    )
                pause = 0.5
            if self._stopping:
                break
            due = self._record_due()
            if due is not None:
                pause = min(pause, due)  # the next pass writes them down first
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, min(pause, 1.0))):
                    await self._wake.wait()

    def _ready(self) -> Ready:
        """The due head of each chat and the due webhook rows (bot/outbox/queue.py)."""
        due = self._record_due()
        if due is not None and (due <= 0 or not self._handed):
            self._record_sent([])  # raises while the database still refuses it
        handed, self._handed = self._handed, []
        self.holds.release_due()
        now = self.clock.now()
        owner = self.leases.owner
        with self.engine.connect() as connection:  # a read of plain rows: no ORM session
            found = self._handed_only(connection, handed, now)
            if found is None:
                if self._unrecorded:
                    # the queue's read must find them sent: written first, and read after
                    # the write (a new transaction)
                    connection.rollback()
                    self._record_sent([])
                found = ready(connection, now, BATCH, owner)
            else:
                self.handed_passes += 1
        hooks = [row for row in found.hooks if self._hook_url(row) not in self._robots_busy]
        return found._replace(hooks=hooks)

    def _handed_only(
        self, connection: Connection, handed: list[Due], now: datetime
    ) -> Ready | None:
        """The pass's rows from those handed over, when nothing of this process's own
        stands in the way (a hold) and they are all that is pending but for rows sent and
        not yet written down (`ready_of`); None: the queue is read."""
        if not handed or len(self.holds):
            return None
        return ready_of(connection, handed, now, BATCH, sent=self._unrecorded.keys())

    def _foreign(self, rows: list[Due]) -> list[int | None]:
        """The rows read with another process's (run out) lease on them."""
        owner = self.leases.owner
        return [row.id for row in rows if row.lease_owner not in (None, owner)]

    def _idle_pause(self, soonest: float) -> float:
        held = self.holds.soonest()
        return soonest if held is None else min(soonest, held)

    async def pass_once(self) -> float:
        """Send what may be sent now; return how long until something more may be."""
        heads, hooks, more = self._ready()
        if not heads and not hooks:
            return self._idle_pause(1.0)
        with Session(self.engine) as session:
            zone = self.zone(session)
        by_robot: dict[str, list[Due]] = {}
        won = self.leases.claim((row.id for row in hooks), foreign=self._foreign(hooks))
        for row in hooks:
            if row.id in won:
                by_robot.setdefault(self._hook_url(row), []).append(row)
        for url, rows in by_robot.items():
            # one task per robot, in order: a robot that hangs or fails holds up no other
            self._robots_busy.add(url)
            task = asyncio.create_task(self._send_hooks(url, rows, zone))
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)
        tasks: list[asyncio.Task[tuple[Due, int | None] | None]] = []
        soonest = 1.0
        paced: dict[int, float] = {}
        started = time.monotonic()
        ready: list[Due] = []
        for row in heads:
            broken = not isinstance(row.chat_id, int) or isinstance(row.chat_id, bool)
            wait = 0.0 if broken else self.pacer.chat_wait(int(row.chat_id or 0))
            if wait > 0:
                soonest = min(soonest, wait)
                if wait >= PERSIST_AT_LEAST and row.id is not None:
                    paced[row.id] = wait  # out of the selection until then
                continue
            ready.append(row)
        # leased: only what this pass can send, and of that only the rows this process won
        # (a head another process holds keeps its chat there)
        ready = ready[: max(1, int(self.pacer.limits.per_second * PASS_SPAN))]
        won = self.leases.claim((row.id for row in ready), foreign=self._foreign(ready))
        for row in ready:
            if row.id not in won:
                continue
            if not isinstance(row.chat_id, int) or isinstance(row.chat_id, bool):
                # SQLite keeps whatever it was given; such a row can never be sent
                self._failed(row, f"chat id {row.chat_id!r} is not a number", zone)
                continue
            overall = self.pacer.overall_wait()
            if overall > 0:
                # the overall limit: wait for room within this pass while it is young (the
                # sends already started go on meanwhile), else leave the rest to the next;
                # a new row queued meanwhile (a poke) ends it after FRESH_READ
                young = time.monotonic() - started
                if young + overall > PASS_SPAN or (self._wake.is_set() and young >= FRESH_READ):
                    soonest = min(soonest, overall)
                    break
                await asyncio.sleep(overall)
            sending = self.pacer.take(row.chat_id)
            tasks.append(asyncio.create_task(self._send(row, zone, sending)))
        if paced:
            self.holds.hold(paced)
        if tasks:
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            delivered = [d for d in outcomes if isinstance(d, tuple)]
            for failure in outcomes:
                if isinstance(failure, BaseException):  # recorded rows still count below
                    self._quiet.error(
                        problem_key("outbox-send", failure),
                        "sending a row failed: %s",
                        failure,
                        exc_info=failure,
                    )
            # a sent row stays leased until it is written down (now, or by a handling), so
            # nobody sends it again; a row neither sent nor held for a retry (the store was
            # busy) is free at once
            if delivered:
                self._sent(delivered)
            self.leases.release(won & self.leases.held - self._unrecorded.keys())
            if more or hooks or len(tasks) < len(heads):
                return 0.0  # the next pass has something to find
            # all it found went out, and no chat had a second row: nothing to read until
            # a row is queued (a poke), a failure is written (a poke) or a hold ends
            return self._idle_pause(soonest)
        self.leases.release(won & self.leases.held)
        return self._idle_pause(soonest)

    def _retry_later(self, row: Due, seconds: float, error: str, *, attempt: bool = True) -> None:
        """Hold the row `seconds` (persisted in its next_attempt_at) and note the error;
        its lease ends with it."""
        assert row.id is not None
        self.leases.forget([row.id])
        if row.chat_id is not None and row.channel != "webhook":
            self.pacer.hold(row.chat_id, seconds)
        when = self.holds.until(row.id, seconds)
        self.ledger.retry_later(row, error, when, attempt=attempt)

    # --- telegram -----------------------------------------------------------------------
    async def _call(self, row: Due, zone: ZoneConfig) -> int | None:
        assert row.chat_id is not None
        text = self.rendering.text_of(row, zone)
        keyboard = self.rendering.keyboard_of(row)
        if row.kind == "edit" or row.edit_of is not None:
            message_id = self._message_id_of(row.edit_of)
            if message_id is None:
                raise BadRequest("Message to edit not found")
            try:
                await self.bot.edit_text(
                    row.chat_id, message_id, clip(text, TELEGRAM_LIMIT), keyboard=keyboard
                )
            except BadRequest as exc:
                if "not modified" not in str(exc).lower():
                    raise
            return message_id
        reply_id = self._message_id_of(row.reply_to_outbox)
        if row.kind in ("photo", "document") and (row.file_id or row.local_path):
            media = self.bot.send_photo if row.kind == "photo" else self.bot.send_document
            reply = (
                ReplyParameters(reply_id, allow_sending_without_reply=True) if reply_id else None
            )
            msg = await media(
                row.chat_id,
                row.file_id or upload(row.local_path or ""),
                caption=clip(text, CAPTION_LIMIT),
                reply_markup=markup(keyboard),
                reply_parameters=reply,
            )
            return msg.message_id
        return await self.bot.send_text(
            row.chat_id, clip(text, TELEGRAM_LIMIT), keyboard=keyboard, reply_to=reply_id
        )

    async def _send(
        self, row: Due, zone: ZoneConfig, sending: Sending | None = None
    ) -> tuple[Due, int | None] | None:
        """Send one row; returns it with its message_id when Telegram took it, so a whole
        pass is recorded in one commit. Failures are recorded here, as they happen."""
        with about(chat=row.chat_id, ticket=_number_of(row)):
            return await self._send_row(row, zone, sending)

    async def _send_row(
        self, row: Due, zone: ZoneConfig, sending: Sending | None
    ) -> tuple[Due, int | None] | None:
        assert row.chat_id is not None
        try:
            try:
                message_id = await self._call(row, zone)
            finally:
                if sending is not None:
                    sending.done()
        except RetryAfter as exc:
            self.retry_afters += 1
            seconds = (
                exc.retry_after
                if isinstance(exc.retry_after, int | float)
                else exc.retry_after.total_seconds()
            )
            self._retry_later(row, float(seconds), f"429: retry after {seconds}s", attempt=False)
            return None
        except (BadRequest, Forbidden) as exc:
            self._failed(row, str(exc), zone)
            return None
        except (TimedOut, NetworkError) as exc:
            self._retry_later(row, backoff(row.attempts), str(exc))
            return None
        except Exception as exc:
            # not an answer from Telegram but a fault of this row (a chat id that is not a
            # number, parameters its template cannot render): it will fail the same way on
            # every pass, so it is marked failed and reported, and the pass goes on
            if is_transient(exc):
                return None
            self._quiet.error(
                problem_key("outbox-row", exc), "outbox %s cannot be sent: %s", row.id, exc
            )
            self._failed(row, f"{type(exc).__name__}: {exc}", zone)
            return None
        return row, message_id

    def _message_id_of(self, outbox_id: int | None) -> int | None:
        """The message a row became: sent and not yet written down, or as recorded."""
        if outbox_id is not None and outbox_id in self._unrecorded:
            return self._unrecorded[outbox_id][1]
        return self.ledger.message_id_of(outbox_id)[1]

    def _mark_sent(self, row: Due, message_id: int | None) -> None:
        self._record_sent([(row, message_id)])

    def _sent(self, delivered: list[tuple[Due, int | None]]) -> None:
        """A pass's sent rows: left for the next handling on this loop to write down
        (`take_unrecorded`, within `record_within`), or written down now."""
        if not self.records_ride or self._stopping:
            self._record_sent(delivered)
            return
        for row, message_id in delivered:
            self._unrecorded[row.id] = (row, message_id)
        if self._unrecorded_at is None:
            self._unrecorded_at = time.monotonic()

    def _record_sent(self, delivered: list[tuple[Due, int | None]]) -> None:
        """Rows Telegram (or a robot) took, with those not yet written down, written down
        in one commit. If the database refuses, they are kept here and written before the
        queue is read again: they went out, and the database being away must not send them
        again."""
        batch: dict[int, tuple[Due, int | None]] = {
            **self._unrecorded,
            **{row.id: (row, mid) for row, mid in delivered},
        }
        try:
            self.ledger.record_sent(list(batch.values()))
        except Exception as exc:
            if is_transient(exc):
                self._unrecorded = batch
                if self._unrecorded_at is None:
                    self._unrecorded_at = time.monotonic()
                self.outage.refused(exc)
            raise
        self._unrecorded, self._unrecorded_at = {}, None
        self._written_down(list(batch.values()), files=False)

    def _written_down(self, rows: list[tuple[Due, int | None]], *, files: bool = True) -> None:
        """Rows now recorded as sent: their leases and holds end, and (`files`) the
        uploads they owned go (`record_sent` has done that itself)."""
        if files:
            after_sent(rows)
        self.leases.forget(row.id for row, _message_id in rows)
        self.outage.recovered()
        for row, _message_id in rows:
            self.holds.forget(row.id)
        self.sent += len(rows)

    def _failed(self, row: Due, error: str, zone: ZoneConfig) -> None:
        """A message that can never be delivered is marked so, and its squad lead told. If
        even the report cannot be written, the row is still marked: it must not come back."""
        log.warning("outbox %s to %s failed permanently: %s", row.id, row.chat_id, error)
        self.failures[(row.channel, failure_reason(error))] += 1
        self.holds.forget(row.id)
        self.leases.forget([row.id])
        try:
            self.ledger.mark_failed(row, error, report=True, language=zone.language)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("could not report the failure of outbox %s: %s", row.id, exc)
            self.ledger.mark_failed(row, error, report=False)
        self.poke()

    # --- webhooks -----------------------------------------------------------------------
    async def _send_hooks(self, url: str, rows: list[Due], zone: ZoneConfig) -> None:
        loop = asyncio.get_running_loop()
        client = self.http or httpx.AsyncClient(timeout=10.0, trust_env=False)
        try:
            for n, row in enumerate(rows):
                held = self._robot_holds.get(url, 0.0) - loop.time()
                if held > 0:  # the robot said to wait: so do its other rows, persisted
                    self.holds.hold({r.id: held for r in rows[n:] if r.id is not None})
                    break
                with about(ticket=_number_of(row)):
                    await self._send_hook(client, row, zone)
        finally:
            self._robots_busy.discard(url)
            with contextlib.suppress(Exception):  # else they are free when the lease ends
                self.leases.release({r.id for r in rows} & self.leases.held)
            if self.http is None:
                await client.aclose()

    @staticmethod
    def _hook_url(row: Due) -> str:
        try:
            return str(json.loads(row.webhook or "{}").get("url", ""))
        except ValueError:
            return ""

    async def _send_hook(self, client: httpx.AsyncClient, row: Due, zone: ZoneConfig) -> None:
        try:
            await self._post_hook(client, row, zone)
        except Exception as exc:  # a row of its own kind of broken: marked, the rest go on
            if is_transient(exc):
                return
            self._quiet.error(
                problem_key("webhook-row", exc), "outbox %s cannot be posted: %s", row.id, exc
            )
            self._failed(row, f"{type(exc).__name__}: {exc}", zone)

    async def _post_hook(self, client: httpx.AsyncClient, row: Due, zone: ZoneConfig) -> None:
        import os

        spec: dict[str, Any] = json.loads(row.webhook or "{}")
        secret = (
            os.environ.get(spec.get("secret_env") or "", None)
            if spec.get("secret_env")
            else spec.get("secret")
        )
        target = WebhookTarget(kind=spec.get("kind", "json"), url=spec["url"], secret=secret)
        params = json.loads(row.params)
        title = t(row.locale, "alert_title." + row.template.split(".")[-1])
        alert = Alert(
            title=title,
            text=self.rendering.text_of(row, zone),
            ticket_number=params.get("number"),
            level=row.template.split(".")[-1],
            extra={},
        )
        try:
            await deliver(client, target, alert, self.clock.now())
        except WebhookError as exc:
            if exc.retryable and exc.retry_after is not None:
                # the robot's own hint (Retry-After, or its rate-limit code): it holds every
                # alert to that robot, not just this one
                wait = max(exc.retry_after, 0.0)
                self._robot_holds[target.url] = asyncio.get_running_loop().time() + wait
                self._retry_later(row, wait, str(exc), attempt=False)
            elif not exc.retryable and exc.code is None:
                self._failed(row, str(exc), zone)  # an HTTP 4xx, a bad URL: final
            elif row.attempts + 1 >= self.robot_attempts:
                # it hangs, fails or refuses every time (an error code in a 200, a reply
                # that is not the robot's): given up on, with the reason, the lead told
                self._failed(row, f"{exc}; given up after {row.attempts + 1} attempts", zone)
            else:
                self._retry_later(row, backoff(row.attempts), str(exc))
            return
        self._mark_sent(row, None)
