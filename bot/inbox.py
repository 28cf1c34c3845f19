"""Everything that enters the process. Updates are fetched with our own getUpdates loop and
committed to the inbox table (unique update_id) BEFORE the next call confirms them to
Telegram, unlike PTB's stock Updater, which confirms as soon as updates are in memory. Then
each stored update is handled in one transaction together with marking it processed, so a
crash anywhere loses nothing and a redelivered update changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from telegram import Update
from telegram.error import NetworkError, RetryAfter, TimedOut
from telegram.ext import Application

from bot.i18n import normalise, t
from handlers.work import Work, begin, end
from models.clock import Clock
from models.db import is_busy
from models.desk import Desk
from models.outbox import enqueue
from models.plumbing import InboxUpdate
from models.zone import ZoneConfig

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]


def store_updates(engine: Engine, rows: list[tuple[int, str]], clock: Clock) -> int:
    """Insert raw updates, ignoring ones already stored; one commit for the batch."""
    if not rows:
        return 0
    now = clock.now()
    with Session(engine) as session:
        table = InboxUpdate.__table__  # type: ignore[attr-defined]
        values = [
            {"update_id": uid, "payload": payload, "received_at": now, "attempts": 0}
            for uid, payload in rows
        ]
        dialect = session.get_bind().dialect.name
        insert: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        result = session.execute(insert.values(values).on_conflict_do_nothing())
        session.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class UpdateRunner:
    """Handles one update in one unit of work."""

    def __init__(
        self,
        app: Application,  # type: ignore[type-arg]
        engine: Engine,
        clock: Clock,
        zone: Callable[[Session], ZoneConfig],
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.engine = engine
        self.clock = clock
        self.zone = zone
        self.after_commit = after_commit
        self._answering: set[asyncio.Task[None]] = set()

    async def handle(self, payload: dict[str, Any], *, update_id: int | None = None) -> str:
        """'done', 'busy' (retry later, nothing changed) or 'failed' (a bug; told the user)."""
        update = Update.de_json(payload, self.app.bot)
        user = update.effective_user
        chat = update.effective_chat
        w: Work | None = None
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                if update_id is not None:
                    row = session.get(InboxUpdate, update_id)
                    if row is not None and row.processed_at is not None:
                        return "done"
                desk = Desk(session, self.clock.now(), self.zone(session))
                w = Work(
                    desk,
                    user.id if user else None,
                    user.language_code if user else None,
                    chat.id if chat else None,
                )
                w.refresh_actor()
                token = begin(w)
                try:
                    await self.app.process_update(update)
                finally:
                    end(token)
                if w.failed is not None:
                    raise w.failed
                if update_id is not None:
                    row = session.get(InboxUpdate, update_id)
                    if row is not None:
                        row.processed_at = desk.now
                        row.attempts += 1
                        session.add(row)
                session.commit()
        except Exception as exc:
            if is_busy(exc):
                return "busy"
            log.exception("update %s failed", update_id)
            self._failed(
                update_id,
                exc,
                chat.id if chat else None,
                w.locale if w is not None else normalise(None),
            )
            return "failed"
        self.after_commit()
        if w is not None and w.answers:
            # answered beside the queue: the next update need not wait for this round trip
            task = asyncio.create_task(self._answer_buttons(w))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        return "done"

    async def _answer_buttons(self, w: Work | None) -> None:
        if w is None:
            return
        for answer in w.answers:
            try:
                await self.app.bot.answer_callback_query(
                    answer.query_id, text=answer.text, show_alert=answer.alert
                )
            except Exception as exc:  # cosmetic: the press was already handled
                log.warning("answerCallbackQuery failed: %s", exc)

    def _failed(
        self, update_id: int | None, exc: BaseException, chat_id: int | None, locale: str
    ) -> None:
        with Session(self.engine) as session:
            now = self.clock.now()
            if update_id is not None:
                row = session.get(InboxUpdate, update_id)
                if row is not None:
                    row.processed_at = now
                    row.attempts += 1
                    row.error = f"{type(exc).__name__}: {exc}"[:1000]
                    session.add(row)
            if chat_id is not None:
                enqueue(session, now, chat_id=chat_id, template="error.internal", locale=locale)
            session.commit()
        self.after_commit()


class Inbox:
    def __init__(
        self,
        app: Application,  # type: ignore[type-arg]
        engine: Engine,
        runner: UpdateRunner,
        clock: Clock,
        *,
        long_poll: int = 30,
    ) -> None:
        self.app = app
        self.engine = engine
        self.runner = runner
        self.clock = clock
        self.long_poll = long_poll
        self._stored = asyncio.Event()
        self._stopping = False
        self._told_busy: set[int] = set()
        self.handled = 0

    def stop(self) -> None:
        self._stopping = True
        self._stored.set()

    async def fetch_forever(self) -> None:
        offset: int | None = None
        delay = 0.5
        while not self._stopping:
            try:
                updates = await self.app.bot.get_updates(
                    offset=offset,
                    timeout=self.long_poll,
                    allowed_updates=ALLOWED_UPDATES,
                    read_timeout=self.long_poll + 10,
                )
            except RetryAfter as exc:
                await asyncio.sleep(
                    float(
                        exc.retry_after
                        if isinstance(exc.retry_after, int)
                        else exc.retry_after.total_seconds()
                    )
                )
                continue
            except (TimedOut, NetworkError) as exc:
                log.warning("getUpdates failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 0.5
            if not updates:
                continue
            rows = [(u.update_id, json.dumps(u.to_dict(), ensure_ascii=False)) for u in updates]
            while not self._stopping:
                try:
                    store_updates(self.engine, rows, self.clock)
                    break
                except Exception as exc:
                    if not is_busy(exc):
                        log.exception("storing updates failed")
                    else:  # kept by Telegram until stored: the offset is not moved on
                        for u in updates:
                            await self._tell_busy_about(u)
                    await asyncio.sleep(0.2)
            offset = max(u.update_id for u in updates) + 1  # confirmed by the next call
            self._stored.set()

    def _unprocessed(self) -> list[InboxUpdate]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(
                session.exec(
                    select(InboxUpdate)
                    .where(col(InboxUpdate.processed_at).is_(None))
                    .order_by(col(InboxUpdate.update_id))
                    .limit(200)
                ).all()
            )

    async def process_forever(self) -> None:
        delay = 0.1
        while not self._stopping:
            self._stored.clear()
            try:
                rows = self._unprocessed()
            except Exception as exc:
                if not is_busy(exc):
                    log.exception("reading the inbox failed")
                rows = []
            busy = False
            for row in rows:
                outcome = await self.runner.handle(json.loads(row.payload), update_id=row.update_id)
                if outcome == "busy":
                    busy = True
                    await self._tell_busy(row)
                    break
                self._told_busy.discard(row.update_id)
                self.handled += 1
            if busy:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            if rows:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stored.wait(), timeout=1.0)

    async def _tell_busy(self, row: InboxUpdate) -> None:
        await self._tell_busy_about(Update.de_json(json.loads(row.payload), self.app.bot))

    async def _tell_busy_about(self, update: Update) -> None:
        """The store is busy: say so once, directly (the outbox lives in that store too)."""
        if update.update_id in self._told_busy:
            return
        self._told_busy.add(update.update_id)
        if update.effective_chat is None or update.effective_chat.type != "private":
            return
        lang = update.effective_user.language_code if update.effective_user else None
        try:
            await self.app.bot.send_message(
                update.effective_chat.id, t(normalise(lang), "error.busy")
            )
        except Exception as exc:
            log.warning("could not tell %s the store is busy: %s", update.effective_chat.id, exc)
