"""The outbox dispatcher: sends what the domain queued, in order per chat, paced to
Telegram's limits; honours 429 retry_after, retries transient failures with backoff forever,
and marks permanent failures (blocked bot, unknown chat) and reports them to the squad lead.
Rows survive restarts because they live in the database until sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from telegram import Bot, InputFile, ReplyParameters
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.i18n import t
from bot.outbox.bookkeeping import OutboxLedger
from bot.outbox.pacing import Limits, Pacer
from bot.outbox.rendering import CAPTION_LIMIT, TELEGRAM_LIMIT, Rendering, clip
from bot.outbox.robots import Alert, WebhookError, WebhookTarget, deliver
from models.clock import Clock, SystemClock
from models.db import is_transient
from models.plumbing import OutboxMessage
from models.quiet_log import QuietLog, problem_key
from models.zone.config import ZoneConfig

log = logging.getLogger(__name__)

MAX_BACKOFF = 300.0
BATCH = 150


def upload(path: str) -> InputFile:
    """A file written for an outbox row (a chart, a ledger), sent as its bytes. A file that
    is gone cannot come back: the row fails, with the reason, like any row that can never
    be sent."""
    return InputFile(Path(path).read_bytes(), filename=Path(path).name)


def backoff(attempts: int) -> float:
    return min(MAX_BACKOFF, 0.5 * 2.0 ** min(attempts, 12))


class Delivery:
    def __init__(
        self,
        engine: Engine,
        bot: Bot,
        zone: Callable[[Session], ZoneConfig],
        *,
        clock: Clock | None = None,
        limits: Limits | None = None,
        http: httpx.AsyncClient | None = None,
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
        self._hook_holds: dict[int, float] = {}
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.retry_afters = 0

    def poke(self) -> None:
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    # --- the loop -----------------------------------------------------------------------
    async def run_forever(self) -> None:
        while not self._stopping:
            try:
                pause = await self.pass_once()
            except Exception as exc:  # the dispatcher must outlive any one bad pass
                if not is_transient(exc):
                    self._quiet.error(
                        problem_key("outbox-pass", exc), "outbox pass failed: %s", exc, exc_info=exc
                    )
                pause = 0.5
            if self._stopping:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.01, min(pause, 1.0)))

    def _pending(self) -> list[OutboxMessage]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(
                session.exec(
                    select(OutboxMessage)
                    .where(OutboxMessage.state == "pending")
                    .order_by(col(OutboxMessage.id))
                    .limit(BATCH)
                ).all()
            )

    async def pass_once(self) -> float:
        """Send what may be sent now; return how long until something more may be."""
        rows = self._pending()
        if not rows:
            return 1.0
        with Session(self.engine) as session:
            zone = self.zone(session)
        first_per_chat: dict[int, OutboxMessage] = {}
        hooks: list[OutboxMessage] = []
        for row in rows:
            if row.channel == "webhook":
                hooks.append(row)
            elif not isinstance(row.chat_id, int) or isinstance(row.chat_id, bool):
                # SQLite keeps whatever it was given; such a row can never be sent
                self._failed(row, f"chat id {row.chat_id!r} is not a number", zone)
            elif row.chat_id not in first_per_chat:
                first_per_chat[row.chat_id] = row
        if hooks:
            task = asyncio.create_task(self._send_hooks(hooks, zone))
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)
        tasks = []
        soonest = 1.0
        for chat_id, row in first_per_chat.items():
            wait = self.pacer.chat_wait(chat_id)
            if wait > 0:
                soonest = min(soonest, wait)
                continue
            overall = self.pacer.overall_wait()
            if overall > 0:
                soonest = min(soonest, overall)
                break
            self.pacer.take(chat_id)
            tasks.append(self._send(row, zone))
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
            if delivered:
                self._record_sent(delivered)
            return 0.0
        return soonest

    # --- telegram -----------------------------------------------------------------------
    async def _call(self, row: OutboxMessage, zone: ZoneConfig) -> int | None:
        assert row.chat_id is not None
        text = self.rendering.text_of(row, zone)
        markup = self.rendering.markup_of(row)
        if row.kind == "edit" or row.edit_of is not None:
            _state, message_id = self.ledger.message_id_of(row.edit_of)
            if message_id is None:
                raise BadRequest("Message to edit not found")
            try:
                await self.bot.edit_message_text(
                    clip(text, TELEGRAM_LIMIT),
                    chat_id=row.chat_id,
                    message_id=message_id,
                    reply_markup=markup,
                )
            except BadRequest as exc:
                if "not modified" not in str(exc).lower():
                    raise
            return message_id
        _state, reply_id = self.ledger.message_id_of(row.reply_to_outbox)
        reply = ReplyParameters(reply_id, allow_sending_without_reply=True) if reply_id else None
        if row.kind in ("photo", "document") and (row.file_id or row.local_path):
            media = self.bot.send_photo if row.kind == "photo" else self.bot.send_document
            msg = await media(
                row.chat_id,
                row.file_id or upload(row.local_path or ""),
                caption=clip(text, CAPTION_LIMIT),
                reply_markup=markup,
                reply_parameters=reply,
            )
        else:
            msg = await self.bot.send_message(
                row.chat_id, clip(text, TELEGRAM_LIMIT), reply_markup=markup, reply_parameters=reply
            )
        return msg.message_id

    async def _send(
        self, row: OutboxMessage, zone: ZoneConfig
    ) -> tuple[OutboxMessage, int | None] | None:
        """Send one row; returns it with its message_id when Telegram took it, so a whole
        pass is recorded in one commit. Failures are recorded here, as they happen."""
        assert row.chat_id is not None
        try:
            message_id = await self._call(row, zone)
        except RetryAfter as exc:
            self.retry_afters += 1
            seconds = (
                exc.retry_after
                if isinstance(exc.retry_after, int | float)
                else exc.retry_after.total_seconds()
            )
            self.pacer.hold(row.chat_id, float(seconds))
            return None
        except (BadRequest, Forbidden) as exc:
            self._failed(row, str(exc), zone)
            return None
        except (TimedOut, NetworkError) as exc:
            self.pacer.hold(row.chat_id, backoff(row.attempts))
            self.ledger.retry_later(row, str(exc))
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

    def _mark_sent(self, row: OutboxMessage, message_id: int | None) -> None:
        self._record_sent([(row, message_id)])

    def _record_sent(self, delivered: list[tuple[OutboxMessage, int | None]]) -> None:
        self.ledger.record_sent(delivered)
        self.sent += len(delivered)

    def _failed(self, row: OutboxMessage, error: str, zone: ZoneConfig) -> None:
        """A message that can never be delivered is marked so, and its squad lead told. If
        even the report cannot be written, the row is still marked: it must not come back."""
        log.warning("outbox %s to %s failed permanently: %s", row.id, row.chat_id, error)
        try:
            self.ledger.mark_failed(row, error, report=True, language=zone.language)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("could not report the failure of outbox %s: %s", row.id, exc)
            self.ledger.mark_failed(row, error, report=False)
        self.poke()

    # --- webhooks -----------------------------------------------------------------------
    async def _send_hooks(self, rows: list[OutboxMessage], zone: ZoneConfig) -> None:
        loop = asyncio.get_running_loop()
        client = self.http or httpx.AsyncClient(timeout=10.0, trust_env=False)
        try:
            for row in rows:
                assert row.id is not None
                if self._hook_holds.get(row.id, 0.0) > loop.time():
                    continue
                self._hook_holds[row.id] = loop.time() + 30.0  # in flight
                await self._send_hook(client, row, zone)
        finally:
            if self.http is None:
                await client.aclose()

    async def _send_hook(
        self, client: httpx.AsyncClient, row: OutboxMessage, zone: ZoneConfig
    ) -> None:
        try:
            await self._post_hook(client, row, zone)
        except Exception as exc:  # a row of its own kind of broken: marked, the rest go on
            if is_transient(exc):
                return
            self._quiet.error(
                problem_key("webhook-row", exc), "outbox %s cannot be posted: %s", row.id, exc
            )
            self._failed(row, f"{type(exc).__name__}: {exc}", zone)

    async def _post_hook(
        self, client: httpx.AsyncClient, row: OutboxMessage, zone: ZoneConfig
    ) -> None:
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
        loop = asyncio.get_running_loop()
        assert row.id is not None
        try:
            await deliver(client, target, alert, self.clock.now())
        except WebhookError as exc:
            if exc.retryable:
                self._hook_holds[row.id] = loop.time() + backoff(row.attempts)
                self.ledger.retry_later(row, str(exc))
            else:
                self._failed(row, str(exc), zone)
            return
        self._hook_holds.pop(row.id, None)
        self._mark_sent(row, None)
