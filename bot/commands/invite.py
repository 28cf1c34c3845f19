"""`squadbot invite`: a single-use, expiring invite."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bot.commands.common import engine_for
from bot.settings import Settings
from migrations.runner import upgrade
from models.clock import SystemClock
from models.db import transaction

SANDBOX_BOT = "squadbot_sandbox_bot"


def _bot_username(settings: Settings) -> str:
    if settings.bot_username:
        return settings.bot_username
    if settings.telegram_token is None:
        return SANDBOX_BOT
    from telegram import Bot

    async def ask() -> str:
        bot = Bot(settings.telegram_token or "", base_url=settings.bot_api_base)
        async with bot:
            return bot.username

    return asyncio.run(ask())


def cmd_invite(settings: Settings, args: argparse.Namespace) -> int:
    from models.invites import create_invite
    from models.zone.config import read_zone

    engine = engine_for(settings)
    upgrade(engine)
    clock = SystemClock()
    try:
        with transaction(engine) as session:
            zone = read_zone(session)
            invite = create_invite(
                session,
                clock.now(),
                role=args.role,
                ttl=zone.invite_ttl,
                squad_code=args.squad,
                project_code=args.project,
                person_key=args.person,
            )
    except ValueError as exc:
        print(f"invite: {exc}", file=sys.stderr)
        return 2
    local = invite.expires_at.astimezone(zone.tz).strftime("%Y-%m-%d %H:%M")
    if args.role == "group":
        print(f"send in the squad's group, as its lead: /bind {invite.code}  (valid until {local})")
    else:
        print(f"https://t.me/{_bot_username(settings)}?start={invite.code}  (valid until {local})")
    print(invite.code)
    return 0


def register(sub: Any) -> None:
    inv = sub.add_parser("invite", help="print a single-use, expiring invite")
    inv.add_argument(
        "--role",
        required=True,
        choices=["enterprise", "member", "lead", "manager", "admin", "group"],
    )
    inv.add_argument("--project")
    inv.add_argument("--squad")
    inv.add_argument("--person", help="bind the invite to this person key from the zone file")
    inv.set_defaults(handler=cmd_invite)
