"""The `squadbot` command: run, db upgrade, org load/show/schema, invite, inbox, report,
sandbox."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine

from bot.settings import Settings, SettingsError, load_settings
from migrations.runner import upgrade
from models.clock import SystemClock
from models.db import make_engine, transaction

SANDBOX_BOT = "squadbot_sandbox_bot"


def _engine(settings: Settings) -> Engine:
    return make_engine(settings.database_url)


def cmd_db_upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    engine = _engine(settings)
    upgrade(engine)
    print("database is at the newest schema")
    return 0


def cmd_org_load(settings: Settings, args: argparse.Namespace) -> int:
    from models.zone.load import load_and_apply
    from models.zone.reader import ZoneFileError

    engine = _engine(settings)
    upgrade(engine)
    try:
        report = load_and_apply(engine, Path(args.file))
    except ZoneFileError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


def cmd_org_show(settings: Settings, args: argparse.Namespace) -> int:
    from models.zone.config import describe_org

    engine = _engine(settings)
    upgrade(engine)
    with transaction(engine) as session:
        data = describe_org(session)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        for project in data.get("projects", []):
            print(f"{project.get('code')}: {project.get('name')} ({project.get('enterprise')})")
    return 0


def cmd_org_schema(_settings: Settings, _args: argparse.Namespace) -> int:
    from models.zone.json_schema import json_schema_text

    sys.stdout.write(json_schema_text())
    return 0


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

    engine = _engine(settings)
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


def cmd_inbox(settings: Settings, args: argparse.Namespace) -> int:
    from bot.inbox import dead_letters, retry_dead_letter

    engine = _engine(settings)
    upgrade(engine)
    if args.inbox_command == "retry":
        if not retry_dead_letter(engine, args.id):
            print(
                f"inbox: {args.id} is not a dead letter (see 'squadbot inbox dead')",
                file=sys.stderr,
            )
            return 2
        print(f"update {args.id} will be handled again by the running bot")
        return 0
    rows = dead_letters(engine)
    for row in rows:
        when = row.dead_at.isoformat(timespec="seconds") if row.dead_at else "?"
        print(f"{row.id}\tupdate {row.update_id}\t{when}\t{row.attempts} attempts\t{row.error}")
    print(f"{len(rows)} dead letter(s)")
    return 0


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from bot.reports.command import run

    return run(settings, args)


def cmd_run(settings: Settings, _args: argparse.Namespace) -> int:
    if settings.telegram_token is None:
        from bot.sandbox.script import run_sandbox

        print("SQUADBOT_TELEGRAM_TOKEN is not set: running the sandbox demo instead.")
        return asyncio.run(run_sandbox(settings))
    return asyncio.run(_run_bot(settings))


async def _run_bot(settings: Settings) -> int:
    from bot.application import ZoneCache, build_application
    from bot.service import Service

    engine = _engine(settings)
    upgrade(engine)
    if settings.zone_file is not None:
        from models.zone.load import load_and_apply
        from models.zone.reader import ZoneFileError

        try:
            report = load_and_apply(engine, settings.zone_file)
        except ZoneFileError as exc:
            print(f"squadbot: SQUADBOT_ZONE_FILE: {exc}", file=sys.stderr)
            return 2
        print("\n".join(report.lines()))
    app = build_application(
        settings.telegram_token or "",
        base_url=settings.bot_api_base,
        base_file_url=settings.bot_file_base,
        proxy=settings.proxy_url,
    )
    service = Service(
        app,
        engine,
        SystemClock(),
        ZoneCache(),
        long_poll=settings.long_poll_seconds,
        language=settings.language,
        data_dir=settings.data_dir,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger(__name__).info("squadbot is running against %s", settings.telegram_api_url)
    await service.run_until_stopped(stop)
    return 0


def cmd_sandbox(settings: Settings, _args: argparse.Namespace) -> int:
    from bot.sandbox.script import run_sandbox

    return asyncio.run(run_sandbox(settings))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="squadbot", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="apply migrations and run the bot (the sandbox without a token)")
    sub.add_parser("sandbox", help="run the scripted sandbox demo against the local emulator")
    db = sub.add_parser("db").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply pending migrations")
    org = sub.add_parser("org").add_subparsers(dest="org_command", required=True)
    load = org.add_parser("load", help="load the zone from a YAML file")
    load.add_argument("file")
    show = org.add_parser("show", help="print projects, squads, people and categories")
    show.add_argument("--json", action="store_true")
    org.add_parser("schema", help="print the zone file's JSON Schema, for editors")
    inbox = sub.add_parser("inbox", help="updates that could not be handled").add_subparsers(
        dest="inbox_command", required=True
    )
    inbox.add_parser("dead", help="list dead letters with their errors")
    retry = inbox.add_parser("retry", help="handle a dead letter again (after a fix)")
    retry.add_argument("id", type=int, help="the dead letter's id, as 'inbox dead' prints it")
    from bot.reports.command import add_parser as add_report_parser

    add_report_parser(sub)
    inv = sub.add_parser("invite", help="print a single-use, expiring invite")
    inv.add_argument(
        "--role",
        required=True,
        choices=["enterprise", "member", "lead", "manager", "admin", "group"],
    )
    inv.add_argument("--project")
    inv.add_argument("--squad")
    inv.add_argument("--person", help="bind the invite to this person key from the zone file")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"squadbot: {exc}", file=sys.stderr)
        return 2
    table: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
        "run": cmd_run,
        "sandbox": cmd_sandbox,
        "db": cmd_db_upgrade,
        "invite": cmd_invite,
        "inbox": cmd_inbox,
        "report": cmd_report,
    }
    org_table: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
        "load": cmd_org_load,
        "show": cmd_org_show,
        "schema": cmd_org_schema,
    }
    handler = org_table[args.org_command] if args.command == "org" else table[args.command]
    return handler(settings, args)


if __name__ == "__main__":
    sys.exit(main())
