"""`squadbot run` and `squadbot sandbox`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from bot.commands.common import engine_for
from bot.settings import Settings
from migrations.runner import upgrade
from models.clock import SystemClock


def cmd_run(settings: Settings, _args: argparse.Namespace) -> int:
    if settings.telegram_token is None:
        from bot.sandbox.script import run_sandbox

        print("SQUADBOT_TELEGRAM_TOKEN is not set: running the sandbox demo instead.")
        return asyncio.run(run_sandbox(settings))
    return asyncio.run(_run_bot(settings))


async def _run_bot(settings: Settings) -> int:
    from bot.application import ZoneCache, build_application
    from bot.service import Service

    engine = engine_for(settings)
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


def register(sub: Any) -> None:
    sub.add_parser(
        "run", help="apply migrations and run the bot (the sandbox without a token)"
    ).set_defaults(handler=cmd_run)
    sub.add_parser(
        "sandbox", help="run the scripted sandbox demo against the local emulator"
    ).set_defaults(handler=cmd_sandbox)
