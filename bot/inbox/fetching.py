"""The fetch and process loops. getUpdates is read as plain JSON and every update is stored
before the next call confirms it, unlike PTB's stock Updater, which confirms as soon as
updates are in memory; then each stored update is handled on its own.

With several processes on one database, one of them polls (bot/inbox/poller.py) and every
one of them handles stored updates: each takes the waiting updates of some chats under a
lease (models/leases.py), so an update is handled by one process, and a chat's updates in
the order they came."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session
from telegram import Update
from telegram.error import Conflict, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import Application

from bot.i18n import t
from bot.inbox.poller import PollerLock
from bot.inbox.runner import AtOnce, Limited, UpdateRunner, sender_of
from bot.inbox.storage import (
    Waiting,
    clean_text,
    inbox_leases,
    next_waiting,
    store_new,
    store_updates,
    take_in_order,
    usable_update_id,
)
from bot.outage import StorageOutage
from handlers.work import CallbackAnswer
from models.clock import Clock
from models.db import is_busy, is_transient
from models.leases import DEFAULT_SECONDS, one_process_store
from models.quiet_log import QuietLog, problem_key

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]
# While the store refuses a batch, getUpdates is asked again (confirming nothing) after
# this long, doubling up to the longest.
STORE_RETRY = 0.2
# how soon the getUpdates lock is asked for again after it went with its connection
LOCK_RETRY_SOON = 0.5
STORE_RETRY_LONGEST = 2.0
# the most waiting updates one pass reads from the store
READ_AT_ONCE = 200


class StoreBusy(Exception):
    """Updates wait, but the store cannot take them now (locked, restarting)."""

    def __init__(self, rows: list[Waiting]) -> None:
        super().__init__(f"{len(rows)} update(s) wait for a busy store")
        self.rows = rows


class Inbox:
    def __init__(
        self,
        app: Application,  # type: ignore[type-arg]
        engine: Engine,
        runner: UpdateRunner,
        clock: Clock,
        *,
        long_poll: int = 30,
        lease_seconds: float = DEFAULT_SECONDS,
    ) -> None:
        self.app = app
        self.engine = engine
        self.runner = runner
        self.clock = clock
        self.long_poll = long_poll
        solo = self.inline = one_process_store(engine)
        self.leases = inbox_leases(engine, clock, runner.owner, lease_seconds, solo=solo)
        self.poller = PollerLock(engine, lease_seconds=lease_seconds)
        # True while this process is the one polling getUpdates, and since when (monotonic)
        self.polling = False
        self.polling_since: float | None = None
        self._lock_checked = 0.0
        self._said_waiting = False
        self._stored = asyncio.Event()
        # On SQLite, the updates this process's fetch just stored go to the processing loop
        # in memory, not read back: `_handed`, while `_unread` is False, i.e. while
        # everything else stored has been read and finished (the last read left nothing
        # waiting); then a pass with nothing handed over reads nothing either. Anything
        # else (a retry, a busy store, rows stored by someone else, the start, a second
        # without news) sets `_unread`, and the next pass reads the store.
        self._handed: list[Waiting] = []
        self._fresh = False  # the rows being handled were handed over, not read
        self._unread = True
        self._halt = asyncio.Event()
        self._stopping = False
        # whether the database takes writes: shared with the runner (and the outbox)
        self.outage: StorageOutage = runner.outage
        self._told_busy: set[int] = set()  # updates whose sender was told, or press answered
        self._quiet = QuietLog(log)
        self.offset: int | None = None
        self.handled = 0
        self.dead = 0
        self.stores_waited = 0  # batches tried on the loop that met a write lock held elsewhere
        self.handed_over = 0  # updates that reached the processing loop in memory
        self.handled_at_once = 0  # updates stored and handled in one transaction
        self.at_once = True  # whether updates may be (`_handle_at_once`); else all are stored
        self._idle = False  # the processing loop waits for news (no pass under way)
        self.store_reads = 0  # reads of the waiting updates from the store
        # for the health check and the metrics: when getUpdates last answered (monotonic),
        # and what each update's handling took
        self.last_success: float | None = None
        self.on_handled: Callable[[str, float], None] = lambda _outcome, _seconds: None

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self._stored.set()
        self._halt.set()

    def wake(self) -> None:
        """Look at the inbox now (a row was stored or released by someone else)."""
        self._unread = True
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

    async def _lead(self) -> bool:
        """True when this process is the one to poll getUpdates now; otherwise waits (a
        third of the lease time, at most five seconds) and answers False."""
        lock = self.poller
        if lock.held and time.monotonic() - self._lock_checked < 1.0:
            return True
        had = lock.held
        try:
            ours = await asyncio.to_thread(lock.check if lock.held else lock.take)
            if had and not ours:  # its connection is lost: taken again at once, if it can be
                ours = await asyncio.to_thread(lock.take)
        except Exception as exc:
            if not is_transient(exc):
                self._quiet.error(
                    problem_key("poller-lock", exc), "taking the getUpdates lock failed: %s", exc
                )
            elif self.polling:
                # the database is away, so no other process can take the lock either: this
                # one goes on polling, telling people the store is away and confirming
                # nothing, and takes the lock again (or stops, if another took it) as soon
                # as the database answers
                return True
            ours, had = False, True
        # the lock lost with its connection, or the database away: tried again soon, so
        # polling (and telling people the store is away) resumes as soon as it can
        retry = LOCK_RETRY_SOON if had and not ours else lock.retry_seconds
        self._lock_checked = time.monotonic()
        if ours and not self.polling:
            self.polling, self.polling_since = True, time.monotonic()
            self.offset, self.last_success = None, None
            if lock.shared:
                log.info("this process polls getUpdates")
        elif not ours:
            if self.polling:
                log.warning("stopped polling getUpdates: its lock is lost; trying to take it again")
            elif not self._said_waiting:
                self._said_waiting = True
                log.info(
                    "another process polls getUpdates; this one handles stored updates and "
                    "takes over polling when that one stops"
                )
            self.polling = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._halt.wait(), timeout=min(retry, lock.retry_seconds))
        return ours

    async def fetch_forever(self) -> None:
        try:
            await self._fetch()
        finally:
            self.polling = False
            self.poller.release()

    async def _fetch(self) -> None:
        delay = 0.5
        refused = STORE_RETRY  # the wait before asking again while the store refuses
        while not self._stopping:
            if not await self._lead():
                continue
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
            self.last_success = time.monotonic()
            raws = result if isinstance(result, list) else []
            if not isinstance(result, list):
                self._quiet.warning("getUpdates:shape", "getUpdates answered %r", result)
            if not raws:
                continue
            reads = self.store_reads
            # handled as they come while nothing else waits; the rest (from the first that
            # was not) stored as usual, for the processing loop
            done, failure = await self._handle_at_once(raws)
            batch, raws = raws, raws[done:]
            stored = await self._store(raws) if raws else []
            if stored is None:
                # nothing is confirmed: the next call brings these back, with whatever came
                # since, whose senders are told (and presses answered) meanwhile
                await asyncio.sleep(refused)
                refused = min(refused * 2, STORE_RETRY_LONGEST)
                continue
            refused = STORE_RETRY
            if failure is not None:
                self._count_first_try(raws[0], stored, failure)
            ids = [uid for uid in map(usable_update_id, batch) if uid is not None]
            if ids:
                self.offset = max(ids) + 1  # confirmed by the next call
            if not raws:
                continue  # all handled at once: nothing waits in the store
            if self._unread:
                pass  # the next pass reads the store, these included
            elif stored and self.inline and self.store_reads == reads:
                self._handed.extend(stored)
            else:  # stored one by one, only redeliveries, or the store was read while
                self._unread = True  # these were written (it may have seen them): read
            self._stored.set()

    async def _handle_at_once(self, raws: list[object]) -> tuple[int, AtOnce | None]:
        """How many of the batch, from its start, were stored and handled in one
        transaction each (`UpdateRunner.handle_at_once`), and how the next one failed if
        it did: only on SQLite with one process, while the processing loop is idle and
        nothing waits in the store (so no chat's update goes before an earlier one), and
        while the store takes writes. An update over its sender's limit, or one not handled
        at once, ends it: that one and the rest go to the store."""
        done = 0
        for raw in raws:
            free = self.inline and self.at_once and self._idle
            if not free or self._unread or self._handed:
                break
            if self.outage.down or not isinstance(raw, dict):
                break
            sender = sender_of(raw)
            if not self.runner.within_limit(sender):
                break
            started = time.perf_counter()
            tried = await self.runner.handle_at_once(raw)
            if tried.outcome != "done":
                return done, tried if tried.outcome == "failed" else None
            self.runner.admit(sender, None)  # its token, as the processing loop takes it
            self.on_handled("done", time.perf_counter() - started)
            self.handled += 1
            self.handled_at_once += 1
            done += 1
            await _give_a_turn()
        return done, None

    def _count_first_try(self, raw: object, stored: list[Waiting], failure: AtOnce) -> None:
        """The failed try at once, counted as the stored update's first attempt (logged,
        recorded), so a handler that always fails runs MAX_ATTEMPTS times in all."""
        uid = usable_update_id(raw)
        row = next((row for row in stored if row.update_id == uid), None)
        if row is None or failure.error is None:
            return
        outcome = self.runner.failed(row.id, failure.error, failure.chat_id, failure.locale)
        if outcome == "dead":
            self.dead += 1
        self._unread = True  # it waits in the store for its next try

    async def _store(self, raws: list[object]) -> list[Waiting] | None:
        """Keep the batch before confirming it; returns the rows that were new. None when
        the store is busy or away: the batch stays with Telegram, which keeps what is not
        confirmed, and its senders are told. Any other refusal is tried update by update,
        so that one body the store refuses cannot hold up the rest (and returns [])."""
        stored: list[Waiting] = []
        try:
            try:
                stored = await self._store_batch(raws)
            except Exception as exc:
                if is_transient(exc):
                    raise
                self._quiet.error(
                    problem_key("store", exc), "storing updates failed: %s", exc, exc_info=exc
                )
                await asyncio.to_thread(self._store_one_by_one, raws)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.outage.refused(exc)
            for raw in raws:
                await self._tell_busy_about(raw)
            return None
        self.outage.recovered()
        return stored

    async def _store_batch(self, raws: list[object]) -> list[Waiting]:
        """On SQLite (one process per database) first on the loop, waiting for no write
        lock: a thread's turn costs more than the insert. While a write lock is held
        elsewhere (another program's backup, a report), and on PostgreSQL always, in a
        worker thread, so that the wait does not stop the event loop, and with it the
        outbox and the answers."""
        if self.inline:
            try:
                return store_new(self.engine, raws, self.clock, hurry=True)
            except Exception as exc:
                if not is_busy(exc):
                    raise
                self.stores_waited += 1
        return await asyncio.to_thread(store_new, self.engine, raws, self.clock)

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

    def _unprocessed(self) -> list[Waiting]:
        """The waiting updates of some chats, leased to this process (bot/inbox/storage.py):
        those handed over by the fetch when nothing else waits, else read from the store;
        StoreBusy, with what is waiting, when they can be read but not taken."""
        rows, self._handed = self._handed, []
        self._fresh = False
        if not self._unread and not rows:
            return []  # nothing handed over, and nothing else waits
        if self._unread:
            limit = READ_AT_ONCE
            with Session(self.engine, expire_on_commit=False) as session:
                rows = next_waiting(
                    session, self.leases, skip=sorted(self.runner.unrecordable), limit=limit
                )
            self.store_reads += 1
            self._unread = len(rows) >= limit  # more than one read's worth waits
        else:
            self.handed_over += len(rows)
            self._fresh = True
        try:
            kept = take_in_order(rows, self.leases)
        except Exception as exc:
            if is_transient(exc) and rows:
                raise StoreBusy(rows) from exc
            raise
        if len(kept) < len(rows):
            self._unread = True  # some are another process's now, or wait behind them
        return kept

    async def process_forever(self) -> None:
        delay = 0.1
        self._unread = True  # (again, after a restart): what waits is read first
        while not self._stopping:
            self._stored.clear()
            try:
                rows = self._unprocessed()
            except StoreBusy as waiting:
                self._unread = True
                self.outage.refused(waiting.__cause__ or waiting)
                rows, busy = [], True
                heads = {row.chat_id: row for row in reversed(waiting.rows)}  # each chat's first
                for row in heads.values():
                    await self._tell_busy_about(self._body(row))
            except Exception as exc:
                self._unread = True
                if not is_transient(exc):
                    raise  # the supervisor logs it and starts the loop again
                self.outage.refused(exc)
                rows, busy = [], False
            else:
                try:
                    busy = await self._process(rows)
                except BaseException:
                    self._unread = True
                    raise
                finally:
                    self._let_go()
                if busy:
                    self._unread = True  # the rest of the pass waits in the store
            if busy:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            if rows:
                continue
            self._idle = True
            try:
                async with asyncio.timeout(1.0):
                    await self._stored.wait()
            except TimeoutError:
                self._unread = True  # a look at the store now and then, whatever happened
            finally:
                self._idle = False

    def _let_go(self) -> None:
        """Leases of updates this pass did not finish go back at once (a retry, a busy
        store); if even that fails they stay this process's, renewed, until the next pass."""
        try:
            self.leases.release()
        except Exception as exc:
            if not is_transient(exc):
                self._quiet.error(
                    problem_key("inbox-leases", exc), "releasing inbox leases failed: %s", exc
                )

    async def _process(self, rows: list[Waiting]) -> bool:
        """Handle these rows in order; True when the store was busy and the pass stopped.
        Rows finished here (handled, given up on, skipped, taken over) leave the leases."""
        limited: list[Limited] = []
        for row in rows:
            body = self._body(row)
            over = self.runner.over_limit(body, row.id)
            if over is not None:  # a flood: skipped together, in one UPDATE
                limited.append(over)
                continue
            if limited and not self._skip(limited):
                return True
            limited = []
            started = time.perf_counter()
            try:
                outcome = await self.runner.handle(body, inbox_id=row.id, fresh=self._fresh)
            except Exception as exc:  # whatever escapes the runner counts as an attempt
                outcome = self.runner.failed(row.id, exc, None, None)
            self.on_handled(str(outcome), time.perf_counter() - started)
            await _give_a_turn()
            if outcome == "busy":
                await self._tell_busy_about(body)
                return True
            if outcome == "retry":
                self._unread = True  # it waits in the store for its next try
            else:
                self.leases.forget([row.id])
                if row.id is not None:
                    self.runner.admitted.discard(row.id)
            self._told_busy.discard(row.update_id)
            if outcome == "dead":
                self.dead += 1
            elif outcome == "done":
                self.handled += 1
        return bool(limited) and not self._skip(limited)

    def _skip(self, limited: list[Limited]) -> bool:
        """Limited updates marked processed unhandled; False when the store is busy."""
        started = time.perf_counter()
        outcome = self.runner.skip(limited)
        if outcome == "busy":
            return False
        self.leases.forget(item.inbox_id for item in limited)
        seconds = (time.perf_counter() - started) / len(limited)
        for _ in limited:
            self.on_handled("limited", seconds)
        return True

    @staticmethod
    def _body(row: Waiting) -> dict[str, Any]:
        if row.body is not None:  # handed over as it came
            return row.body
        try:
            body = json.loads(row.payload)
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    async def _tell_busy_about(self, raw: object) -> None:
        """The store is busy or away: said directly (the outbox lives in that store too),
        once per person in a private chat, and as the answer to a press, so no spinner is
        left turning; in a group, nothing."""
        uid = usable_update_id(raw)
        if uid is None or uid in self._told_busy:
            return
        self._told_busy.add(uid)
        try:
            update = Update.de_json(clean_text(raw), self.app.bot)
        except Exception:
            return
        user, chat = update.effective_user, update.effective_chat
        language = self.runner.language_of(user.id, user.language_code) if user else "zh-CN"
        text = t(language, self.outage.message_key)
        if update.callback_query is not None:
            self.runner.answers.send([CallbackAnswer(update.callback_query.id, text, alert=True)])
            return
        if chat is None or chat.type != "private" or not self.outage.first_word_to(chat.id):
            return
        try:
            await self.app.bot.send_message(chat.id, text)
        except Exception as exc:
            log.warning("could not tell %s the store is away: %s", chat.id, exc)


async def _give_a_turn() -> None:
    """After each update handled, by the fetch at once or by the processing loop: a turn
    for everything else on the loop (the outbox's pass, getUpdates, the Bot API's answers,
    button presses). A handling that never had to wait gives none, and updates handled one
    after another held every answer among them until the last was done (a few updates in
    a hundred waited 50-250 ms at 50 updates/s, in batches gathered behind a slow one)."""
    await asyncio.sleep(0)


def seconds_of(retry_after: int | float | timedelta) -> float:
    if isinstance(retry_after, timedelta):
        return retry_after.total_seconds()
    return float(retry_after)
