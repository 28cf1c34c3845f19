"""`squadbot invite`: make an invite (`--role ...`), list the open ones, revoke one.

The rules an invite must meet are the domain's (`models.invites.check_invite`), the same the
chat's /invite goes through; here they are only worded for a terminal. A link needs the
bot's username, which is settled before anything is written: an invite is either written
and printed, or not written at all."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.settings import Settings
    from models.invites import InviteRefused

ROLES = ("enterprise", "member", "lead", "manager", "admin", "group")


class NoUsername(Exception):
    """The bot's username, which the link needs, cannot be had."""


def register(sub: Any) -> None:
    inv = sub.add_parser(
        "invite",
        help="make a single-use, expiring invite; list or revoke open ones",
        description="Make an invite with --role ..., or: invite list, invite revoke CODE.",
    )
    inv.add_argument("--role", choices=ROLES)
    inv.add_argument("--project", help="enterprise: the project whose contact is invited")
    inv.add_argument("--squad", help="member, lead, group: the squad")
    inv.add_argument("--person", help="the person's key in the zone file")
    actions = inv.add_subparsers(dest="invite_command", metavar="{list,revoke}")
    actions.add_parser("list", help="unused, unexpired invites, with their expiry in zone time")
    revoke = actions.add_parser("revoke", help="withdraw an unused invite")
    revoke.add_argument("code")
    inv.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    given = [f"--{name}" for name in ("role", "squad", "project", "person") if getattr(args, name)]
    if args.invite_command and given:
        return _fail(f"'invite {args.invite_command}' takes no {', '.join(given)}")
    if args.invite_command == "list":
        return list_invites(settings)
    if args.invite_command == "revoke":
        return revoke(settings, args.code)
    if not args.role:
        return _fail("--role is required to make an invite (or: invite list, invite revoke CODE)")
    return make(settings, args)


def _fail(message: str) -> int:
    print(f"invite: {message}", file=sys.stderr)
    return 2


def describe(refusal: InviteRefused) -> str:
    """A refusal in one English line, naming the command line's options."""
    from bot.i18n import t

    params = dict(refusal.params)
    if "field" in params:
        params["field"] = f"--{params['field']}"
    return t("en", refusal.key, **params)


def bot_username(settings: Settings) -> str:
    if settings.bot_username:
        return settings.bot_username.lstrip("@")
    if settings.telegram_token is None:
        raise NoUsername(
            "the link needs the bot's username: set SQUADBOT_BOT_USERNAME "
            "(or SQUADBOT_TELEGRAM_TOKEN, to ask the Bot API for it)"
        )
    from telegram import Bot
    from telegram.request import HTTPXRequest

    async def ask() -> str:
        request = HTTPXRequest(proxy=settings.proxy_url, connect_timeout=10.0, read_timeout=10.0)
        bot = Bot(settings.telegram_token or "", base_url=settings.bot_api_base, request=request)
        async with bot:
            return bot.username

    try:
        return asyncio.run(ask())
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        raise NoUsername(
            f"cannot ask the Bot API at {settings.telegram_api_url} for the bot's username "
            f"({reason}); set SQUADBOT_BOT_USERNAME to make invites without asking"
        ) from None


def make(settings: Settings, args: argparse.Namespace) -> int:
    from migrations.runner import upgrade
    from models.clock import SystemClock
    from models.db import make_engine, transaction
    from models.invites import InviteRefused, check_invite, create_invite
    from models.zone.config import read_zone

    engine = make_engine(settings.database_url)
    upgrade(engine)
    where = {"squad_code": args.squad, "project_code": args.project, "person_key": args.person}
    try:
        with transaction(engine) as session:  # checked first: a bad invite asks no API
            check_invite(session, role=args.role, **where)
        username = None if args.role == "group" else bot_username(settings)
        with transaction(engine) as session:
            zone = read_zone(session)
            invite = create_invite(
                session, SystemClock().now(), role=args.role, ttl=zone.invite_ttl, **where
            )
    except InviteRefused as refusal:
        return _fail(describe(refusal))
    except NoUsername as exc:
        return _fail(f"{exc}; no invite was written")
    local = invite.expires_at.astimezone(zone.tz).strftime("%Y-%m-%d %H:%M")
    if username is None:
        print(f"send in the squad's group, as its lead: /bind {invite.code}  (valid until {local})")
    else:
        print(f"https://t.me/{username}?start={invite.code}  (valid until {local})")
    print(invite.code)
    return 0


def list_invites(settings: Settings) -> int:
    from migrations.runner import upgrade
    from models.clock import SystemClock
    from models.db import make_engine, transaction
    from models.invites import open_invites
    from models.zone.config import read_zone

    engine = make_engine(settings.database_url)
    upgrade(engine)
    with transaction(engine) as session:
        zone = read_zone(session)
        found = open_invites(session, SystemClock().now())
    rows = [("CODE", "ROLE", "SQUAD/PROJECT", "PERSON", f"EXPIRES ({zone.tz.key})", "")]
    for item in found:
        person = item.person or ("(walk-in)" if item.role == "enterprise" else "-")
        rows.append(
            (
                item.code,
                item.role,
                item.squad or item.project or "-",
                person,
                item.expires_at.astimezone(zone.tz).strftime("%Y-%m-%d %H:%M"),
                f"no longer valid: {describe(item.problem)}" if item.problem else "",
            )
        )
    if found:
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            print("  ".join([*cells, row[5]]).rstrip())
    print(f"{len(found)} open invite(s)")
    return 0


def revoke(settings: Settings, code: str) -> int:
    from migrations.runner import upgrade
    from models.clock import SystemClock
    from models.db import make_engine, transaction
    from models.invites import revoke_invite

    engine = make_engine(settings.database_url)
    upgrade(engine)
    with transaction(engine) as session:
        outcome, invite = revoke_invite(session, SystemClock().now(), code)
    if outcome == "unknown":
        return _fail(f"no invite {code!r} (see 'squadbot invite list')")
    if outcome == "used" and invite is not None and invite.used_at is not None:
        return _fail(
            f"{code} was already used ({invite.used_at:%Y-%m-%d %H:%M} UTC); revoking it "
            "changes nothing: take the person out of the zone file to take the role away"
        )
    if outcome == "expired":
        return _fail(f"{code} has already expired")
    print(f"invite {code} revoked: the code is now unknown to the bot")
    return 0
