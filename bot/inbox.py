"""Everything that enters the process. Updates are fetched with our own getUpdates loop and
committed to the inbox table (unique update_id) BEFORE the next call confirms them to
Telegram, unlike PTB's stock Updater, which confirms as soon as updates are in memory. Then
each stored update is handled in one transaction together with marking it processed, so a
crash anywhere loses nothing and a redelivered update changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from telegram import Update
from telegram.error import Conflict, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import Application

from bot.i18n import normalise, t
from handlers.work import Work, begin, end
from models.clock import Clock
from models.db import is_transient
from models.desk import Desk
from models.outbox import enqueue
from models.plumbing import InboxUpdate
from models.quiet_log import QuietLog, problem_key
from models.zone.config import ZoneConfig

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]
MAX_ATTEMPTS = 3  # handling that fails the same way this often is given up on (dead letter)
NO_UPDATE_ID = -1  # stored under this when Telegram's body has no usable update_id
_BIGINT = 2**63


def usable_update_id(raw: object) -> int | None:
    if not isinstance(raw, dict):
        return None
    uid = raw.get("update_id")
    if isinstance(uid, int) and not isinstance(uid, bool) and 0 <= uid < _BIGINT:
        return uid
    return None


def payload_of(raw: object) -> tuple[str, str]:
    """The body as it is stored, and its digest. Stored as sent where the database can
    hold it; a lone UTF-16 surrogate (which UTF-8 cannot hold) is kept as a JSON escape."""
    canonical = json.dumps(raw, sort_keys=True, ensure_ascii=True)
    digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    text = json.dumps(raw, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(raw, ensure_ascii=True)
    return text, digest


def store_updates(engine: Engine, raws: Sequence[object], clock: Clock) -> int:
    """Insert raw updates, ignoring redeliveries (same id, same body); one commit for the
    batch. Returns how many were new."""
    if not raws:
        return 0
    now = clock.now()
    values = []
    for raw in raws:
        payload, digest = payload_of(raw)
        uid = usable_update_id(raw)
        values.append(
            {
                "update_id": NO_UPDATE_ID if uid is None else uid,
                "digest": digest,
                "payload": payload,
                "received_at": now,
                "attempts": 0,
            }
        )
    with Session(engine) as session:
        table = InboxUpdate.__table__  # type: ignore[attr-defined]
        dialect = session.get_bind().dialect.name
        insert: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        result = session.execute(insert.values(values).on_conflict_do_nothing())
        session.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


_SURROGATE = re.compile("[\\ud800-\\udfff]")


def clean_text(value: Any) -> Any:
    """What users typed, as they meant it, in a form every database stores: NUL (refused by
    PostgreSQL text) is dropped and a lone UTF-16 surrogate (refused by UTF-8) becomes the
    replacement character. Applied to the whole update before anything reads it."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        if _SURROGATE.search(value):
            value = _SURROGATE.sub("\ufffd", value)
        return value
    if isinstance(value, dict):
        return {k: clean_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_text(v) for v in value]
    return value


