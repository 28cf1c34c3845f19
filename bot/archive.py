"""Keeping attachments with the ticket: Telegram's file_ids are only good on one bot and its
files may expire, so photos and documents are downloaded with getFile into the data folder
soon after they arrive, and the ticket's record points at the local copy. With several
processes each attachment is fetched by the one that leased it (models/leases.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from telegram import Bot
from telegram.error import BadRequest, NetworkError, TelegramError

from models.clock import Clock, SystemClock
from models.db import is_transient
from models.leases import DEFAULT_SECONDS, Leases, free_for, process_name
from models.quiet_log import QuietLog, problem_key
from models.ticket import Attachment, Ticket

log = logging.getLogger(__name__)

SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def local_name(att: Attachment) -> str:
    stem = att.file_unique_id or str(att.id)
    if att.file_name:
        return f"{stem}-{SAFE.sub('_', att.file_name)[-80:]}"
    return f"{stem}.jpg" if att.kind == "photo" else stem


class Archive:
    def __init__(
        self,
        engine: Engine,
        bot: Bot,
        folder: Path,
        *,
        clock: Clock | None = None,
        owner: str | None = None,
        lease_seconds: float = DEFAULT_SECONDS,
    ) -> None:
        self.engine = engine
        self.bot = bot
        self.folder = folder
        self.leases = Leases(
            engine,
            Attachment,
            lambda t: t.c.local_path.is_(None),
            clock or SystemClock(),
            owner=owner or process_name(),
            seconds=lease_seconds,
        )
        self._wake = asyncio.Event()
        self._stopping = False
        self._quiet = QuietLog(log)
        self._gave_up: set[int] = set()

    def poke(self) -> None:
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _waiting(self) -> list[tuple[Attachment, str]]:
        """Attachments to fetch that this process has leased."""
        table = Attachment.__table__  # type: ignore[attr-defined]
        with Session(self.engine, expire_on_commit=False) as session:
            rows = session.exec(
                select(Attachment, Ticket.number)
                .join(Ticket, col(Ticket.id) == col(Attachment.ticket_id))
                .where(col(Attachment.local_path).is_(None), col(Attachment.file_id).is_not(None))
                .where(free_for(table, self.leases.clock.now(), self.leases.owner))
                .order_by(col(Attachment.id))
                .limit(50)
            ).all()
        found = [(att, number) for att, number in rows if att.id not in self._gave_up]
        won = self.leases.claim(att.id for att, _number in found)
        return [(att, number) for att, number in found if att.id in won]

    async def keep_once(self) -> int:
        try:
            return await self._keep()
        finally:
            self.leases.release()  # what was not fetched now is anyone's again

    async def _keep(self) -> int:
        kept = 0
        for att, number in self._waiting():
            target = self.folder / number / local_name(att)
            try:
                file = await self.bot.get_file(att.file_id or "")
                target.parent.mkdir(parents=True, exist_ok=True)
                await file.download_to_drive(target)
            except BadRequest as exc:
                log.warning("attachment %s of %s cannot be fetched: %s", att.id, number, exc)
                self._gave_up.add(att.id or 0)
                continue
            except (NetworkError, TelegramError, OSError) as exc:
                log.info("attachment %s of %s not fetched yet: %s", att.id, number, exc)
                break
            with Session(self.engine) as session:
                stored = session.get(Attachment, att.id)
                if stored is not None:
                    stored.local_path = str(target)
                    stored.lease_owner = stored.lease_until = None
                    session.add(stored)
                    session.commit()
            self.leases.forget([att.id])
            kept += 1
        return kept

    async def run_forever(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.keep_once()
            except Exception as exc:
                if not is_transient(exc):  # the store away is tried again on the next round
                    self._quiet.error(
                        problem_key("archive", exc),
                        "archiving attachments failed: %s",
                        exc,
                        exc_info=exc,
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=30.0)
            await asyncio.sleep(0.5)  # a busy minute of updates costs a few scans, not one each
