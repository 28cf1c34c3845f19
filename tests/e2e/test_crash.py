"""A real crash: the bot runs as its own process against the emulator and is killed with
SIGKILL while updates are arriving. After a restart every update is handled, and none twice
(a second handling of an invite would answer "already used")."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlmodel import Session, col, func, select

from bot.sandbox import BotApiEmulator
from models.invites import create_invite
from models.plumbing import InboxUpdate
from tests.harness import ROOT, zone_database

USERS = 40


async def start_bot(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def test_sigkill_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    db_path = tmp_path / "squadbot.db"
    async with BotApiEmulator() as emu:
        from datetime import UTC, datetime, timedelta

        codes = {}
        with Session(engine) as session:
            for n in range(USERS):
                invite = create_invite(
                    session,
                    datetime.now(UTC),
                    role="enterprise",  # walk-ins: invites that name nobody
                    ttl=timedelta(days=1),
                )
                codes[7000 + n] = invite.code
            session.commit()
        env = {
            **os.environ,
            "SQUADBOT_TELEGRAM_TOKEN": emu.token,
            "SQUADBOT_TELEGRAM_API_URL": emu.url,
            "SQUADBOT_DATABASE_URL": f"sqlite:///{db_path}",
            "SQUADBOT_LONG_POLL_SECONDS": "1",
            "SQUADBOT_BOT_USERNAME": "squadbot_test_bot",
            "SQUADBOT_DATA_DIR": str(tmp_path / "data"),
        }
        env.pop("SQUADBOT_ZONE_FILE", None)
        for user_id in codes:
            emu.add_user(user_id, f"企业{user_id}")

        def welcomed() -> int:
            return sum(
                any("企业联系人" in (m.get("text") or "") for m in emu.sent(uid)) for uid in codes
            )

        bot = await start_bot(env)
        try:
            for user_id, code in codes.items():
                emu.send_text(user_id, f"/start {code}")
            await emu.wait_for(lambda: welcomed() >= 5, timeout=60)
        finally:
            bot.kill()
            await bot.wait()
        killed_at = welcomed()

        bot = await start_bot(env)
        try:
            await emu.wait_for(lambda: welcomed() == USERS, timeout=60)
        finally:
            bot.terminate()
            await bot.wait()

    assert killed_at < USERS, "the kill came too late to test anything"
    for user_id in codes:
        texts = [m.get("text") or "" for m in emu.sent(user_id)]
        assert not any("已被使用" in t for t in texts), (user_id, texts)
    with Session(engine) as session:
        stored = session.exec(select(func.count()).select_from(InboxUpdate)).one()
        unprocessed = session.exec(
            select(func.count())
            .select_from(InboxUpdate)
            .where(col(InboxUpdate.processed_at).is_(None))
        ).one()
    assert stored == USERS and unprocessed == 0
