"""`squadbot invite`: a single-use, expiring invite."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from bot.commands.common import open_database
from bot.commands.help import command_parser
from bot.settings import Settings
from bot.startup import Failure, check_bot_api, proxy_for
from models.clock import SystemClock
from models.db import transaction

SANDBOX_BOT = "squadbot_sandbox_bot"

log = logging.getLogger("squadbot")


def bot_username(settings: Settings) -> str:
    """For invite links: SQUADBOT_BOT_USERNAME, else asked from the Bot API (every failure
    to ask is one line naming the setting), else the sandbox's bot when there is no token."""
    if settings.bot_username:
        return settings.bot_username.removeprefix("@")
    if settings.telegram_token is None:
        log.warning(
            "neither SQUADBOT_BOT_USERNAME nor SQUADBOT_TELEGRAM_TOKEN is set: the link names "
            "the sandbox's bot, @%s",
            SANDBOX_BOT,
        )
        return SANDBOX_BOT
    proxy = proxy_for(settings.telegram_api_url, settings.proxy_url)
    me = asyncio.run(check_bot_api(settings.telegram_token, settings.telegram_api_url, proxy))
    return me.username


def cmd_invite(settings: Settings, args: argparse.Namespace) -> int:
    from models.invites import create_invite
    from models.zone.config import read_zone

    engine = open_database(settings, create=False, need_zone=True)
    # asked before the invite is made: a failure leaves no unused invite behind
    username = None if args.role == "group" else bot_username(settings)
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
        raise Failure(f"invite: {exc}") from None
    local = invite.expires_at.astimezone(zone.tz).strftime("%Y-%m-%d %H:%M")
    if username is None:
        print(f"send in the squad's group, as its lead: /bind {invite.code}  (valid until {local})")
    else:
        print(f"https://t.me/{username}?start={invite.code}  (valid until {local})")
    print(invite.code)
    return 0


def register(sub: Any) -> None:
    inv = command_parser(
        sub,
        "invite",
        "print a single-use, expiring invite",
        "Print a single-use, expiring invite: a link https://t.me/<bot>?start=<code> (or, for "
        "--role group, the /bind command the squad lead sends in the group), and the bare code "
        "on the last line. Refuses a database that does not exist or holds no zone.",
        settings=(
            "SQUADBOT_DATABASE_URL",
            "SQUADBOT_BOT_USERNAME",
            "SQUADBOT_TELEGRAM_TOKEN",
            "SQUADBOT_TELEGRAM_API_URL",
            "SQUADBOT_PROXY_URL",
        ),
    )
    inv.add_argument(
        "--role",
        required=True,
        choices=["enterprise", "member", "lead", "manager", "admin", "group"],
        help="who the invite is for; `group` binds a squad's Telegram group",
    )
    inv.add_argument("--project", metavar="CODE", help="the project (for --role enterprise)")
    inv.add_argument(
        "--squad", metavar="CODE", help="the squad (for --role member, lead and group)"
    )
    inv.add_argument(
        "--person", metavar="KEY", help="bind the invite to this person key from the zone file"
    )
    inv.set_defaults(handler=cmd_invite)
