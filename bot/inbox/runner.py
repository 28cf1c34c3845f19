"""Handling one stored update in one unit of work: the handlers' changes and the inbox row's
"processed" mark commit together; a failure counts an attempt, and at MAX_ATTEMPTS the
update becomes a dead letter so nothing behind it waits. The mark is written only while
this process still holds the update's lease (models/leases.py): if another process took
it over, everything the handling changed is rolled back, so it happens once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, or_
from sqlalchemy import update as sql_update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from telegram import Update
from telegram.ext import Application

from bot.i18n import normalise, t
from bot.inbox.answers import ButtonAnswers
from bot.inbox.handling_thread import HandlingThread
from bot.inbox.storage import (
    MAX_ATTEMPTS,
    chat_of,
    clean_text,
    insert_updates,
    stored_values,
    usable_update_id,
)
from bot.outage import StorageOutage
from bot.outbox.bookkeeping import write_sent
from handlers.work import CallbackAnswer, Work, begin, end
from models.clock import Clock
from models.db import impatient, is_busy, is_transient
from models.desk import Desk, open_desk
from models.leases import one_process_store, process_name
from models.log_context import about
from models.notify import write_buttons
from models.org import Person
from models.outbox import QUEUED, Due, enqueue
from models.plumbing import InboxUpdate
from models.quiet_log import QuietLog, problem_key
from models.throttle import FloodLimits, Guesses, Throttle
from models.ticket import earliest_armed
from models.zone.config import ZoneConfig

log = logging.getLogger(__name__)


_inbox = InboxUpdate.__table__  # type: ignore[attr-defined]
# what the handling reads of its stored update, and how it marks it: built once
_STATE_OF = select(_inbox.c.processed_at, _inbox.c.dead_at, _inbox.c.lease_owner).where(
    _inbox.c.id == bindparam("row")
)
_MARK = (
    sql_update(_inbox)
    .where(
        _inbox.c.id == bindparam("row"),
        _inbox.c.processed_at.is_(None),
        or_(_inbox.c.lease_owner.is_(None), _inbox.c.lease_owner == bindparam("owner")),
    )
    .values(
        processed_at=bindparam("now", type_=_inbox.c.processed_at.type),
        attempts=_inbox.c.attempts + 1,
        lease_owner=None,
        lease_until=None,
    )
)


class Unit(NamedTuple):
    """How a unit of work ended: its outcome and, when it committed ('done'), the Work, the
    earliest alert time it wrote and the outbox rows it queued."""

    outcome: str
    work: Work | None = None
    armed: datetime | None = None
    queued: tuple[Due, ...] = ()


class AtOnce(NamedTuple):
    """How `handle_at_once` ended: 'done', 'not' (nothing kept, nothing to count) or
    'failed' (nothing kept; the error is the update's first attempt, with where to tell)."""

    outcome: str
    error: BaseException | None = None
    chat_id: int | None = None
    locale: str | None = None


class TakenOver(Exception):
    """Another process holds this update now: this handling must leave no trace."""


@dataclass(frozen=True)
class Limited:
    """An update over its sender's limit: marked processed unhandled, never parsed by PTB."""

    inbox_id: int | None
    user_id: int
    language: str | None
    private: bool
    query_id: str | None  # a button press: answered with a toast, so no spinner is left
    tell: bool  # the first over the limit in a while: the sender is told, privately


# (user id, language, from a private chat, callback query id)
Sender = tuple[int, str | None, bool, str | None]


def sender_of(payload: dict[str, Any]) -> Sender | None:
    """(user id, language, from a private chat, callback query id) read from the raw body,
    without building an Update; None when no user sent it."""
    for kind in ("message", "edited_message", "callback_query", "my_chat_member"):
        part = payload.get(kind)
        if not isinstance(part, dict):
            continue
        sender = part.get("from")
        if not isinstance(sender, dict) or type(sender.get("id")) is not int:
            return None
        message = part.get("message") if kind == "callback_query" else part
        chat = message.get("chat") if isinstance(message, dict) else None
        private = isinstance(chat, dict) and chat.get("type") == "private"
        query = part.get("id") if kind == "callback_query" else None
        language = sender.get("language_code")
        return (
            sender["id"],
            language if isinstance(language, str) else None,
            private,
            query if isinstance(query, str) else None,
        )
    return None


class UpdateRunner:
    """Handles one stored update in one unit of work."""

    def __init__(
        self,
        app: Application,  # type: ignore[type-arg]
        engine: Engine,
        clock: Clock,
        zone: Callable[[Session], ZoneConfig],
        after_commit: Callable[[], None] = lambda: None,
        limits: FloodLimits | None = None,
        outage: StorageOutage | None = None,
        *,
        owner: str | None = None,
        armed: Callable[[datetime], None] = lambda _when: None,
    ) -> None:
        self.app = app
        # told the earliest alert time a handling committed (the deadline timer's `armed`)
        self.armed = armed
        # handed the outbox rows a handling queued, once committed (the dispatcher's `hand`)
        self.queued: Callable[[tuple[Due, ...]], None] = lambda _rows: None
        # sent messages not written down yet, which a unit of work on the loop writes in its
        # transaction, and how that went (the dispatcher's `take_unrecorded`, `recorded`)
        self.unrecorded: Callable[[], list[tuple[Due, int | None]]] = list
        self.recorded: Callable[[list[tuple[Due, int | None]], bool], None] = lambda _r, _w: None
        # the process, as the inbox's leases name it: an update leased by another is not ours
        self.owner = owner or process_name()
        self.engine = engine
        self.clock = clock
        self.zone = zone
        self.after_commit = after_commit
        # presses answered beside the queue, each tried again until Telegram takes it
        self.answers = ButtonAnswers(app.bot)
        self.outage = outage or StorageOutage()
        # the language each person was last answered in: what they are told while the
        # database, which knows their choice, cannot be read
        self._spoken: dict[int, str] = {}
        self._quiet = QuietLog(log)
        # updates whose failure could not even be written down: skipped until restart
        self.unrecordable: set[int] = set()
        # per process, in memory (models/throttle.py): updates per user, wrong invite codes
        self.use_limits(limits or FloodLimits())
        # updates let through whose handling is to be tried again: not counted twice
        self.admitted: set[int] = set()
        # where a unit of work runs when it must wait for the store (`_run_unit_of_work`)
        self.handling = HandlingThread()
        self.inline = one_process_store(engine)
        self.hurried_busy = 0  # units of work moved to the thread: the store was locked

    def use_limits(self, limits: FloodLimits) -> None:
        """These limits from now on, everyone's allowance full again."""
        self.limits = limits
        self.throttle = Throttle(limits)
        self.guesses = Guesses(limits)

    def over_limit(self, payload: dict[str, Any], inbox_id: int | None) -> Limited | None:
        """Takes a token from the sender's bucket; the update is Limited when none is left."""
        if inbox_id is not None and inbox_id in self.admitted:
            return None
        return self.admit(sender_of(payload), inbox_id)

    def admit(self, sender: Sender | None, inbox_id: int | None) -> Limited | None:
        """`over_limit` for a sender already read from the body."""
        if sender is None:
            return None
        user_id, language, private, query_id = sender
        now = self.clock.now()
        if self.throttle.admit(user_id, now):
            if inbox_id is not None:
                self.admitted.add(inbox_id)
            return None
        tell = self.throttle.tell(user_id, now)
        return Limited(inbox_id, user_id, language, private, query_id, tell)

    def within_limit(self, sender: Sender | None) -> bool:
        """Whether `admit` would let this sender's update through now (no token is taken)."""
        return sender is None or self.throttle.has_token(sender[0], self.clock.now())

    def skip(self, limited: list[Limited]) -> str:
        """Marks limited updates processed in one UPDATE, queues the notices due (in the
        sender's private chat only: never in a group, and to someone in a group only when
        the bot knows them, so it may write to them), and answers their button presses with
        a toast. 'done', or 'busy' when the store cannot take it now."""
        if not limited:
            return "done"
        now = self.clock.now()
        ids = [item.inbox_id for item in limited if item.inbox_id is not None]
        users = {item.user_id for item in limited if item.tell or item.query_id}
        told = False
        try:
            with Session(self.engine) as session:
                if ids:
                    session.execute(
                        sql_update(InboxUpdate)
                        .where(col(InboxUpdate.id).in_(ids))
                        .where(col(InboxUpdate.processed_at).is_(None), self._ours())
                        .values(
                            processed_at=now,
                            attempts=col(InboxUpdate.attempts) + 1,
                            lease_owner=None,
                            lease_until=None,
                        )
                        .execution_options(synchronize_session=False)
                    )
                known: dict[int, str | None] = {}
                if users:
                    rows = session.exec(
                        select(Person.telegram_user_id, Person.language).where(
                            col(Person.telegram_user_id).in_(users)
                        )
                    ).all()
                    known = {uid: language for uid, language in rows if uid is not None}
                locales = {
                    item.user_id: known.get(item.user_id) or normalise(item.language)
                    for item in limited
                }
                for item in limited:
                    if item.tell and (item.private or item.user_id in known):
                        enqueue(
                            session,
                            now,
                            chat_id=item.user_id,
                            template="flood.notice",
                            locale=locales[item.user_id],
                        )
                        told = True
                session.commit()
        except Exception as exc:
            if is_transient(exc):
                self.outage.refused(exc)
                return "busy"
            raise
        self.outage.recovered()
        if told:
            self.after_commit()
        self.answers.send(
            CallbackAnswer(item.query_id, t(locales[item.user_id], "flood.toast"))
            for item in limited
            if item.query_id is not None
        )
        return "done"

    def _ours(self) -> Any:
        """Inbox rows this process may mark: leased by it, or by nobody."""
        return or_(
            col(InboxUpdate.lease_owner).is_(None), col(InboxUpdate.lease_owner) == self.owner
        )

    async def handle(
        self, payload: dict[str, Any], *, inbox_id: int | None = None, fresh: bool = False
    ) -> str:
        """'done'; 'busy' (the store cannot take it now: retry later, nothing changed);
        'retry' (it failed, and will be tried again) or 'dead' (given up on, user told);
        'taken' (another process holds it now: nothing changed here)."""
        chat = chat_of(payload)
        with about(update_id=usable_update_id(payload), chat=chat):
            return await self._handle(payload, inbox_id, fresh)

    async def _handle(self, payload: dict[str, Any], inbox_id: int | None, fresh: bool) -> str:
        try:
            update = Update.de_json(clean_text(payload), self.app.bot)
            user = update.effective_user
            chat = update.effective_chat
            locale = normalise(user.language_code if user else None)
        except Exception as exc:  # a body PTB cannot read: nothing to handle, keep it
            return self.failed(inbox_id, exc, None, None, attempts=MAX_ATTEMPTS)
        seen = {"locale": locale}
        w: Work | None = None
        armed: datetime | None = None
        try:
            outcome, w, armed, queued = await self._run_unit_of_work(update, inbox_id, seen, fresh)
            locale = seen["locale"]
            if outcome == "done-before":
                return "done"
            if outcome == "taken":
                return "taken"
        except TakenOver:
            return "taken"
        except Exception as exc:
            locale = seen["locale"]
            if is_transient(exc):
                self.outage.refused(exc)
                return "busy"
            outcome = self.failed(inbox_id, exc, chat.id if chat else None, locale)
            if outcome == "dead" and update.callback_query is not None:
                # given up on: the press is answered too, so no spinner is left turning
                text = t(locale, "error.internal")
                self.answers.send([CallbackAnswer(update.callback_query.id, text, alert=True)])
            return outcome
        self._committed(w, armed, queued, locale)
        return "done"

    def _committed(
        self, w: Work | None, armed: datetime | None, queued: tuple[Due, ...], locale: str
    ) -> None:
        """After a handling committed: the outbox is handed the rows it queued and told,
        the deadline timer hears of a nearer alert, the presses are answered."""
        self.outage.recovered()
        if queued:
            self.queued(queued)
        self.after_commit()
        if armed is not None:
            self.armed(armed)
        if w is not None:
            self.answers.send(w.answers)
            if w.user_id is not None:
                self._remember(w.user_id, locale)

    async def handle_at_once(self, raw: dict[str, Any]) -> AtOnce:
        """Stored and handled in one transaction, as it comes from getUpdates: the inbox
        row is inserted, the handlers run, the row is marked processed, and one commit keeps
        it all (one commit an update instead of two, when updates come one at a time).
        Only on SQLite with one process, and only on the bot's loop (never waiting for a
        write lock). When it is not 'done', nothing of it was kept (a redelivery already
        stored, a body PTB cannot read, a store that is busy: 'not'; a handling that failed:
        'failed', with the error, which the caller counts as the update's first attempt
        once it has stored it): the inbox then handles it from the store, as any other."""
        if not self.inline:
            return AtOnce("not")
        with about(update_id=usable_update_id(raw), chat=chat_of(raw)):
            try:
                update = Update.de_json(clean_text(raw), self.app.bot)
                user = update.effective_user
                seen = {"locale": normalise(user.language_code if user else None)}
            except Exception:  # the processing loop makes it a dead letter
                return AtOnce("not")
            try:
                outcome, w, armed, queued = await self._unit_of_work(
                    update, None, seen, True, hurry=True, store=raw
                )
            except Exception as exc:  # rolled back, the row too
                if is_transient(exc):
                    return AtOnce("not")
                chat = update.effective_chat
                return AtOnce("failed", exc, chat.id if chat else None, seen["locale"])
            if outcome != "done":
                return AtOnce("not")
            self._committed(w, armed, queued, seen["locale"])
            return AtOnce("done")

    async def _run_unit_of_work(
        self, update: Update, inbox_id: int | None, seen: dict[str, str], fresh: bool
    ) -> Unit:
        """On SQLite the unit of work is first tried here, on the bot's loop, waiting for
        no write lock (`hurry`): it takes a few milliseconds, and a second thread taking
        turns with this one for Python's lock at every statement cost more than the work.
        When another connection holds the write lock (another program's backup, a report,
        the deadline timer firing in a worker thread), nothing of that try is kept and the
        unit of work runs in the handlers' thread instead (bot/inbox/handling_thread.py),
        waiting there for the lock while this loop goes on. PostgreSQL, whose row locks
        are waited for, always uses the thread."""
        if self.inline:
            try:
                return await self._unit_of_work(update, inbox_id, seen, fresh, hurry=True)
            except Exception as exc:
                if not is_busy(exc):
                    raise
                self.hurried_busy += 1
        return await self.handling.run(self._unit_of_work(update, inbox_id, seen, fresh))

    async def _unit_of_work(
        self,
        update: Update,
        inbox_id: int | None,
        seen: dict[str, str],
        fresh: bool,
        *,
        hurry: bool = False,
        store: dict[str, Any] | None = None,
    ) -> Unit:
        """`_unit`; on the loop (`hurry`), it also writes down the messages the dispatcher
        has sent and not recorded yet (`unrecorded`), in the same transaction: one commit
        for both. The dispatcher is told whether they were (`recorded`)."""
        carried = self.unrecorded() if hurry else []
        try:
            unit = await self._unit(
                update, inbox_id, seen, fresh, hurry=hurry, store=store, carried=carried
            )
        except BaseException:
            if carried:
                self.recorded(carried, False)
            raise
        if carried:
            self.recorded(carried, True)
        return unit

    async def _unit(
        self,
        update: Update,
        inbox_id: int | None,
        seen: dict[str, str],
        fresh: bool,
        *,
        hurry: bool,
        store: dict[str, Any] | None,
        carried: list[tuple[Due, int | None]],
    ) -> Unit:
        """The handlers' changes and the inbox row's mark, in one transaction. `seen` gets
        the sender's locale as soon as it is known, for telling them about a failure.
        `fresh`: the row was stored by this process a moment ago and handed over unread, so
        it is known to be waiting and free; it is not read first (the mark still checks).
        `hurry`: every write fails at once as busy if it would wait for a write lock, the
        last of them (the flush of what the handlers left) before the commit. `store`: the
        update as it came, inserted first in the same transaction (`handle_at_once`);
        'stored-before' when it is a redelivery of one stored already."""
        user, chat = update.effective_user, update.effective_chat
        with open_desk(self.engine, self.clock, self.zone) as desk, self._hurried(desk, hurry):
            session = desk.session
            if carried:  # first: a reply to one of them finds its ticket (its link)
                write_sent(session.connection(), carried, desk.now)
            if store is not None:
                new = insert_updates(session.connection(), stored_values(store, desk.now))
                if not new:
                    return Unit("stored-before")
                inbox_id = int(new[0].id)
            row = (
                session.connection().execute(_STATE_OF, {"row": inbox_id}).first()
                if inbox_id is not None and not fresh
                else None
            )
            if row is not None and (row.processed_at is not None or row.dead_at is not None):
                return Unit("done-before")
            if row is not None and row.lease_owner not in (None, self.owner):
                return Unit("taken")
            w = Work(
                desk,
                user.id if user else None,
                user.language_code if user else None,
                chat.id if chat else None,
                guesses=self.guesses,
            )
            w.refresh_actor()
            # read now: after a rollback the actor's rows can no longer be read
            seen["locale"] = w.locale
            token = begin(w)
            try:
                await self.app.process_update(update)
            finally:
                end(token)
            if w.failed is not None:
                raise w.failed
            if inbox_id is not None and (row is not None or fresh):
                self._mark_processed(session, inbox_id, desk.now)
        # committed: the earliest alert time it wrote, noted when flushed (models/ticket.py)
        return Unit("done", w, earliest_armed(session.info), tuple(session.info.get(QUEUED, ())))

    @contextmanager
    def _hurried(self, desk: Desk, hurry: bool) -> Iterator[None]:
        if not hurry:
            yield
            return
        with impatient(desk.session, 0):
            yield
            # the last writes: what the handlers left to the flush (their own statements
            # already wrote, or failed as busy, as they ran)
            write_buttons(desk.session)
            desk.session.flush()

    def _mark_processed(self, session: Session, inbox_id: int, now: Any) -> None:
        """Processed, in the handling's transaction, only if still ours and not yet done
        (a plain UPDATE on the session's connection: the ORM's bulk path costs more)."""
        marked = session.connection().execute(
            _MARK, {"row": inbox_id, "owner": self.owner, "now": now}
        )
        if marked.rowcount != 1:
            raise TakenOver(inbox_id)

    def _remember(self, user_id: int, locale: str) -> None:
        if len(self._spoken) > 10_000:
            self._spoken.clear()
        self._spoken[user_id] = locale

    def language_of(self, user_id: int, client_language: str | None) -> str:
        """The language a person was last answered in, else what their client says."""
        return self._spoken.get(user_id) or normalise(client_language)

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
                self.outage.refused(bookkeeping)
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
                if dead:  # nobody works on a dead letter: `inbox retry` finds it free
                    row.lease_owner = row.lease_until = None
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