class UpdateRunner:
    """Handles one stored update in one unit of work."""

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
        self._quiet = QuietLog(log)
        # updates whose failure could not even be written down: skipped until restart
        self.unrecordable: set[int] = set()

    async def handle(self, payload: dict[str, Any], *, inbox_id: int | None = None) -> str:
        """'done'; 'busy' (the store cannot take it now: retry later, nothing changed);
        'retry' (it failed, and will be tried again) or 'dead' (given up on, user told)."""
        try:
            update = Update.de_json(clean_text(payload), self.app.bot)
            user = update.effective_user
            chat = update.effective_chat
            locale = normalise(user.language_code if user else None)
        except Exception as exc:  # a body PTB cannot read: nothing to handle, keep it
            return self.failed(inbox_id, exc, None, None, attempts=MAX_ATTEMPTS)
        w: Work | None = None
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                row = session.get(InboxUpdate, inbox_id) if inbox_id is not None else None
                if row is not None and (row.processed_at is not None or row.dead_at is not None):
                    return "done"
                desk = Desk(session, self.clock.now(), self.zone(session))
                w = Work(
                    desk,
                    user.id if user else None,
                    user.language_code if user else None,
                    chat.id if chat else None,
                )
                w.refresh_actor()
                # read now: after a rollback the actor's rows can no longer be read
                locale = w.locale
                token = begin(w)
                try:
                    await self.app.process_update(update)
                finally:
                    end(token)
                if w.failed is not None:
                    raise w.failed
                if row is not None:
                    row.processed_at = desk.now
                    row.attempts += 1
                    session.add(row)
                session.commit()
        except Exception as exc:
            if is_transient(exc):
                return "busy"
            return self.failed(inbox_id, exc, chat.id if chat else None, locale)
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

    def failed(
        self,
        inbox_id: int | None,
        exc: BaseException,
        chat_id: int | None,
        locale: str | None,
        *,
        attempts: int = 1,
    ) -> str:
        """Count a failed attempt; at MAX_ATTEMPTS the update becomes a dead letter and its
        sender is told once. Nothing behind it waits: the inbox moves on to the next row."""
        self._quiet.error(
            problem_key("update", exc), "update %s failed: %s", inbox_id, exc, exc_info=exc
        )
        error = clean_text(f"{type(exc).__name__}: {exc}")[:2000]
        try:
            tried, dead = self._record_attempt(inbox_id, error, attempts)
        except Exception as bookkeeping:
            if is_transient(bookkeeping):
                return "busy"
            self._quiet.error(
                problem_key("dead-letter", bookkeeping),
                "could not record the failure of update %s: %s",
                inbox_id,
                bookkeeping,
                exc_info=bookkeeping,
            )
            if inbox_id is not None:
                self.unrecordable.add(inbox_id)
            return "dead"
        if not dead:
            return "retry"
        log.error("update %s given up after %d attempts: %s", inbox_id, tried, error)
        if chat_id is not None:
            self._tell_internal_error(chat_id, locale or normalise(None))
        return "dead"

    def _record_attempt(self, inbox_id: int | None, error: str, attempts: int) -> tuple[int, bool]:
        with Session(self.engine) as session:
            row = session.get(InboxUpdate, inbox_id) if inbox_id is not None else None
            tried = attempts if row is None else max(row.attempts + 1, attempts)
            dead = tried >= MAX_ATTEMPTS
            if row is not None:
                row.attempts = tried
                row.error = error
                row.dead_at = self.clock.now() if dead else None
                session.add(row)
                session.commit()
        return tried, dead

    def _tell_internal_error(self, chat_id: int, locale: str) -> None:
        """Said apart from the bookkeeping: a chat the store cannot even hold (an id out of
        range) must not undo the record of the dead letter."""
        try:
            with Session(self.engine) as session:
                enqueue(
                    session,
                    self.clock.now(),
                    chat_id=chat_id,
                    template="error.internal",
                    locale=locale,
                )
                session.commit()
        except Exception as exc:
            log.warning("could not tell chat %s about a failed update: %s", chat_id, exc)
            return
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
        self._quiet = QuietLog(log)
        self.offset: int | None = None
        self.handled = 0
        self.dead = 0

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self._stored.set()

    def wake(self) -> None:
        """Look at the inbox now (a row was stored or released by someone else)."""
        self._stored.set()

    async def _get_updates(self) -> object:
        """getUpdates, answered as JSON: PTB would parse the whole batch at once, and one
        update it cannot parse would fail the call forever, the offset never moving."""
        data: dict[str, Any] = {"timeout": self.long_poll, "allowed_updates": ALLOWED_UPDATES}
        if self.offset is not None:
            data["offset"] = self.offset
        return await self.app.bot._post(  # the raw result: Bot.get_updates would parse it
            "getUpdates", data, read_timeout=self.long_poll + 10
        )

    async def fetch_forever(self) -> None:
        delay = 0.5
        while not self._stopping:
            try:
                result = await self._get_updates()
            except RetryAfter as exc:
                await asyncio.sleep(seconds_of(exc.retry_after))
                continue
            except Conflict as exc:
                self._quiet.error(
                    "getUpdates:conflict",
                    "getUpdates refused (409 Conflict): another process is polling with this "
                    "bot's token, or a webhook is set for it; retrying in %.0fs (%s)",
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            except (TimedOut, NetworkError, TelegramError) as exc:
                self._quiet.warning(
                    problem_key("getUpdates", exc),
                    "getUpdates failed (%s); retrying in %.1fs",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 0.5
            raws = result if isinstance(result, list) else []
            if not isinstance(result, list):
                self._quiet.warning("getUpdates:shape", "getUpdates answered %r", result)
            if not raws:
                continue
            await self._store(raws)
            ids = [uid for uid in map(usable_update_id, raws) if uid is not None]
            if ids:
                self.offset = max(ids) + 1  # confirmed by the next call
            self._stored.set()

    async def _store(self, raws: list[object]) -> None:
        """Keep the batch before confirming it; a busy store is waited out (Telegram keeps
        what is not confirmed), anything else is tried update by update so one body the
        store refuses cannot hold up the rest."""
        while not self._stopping:
            try:
                store_updates(self.engine, raws, self.clock)
                return
            except Exception as exc:
                if not is_transient(exc):
                    self._quiet.error(
                        problem_key("store", exc), "storing updates failed: %s", exc, exc_info=exc
                    )
                    self._store_one_by_one(raws)
                    return
                for raw in raws:
                    await self._tell_busy_about(raw)
                await asyncio.sleep(0.2)

    def _store_one_by_one(self, raws: list[object]) -> None:
        for raw in raws:
            try:
                store_updates(self.engine, [raw], self.clock)
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.error(
                    "update %s cannot be stored and is skipped: %s",
                    usable_update_id(raw),
                    exc,
                )

    def _unprocessed(self) -> list[InboxUpdate]:
        with Session(self.engine, expire_on_commit=False) as session:
            query = (
                select(InboxUpdate)
                .where(col(InboxUpdate.processed_at).is_(None))
                .where(col(InboxUpdate.dead_at).is_(None))
                .order_by(col(InboxUpdate.id))
                .limit(200)
            )
            if self.runner.unrecordable:
                query = query.where(col(InboxUpdate.id).not_in(self.runner.unrecordable))
            return list(session.exec(query).all())

    async def process_forever(self) -> None:
        delay = 0.1
        while not self._stopping:
            self._stored.clear()
            try:
                rows = self._unprocessed()
            except Exception as exc:
                if not is_transient(exc):
                    raise  # the supervisor logs it and starts the loop again
                rows = []
            busy = False
            for row in rows:
                try:
                    outcome = await self.runner.handle(self._body(row), inbox_id=row.id)
                except Exception as exc:  # whatever escapes the runner counts as an attempt
                    outcome = self.runner.failed(row.id, exc, None, None)
                if outcome == "busy":
                    busy = True
                    await self._tell_busy_about(self._body(row))
                    break
                self._told_busy.discard(row.update_id)
                if outcome == "dead":
                    self.dead += 1
                elif outcome == "done":
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

    @staticmethod
    def _body(row: InboxUpdate) -> dict[str, Any]:
        try:
            body = json.loads(row.payload)
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    async def _tell_busy_about(self, raw: object) -> None:
        """The store is busy: say so once, directly (the outbox lives in that store too)."""
        uid = usable_update_id(raw)
        if uid is None or uid in self._told_busy:
            return
        self._told_busy.add(uid)
        try:
            update = Update.de_json(clean_text(raw), self.app.bot)
        except Exception:
            return
        if update.effective_chat is None or update.effective_chat.type != "private":
            return
        lang = update.effective_user.language_code if update.effective_user else None
        try:
            await self.app.bot.send_message(
                update.effective_chat.id, t(normalise(lang), "error.busy")
            )
        except Exception as exc:
            log.warning("could not tell %s the store is busy: %s", update.effective_chat.id, exc)


def seconds_of(retry_after: int | float | timedelta) -> float:
    if isinstance(retry_after, timedelta):
        return retry_after.total_seconds()
    return float(retry_after)


def dead_letters(engine: Engine) -> list[InboxUpdate]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(InboxUpdate)
                .where(col(InboxUpdate.dead_at).is_not(None))
                .order_by(col(InboxUpdate.id))
            ).all()
        )


def retry_dead_letter(engine: Engine, inbox_id: int) -> bool:
    """Give a dead letter another go (after a fix): the running bot picks it up."""
    with Session(engine) as session:
        row = session.get(InboxUpdate, inbox_id)
        if row is None or row.dead_at is None:
            return False
        row.dead_at = None
        row.attempts = 0
        session.add(row)
        session.commit()
        return True


def report_dead_letters(engine: Engine) -> int:
    """Dead letters are said at start, so nobody has to know to look for them."""
    try:
        count = len(dead_letters(engine))
    except Exception as exc:
        log.warning("could not count dead letters: %s", exc)
        return 0
    if count:
        log.warning(
            "%d update(s) could not be handled and are kept as dead letters: "
            "see 'squadbot inbox dead', and 'squadbot inbox retry ID' after a fix",
            count,
        )
    return count
